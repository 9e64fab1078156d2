"""Measured evaluation costs of tilesearch, printed side by side from one run.

    python benchmarks/eval_throughput.py [--images 512] [--repeats 5] [--scan-images 256]

On the shared RegNetY-200MF trained on CIFAR-10 (``../shared``: 128x128 input,
crop 1.0, bilinear), or, where ``../shared`` is absent, on the offline demo
network and freshly drawn demo images, it measures:

a) forward throughput (images/s) of the plain SE model and of the tiled forward
   with every block 7xW and 1x1 (and GAP through the tiled code path), same
   batches, a warm-up pass, the median of ``--repeats`` passes (variants run
   round-robin so drift hits them alike); again with ``channels_last``;
b) one trial's scoring cost: ``Scorer.score`` on the cached uint8 images vs a
   per-trial ImageFolder + timm ``create_transform`` DataLoader pass over the
   same images (decode, preprocess, forward, the same metrics);
c) the one-block sensitivity scan over every block x (GAP, 1xW, 3xW, 7xW, 7x7,
   1x1) with and without prefix caching, and whether both give identical rows;
d) a search trial's scoring work (``Scorer.score`` in the memory format it picks,
   plus the paired bootstrap interval of the drop) against the bare forward of the
   same tiled model over the same cached, already normalised tensors: the throughput
   ratio (target at least 0.95);
e) channels_last against contiguous per model family (timm RegNetY, EfficientNet,
   MobileNetV3; random weights, 128x128) and the format ``fastest_memory_format``
   picks for each.

Nothing is asserted: the figures are printed.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

import tilesearch
from tilesearch.core import GAP, parse_tile, tile_config
from tilesearch.data import decode_images, image_folder, resolve_preprocessing, stratified_split
from tilesearch.scoring import Scorer, kl_divergence, scan
from tilesearch.zoo import load_model

SHARED = Path(__file__).resolve().parents[2] / "shared"
CHECKPOINT = SHARED / "models" / "regnety_002_cifar10_128.safetensors"
VAL = SHARED / "cifar10" / "val"
SCAN_CHOICES = ("GAP", "1xW", "3xW", "7xW", "7x7", "1x1")


def cpu_info() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{name}, {os.cpu_count()} logical CPUs"


def setup(args, workdir: Path):
    """(label, model, preprocessing, data root, indices) on the shared fixtures or the offline demo."""
    if CHECKPOINT.is_file() and VAL.is_dir():
        model = load_model("regnety_002", checkpoint=CHECKPOINT, num_classes=10)
        preprocessing = resolve_preprocessing(model, 128, 1.0, "bilinear")
        root = VAL
        label = f"regnety_002 ({CHECKPOINT.name}), {root}"
    else:
        from tilesearch.demo import CLASSES, write_demo_dataset
        from tilesearch.zoo import DEMO_MODEL_NAME

        model = load_model(DEMO_MODEL_NAME)
        preprocessing = resolve_preprocessing(model)
        per_class = -(-args.images // len(CLASSES))
        root = write_demo_dataset(workdir / "demo-data", "val", per_class, seed=0)
        label = f"{DEMO_MODEL_NAME} (offline demo; {SHARED} absent), {per_class} images per class drawn"
    labels = [lab for _, lab in image_folder(root).samples]
    indices, _ = stratified_split(labels, args.images, args.seed)
    return label, model.eval(), preprocessing, root, indices


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@torch.inference_mode()
def forward_all(model, batches) -> None:
    for x in batches:
        model(x)


def throughput(model, preprocessing, images, args) -> tuple[list[dict], dict]:
    """images/s per (variant, memory format); variants run round-robin within each repeat."""
    batches = [
        preprocessing.normalize(images.pixels[i : i + args.batch_size]) for i in range(0, len(images), args.batch_size)
    ]
    variants = [("SE (plain module forward)", None), ("tiled GAP (tiled code path)", "GAP"),
                ("tiled 7xW", "7xW"), ("tiled 1x1", "1x1")]
    plain = copy.deepcopy(model)  # never tiled: the timm SE module's own forward
    tiled = copy.deepcopy(model)
    tilesearch.apply_tiles(tiled, GAP)
    runs = []  # (name, tile, format, model, batches)
    for fmt in ("contiguous", "channels_last"):
        if fmt == "channels_last":
            try:
                p = copy.deepcopy(plain).to(memory_format=torch.channels_last)
                t = copy.deepcopy(tiled).to(memory_format=torch.channels_last)
                b = [x.contiguous(memory_format=torch.channels_last) for x in batches]
                with torch.inference_mode():
                    p(b[0])
            except Exception as error:  # noqa: BLE001 - report and go on
                print(f"channels_last not available: {type(error).__name__}: {error}")
                continue
        else:
            p, t, b = plain, tiled, batches
        for name, tile in variants:
            runs.append((name, tile, fmt, p if tile is None else t, b))

    def run_once(entry) -> float:
        _, tile, _, net, b = entry
        if tile is not None:
            tilesearch.apply_tiles(net, tile)
        return timed(lambda: forward_all(net, b))

    for entry in runs:  # warm-up
        run_once(entry)
    seconds = {i: [] for i in range(len(runs))}
    for _ in range(args.repeats):
        for i, entry in enumerate(runs):
            seconds[i].append(run_once(entry))
    # Output agreement (channels_last vs contiguous, same tile), on the first batch.
    diffs = {}
    with torch.inference_mode():
        for name, tile, fmt, net, b in runs:
            if tile is not None:
                tilesearch.apply_tiles(net, tile)
            diffs[(name, fmt)] = net(b[0]).float()
    rows = []
    for i, (name, tile, fmt, _, _) in enumerate(runs):
        median = statistics.median(seconds[i])
        rows.append({"variant": name, "tile": tile, "format": fmt, "seconds": median,
                     "ips": len(images) / median, "spread": (min(seconds[i]), max(seconds[i]))})
    max_diff = {}
    for name, _, fmt, _, _ in runs:
        if fmt == "channels_last":
            max_diff[name] = float((diffs[(name, fmt)] - diffs[(name, "contiguous")]).abs().max())
    return rows, max_diff


@torch.inference_mode()
def decoding_trial(model, root, indices, preprocessing, config, se_logits, batch_size, workers) -> tuple[dict, torch.Tensor]:
    """One trial the slow way: decode the JPEGs with a DataLoader, forward, the same metrics as Scorer.score."""
    from timm.data import create_transform
    from torch.utils.data import DataLoader, Subset
    from torchvision.datasets import ImageFolder

    transform = create_transform(
        input_size=(3, *preprocessing.input_size), interpolation=preprocessing.interpolation,
        crop_pct=preprocessing.crop_pct, crop_mode=preprocessing.crop_mode,
        mean=preprocessing.mean, std=preprocessing.std,
    )
    dataset = Subset(ImageFolder(str(root), transform=transform), indices)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    tilesearch.apply_tiles(model, config)
    logits, labels = [], []
    for x, y in loader:
        logits.append(model(x).float())
        labels.append(y)
    logits, labels = torch.cat(logits), torch.cat(labels)
    predictions = logits.argmax(1)
    n = len(labels)
    return {
        "accuracy": int((predictions == labels).sum()) / n,
        "agreement": int((predictions == se_logits.argmax(1)).sum()) / n,
        "kl": float(kl_divergence(se_logits, logits).mean()),
    }, logits


def scoring_cost(model, root, indices, preprocessing, args):
    """Seconds per trial: Scorer.score on cached uint8 images vs a decoding DataLoader pass."""
    start = time.perf_counter()
    images = decode_images(root, preprocessing, indices)
    decode_once = time.perf_counter() - start
    scorer = Scorer(model, images, preprocessing, batch_size=args.batch_size, device="cpu")
    config = tile_config(scorer.block_names, parse_tile("7xW"))
    scorer.score(config)  # warm-up
    decoding_trial(model, root, indices, preprocessing, config, scorer.se_logits, args.batch_size, args.workers)
    cached, decoded = [], []
    for _ in range(args.repeats):
        cached.append(timed(lambda: scorer.score(config)))
        decoded.append(timed(lambda: decoding_trial(model, root, indices, preprocessing, config, scorer.se_logits,
                                                     args.batch_size, args.workers)))
    fast = scorer.score(config)
    slow, slow_logits = decoding_trial(model, root, indices, preprocessing, config, scorer.se_logits,
                                       args.batch_size, args.workers)
    logit_diff = float((scorer.logits(config) - slow_logits).abs().max())
    return {
        "decode_once": decode_once, "cached": statistics.median(cached), "decoded": statistics.median(decoded),
        "fast": fast, "slow": slow, "logit_diff": logit_diff, "scorer": scorer,
    }


def scan_cost(scorer, n_images: int, args):
    """The sensitivity scan on the first ``n_images`` of the scorer's images, prefix cache on and off."""
    from tilesearch.data import ImageSet

    subset = ImageSet(scorer.images.pixels[:n_images], scorer.images.labels[:n_images], scorer.images.classes)

    def batches():
        for start in range(0, len(subset), args.batch_size):
            yield (scorer.preprocessing.normalize(subset.pixels[start : start + args.batch_size]),
                   subset.labels[start : start + args.batch_size])

    tiles = [parse_tile(t) for t in SCAN_CHOICES]
    choices = {name: list(tiles) for name in scorer.block_names}
    results, seconds = {}, {}
    for use_cache in (True, False):
        start = time.perf_counter()
        results[use_cache] = scan(scorer.model, batches, choices, use_prefix_cache=use_cache)
        seconds[use_cache] = time.perf_counter() - start
    pairs = sum(1 for t in tiles if not t.is_gap) * len(choices)
    identical = results[True] == results[False]
    worst = 0.0
    for a, b in zip(results[True], results[False]):
        worst = max(worst, abs(a.accuracy - b.accuracy), abs(a.agreement - b.agreement), abs(a.kl - b.kl))
    return {"seconds": seconds, "identical": identical, "worst": worst, "pairs": pairs, "blocks": len(choices),
            "images": len(subset)}


def trial_against_bare(scorer, args) -> dict:
    """Seconds per pass: a trial's scoring work (score + interval) and the bare forward of the same tiled model."""
    from tilesearch.core import get_metric
    from tilesearch.scoring import drop_interval
    from tilesearch.scoring._device import inference_context

    config = tile_config(scorer.block_names, "7xW")
    se = scorer.score(GAP)
    memory_format = scorer.memory_format
    batches = [scorer.preprocessing.normalize(scorer.images.pixels[i : i + args.batch_size]).contiguous(memory_format=memory_format)
               for i in range(0, len(scorer.images), args.batch_size)]

    def bare() -> None:
        tilesearch.apply_tiles(scorer.model, config)
        with inference_context(scorer.device):
            for x in batches:
                scorer.model(x)

    def trial() -> None:
        score = scorer.score(config)
        drop_interval(get_metric("accuracy"), se.per_image, score.per_image)

    seconds = {"bare": [], "trial": []}
    bare(), trial()  # warm-up
    for _ in range(args.repeats):
        seconds["bare"].append(timed(bare))
        seconds["trial"].append(timed(trial))
    return {key: statistics.median(values) for key, values in seconds.items()} | {"format": str(memory_format)}


def families(args) -> list[dict]:
    """channels_last vs contiguous forward time per timm family, and what fastest_memory_format picks."""
    from tilesearch.scoring._device import _forward_seconds, fastest_memory_format, inference_context

    rows = []
    for name in ("regnety_002", "efficientnet_b0", "mobilenetv3_large_100"):
        model = load_model(name, random_weights=True).eval()
        sample = torch.randn(64, 3, 128, 128)
        times = {}
        for memory_format in (torch.contiguous_format, torch.channels_last):
            model.to(memory_format=memory_format)
            with inference_context(sample.device):
                times[memory_format] = statistics.median(
                    _forward_seconds(model, sample.contiguous(memory_format=memory_format), 1) for _ in range(args.repeats))
        picked = fastest_memory_format(model, sample)
        with inference_context(sample.device):
            model.to(memory_format=torch.contiguous_format)
            plain = model(sample)
            model.to(memory_format=torch.channels_last)
            fast = model(sample.contiguous(memory_format=torch.channels_last))
        rows.append({"model": name, "contiguous": times[torch.contiguous_format], "channels_last": times[torch.channels_last],
                     "picked": "channels_last" if picked == torch.channels_last else "contiguous",
                     "diff": float((plain - fast).abs().max())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=512, help="validation images (stratified subset)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median reported)")
    parser.add_argument("--scan-images", type=int, default=256,
                        help="images for the sensitivity scan (part c; the slowest part): a prefix of --images")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the per-trial decoding pass")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-scan", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    total_start = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        label, model, preprocessing, root, indices = setup(args, Path(tmp))
        print(f"model/data : {label}")
        print(f"images     : {len(indices)} (stratified, seed {args.seed}), input {preprocessing.input_size}, "
              f"{preprocessing.interpolation}, crop {preprocessing.crop_pct}; batch size {args.batch_size}; "
              f"repeats {args.repeats} (median), 1 warm-up")
        print(f"torch      : {torch.__version__}, threads {torch.get_num_threads()} "
              f"(interop {torch.get_num_interop_threads()}); device cpu")
        print(f"cpu        : {cpu_info()}")
        print(f"SE blocks  : {len(tilesearch.find_se_modules(model))}")

        # a) forward throughput
        images = decode_images(root, preprocessing, indices)
        rows, cl_diff = throughput(model, preprocessing, images, args)
        base = {fmt: next(r for r in rows if r["tile"] is None and r["format"] == fmt) for fmt in ("contiguous", "channels_last")
                if any(r["format"] == fmt for r in rows)}
        print("\na) forward throughput (images/s, median; min-max seconds per pass in brackets)")
        formats = list(base)
        header = f"{'variant':30s}" + "".join(f" | {fmt + ' img/s':>20s} | {'vs SE':>7s}" for fmt in formats)
        if "channels_last" in formats:
            header += f" | {'CL/contig':>9s}"
        print(header)
        print("-" * len(header))
        for name in dict.fromkeys(r["variant"] for r in rows):
            line = f"{name:30s}"
            by_fmt = {r["format"]: r for r in rows if r["variant"] == name}
            for fmt in formats:
                r = by_fmt[fmt]
                cell = f"{r['ips']:.1f} [{r['spread'][0]:.2f}-{r['spread'][1]:.2f}s]"
                line += f" | {cell:>20s} | {r['ips'] / base[fmt]['ips']:7.3f}"
            if "channels_last" in formats:
                line += f" | {by_fmt['channels_last']['ips'] / by_fmt['contiguous']['ips']:9.3f}"
            print(line)
        if cl_diff:
            print("channels_last vs contiguous, max |logit diff| on one batch: "
                  + ", ".join(f"{k}: {v:.2e}" for k, v in cl_diff.items()))

        # b) one trial's scoring cost
        cost = scoring_cost(model, root, indices, preprocessing, args)
        print(f"\nb) one trial's scoring cost (all blocks 7xW, {len(indices)} images, median of {args.repeats})")
        print(f"{'path':58s} | {'seconds':>8s} | {'img/s':>8s}")
        print("-" * 82)
        print(f"{'cached uint8 tensors (Scorer.score)':58s} | {cost['cached']:8.3f} | {len(indices) / cost['cached']:8.1f}")
        decoded_label = f"decode JPEGs per trial (ImageFolder+DataLoader, {args.workers} workers)"
        print(f"{decoded_label:58s} | {cost['decoded']:8.3f} | {len(indices) / cost['decoded']:8.1f}")
        print(f"ratio decoded/cached: {cost['decoded'] / cost['cached']:.2f}x;  one-off decode into the cache: "
              f"{cost['decode_once']:.2f} s (amortised over all trials)")
        print(f"same metrics: cached {cost['fast'].accuracy:.4f}/{cost['fast'].agreement:.4f}/{cost['fast'].kl:.5f} "
              f"vs decoded {cost['slow']['accuracy']:.4f}/{cost['slow']['agreement']:.4f}/{cost['slow']['kl']:.5f} "
              f"(accuracy/agreement/kl); max |logit diff| {cost['logit_diff']:.2e}")

        # c) the sensitivity scan
        if not args.skip_scan:
            n_scan = min(args.scan_images, len(indices))
            result = scan_cost(cost["scorer"], n_scan, args)
            on, off = result["seconds"][True], result["seconds"][False]
            print(f"\nc) sensitivity scan: {result['blocks']} blocks x {', '.join(SCAN_CHOICES)} "
                  f"({result['pairs']} one-block forwards of {result['images']} images, one run each)")
            print(f"{'prefix cache':14s} | {'seconds':>8s} | {'s per (block, tile)':>20s}")
            print("-" * 50)
            print(f"{'on':14s} | {on:8.2f} | {on / result['pairs']:20.3f}")
            print(f"{'off':14s} | {off:8.2f} | {off / result['pairs']:20.3f}")
            print(f"speed-up off/on: {off / on:.2f}x;  results identical: {result['identical']} "
                  f"(max |difference| {result['worst']:.2e})")

        # d) a trial against the bare forward
        ratio = trial_against_bare(cost["scorer"], args)
        print(f"\nd) a trial's scoring work vs the bare forward of the same 7xW model on the same cached tensors "
              f"({len(indices)} images, {ratio['format']}, median of {args.repeats})")
        print(f"bare forward {ratio['bare']:.3f} s, trial (score + interval) {ratio['trial']:.3f} s: trial throughput "
              f"{ratio['bare'] / ratio['trial']:.3f} of the bare forward's")

    # e) memory format per family
    print(f"\ne) channels_last per model family (random weights, 64 x 3 x 128 x 128, median of {args.repeats})")
    print(f"{'model':24s} | {'contiguous s':>12s} | {'channels_last s':>15s} | {'CL speed-up':>11s} | {'picked':>13s} | max |diff|")
    for row in families(args):
        print(f"{row['model']:24s} | {row['contiguous']:12.3f} | {row['channels_last']:15.3f} | "
              f"{row['contiguous'] / row['channels_last']:11.2f} | {row['picked']:>13s} | {row['diff']:.1e}")
    print(f"\ntotal wall time: {time.perf_counter() - total_start:.1f} s")


if __name__ == "__main__":
    main()
