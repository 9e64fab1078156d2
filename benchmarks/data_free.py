"""Do scores on synthesised images rank tile configs as real held-out accuracy does?

    python benchmarks/data_free.py [--configs 40] [--images 256] [--holdout 2000] [--models regnety,demo] [--class-target]

For each network (the shared RegNetY-200MF trained on CIFAR-10 at 128x128, skipped
where ``../shared`` is absent; the offline demo's network on its own images) it
draws ``--configs`` per-block configs of the ``default`` space spread evenly along
the log-buffer axis (plus SE and uniform 7xW), and measures for each:

- its real top-1 accuracy on ``--holdout`` labelled images (the truth);
- its label-free scores (``fidelity``: mean KL of the logits from SE, and top-1
  agreement with SE) on ``--images`` images of every source: ``real`` (other
  labelled images, labels unused) and each synthetic source of ``tilesearch``.

It prints, per source, the Spearman correlation between the score and the real
held-out accuracy (labels make that truth noisy where configs differ by less than
a point: quote ``--holdout 0``, all images left), and between the score and the
same fidelity measured on the real held-out images (what a search on real
unlabelled images would rank by), and, at three budgets (the 25th, 50th and 75th percentile of the
configs' buffers), the real
held-out accuracy of the config each source ranks best among those within budget,
beside the pick made with real images and the best possible pick (oracle). It
also prints how long each source took to synthesise its images on this machine.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
CHECKPOINT = SHARED / "models" / "regnety_002_cifar10_128.safetensors"
CIFAR_VAL = SHARED / "cifar10" / "val"
QUANTILES = (0.25, 0.5, 0.75)  # budgets: these percentiles of the configs' buffers


def spearman(a: list[float], b: list[float]) -> float:
    ranks = [np.argsort(np.argsort(np.asarray(x, dtype=float), kind="stable"), kind="stable") for x in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def spread_configs(blocks, space, profile, count: int, seed: int) -> list[dict[str, str]]:
    """``count`` random per-block configs, evenly spread along log(buffer), plus SE and uniform 7xW."""
    from tilesearch.core import buffer_report

    rng = random.Random(seed)
    params = space.params(blocks)
    pool = []
    for _ in range(4000):
        tiles = {}
        for param in params:
            choice = str(rng.choice(param.choices))
            tiles.update({name: choice for name in param.blocks})
        pool.append((buffer_report(blocks, tiles, profile).total, tiles))
    pool.sort(key=lambda item: item[0])
    logs = np.log([buffer for buffer, _ in pool])
    targets = np.linspace(logs[0], logs[-1], count)
    picked = {int(np.abs(logs - target).argmin()) for target in targets}
    configs = [pool[i][1] for i in sorted(picked)]
    configs += [{b.name: "GAP" for b in blocks}, {b.name: "7xW" for b in blocks}]
    return configs


def network(name: str, out: Path):
    """(label, model name, model, preprocessing, labelled image folder)."""
    from tilesearch.data import resolve_preprocessing
    from tilesearch.zoo import load_model

    if name == "regnety":
        if not CHECKPOINT.is_file():
            return None
        model = load_model("regnety_002", checkpoint=str(CHECKPOINT), num_classes=10)
        return ("RegNetY-200MF / CIFAR-10", "regnety_002", model,
                resolve_preprocessing(model, 128, 1.0, "bilinear", None, None), CIFAR_VAL)
    from tilesearch.demo import demo_data
    from tilesearch.zoo import DEMO_MODEL_NAME

    model = load_model(DEMO_MODEL_NAME)
    return ("demo net / demo images", DEMO_MODEL_NAME, model, resolve_preprocessing(model, None, None, None, None, None),
            demo_data(out, "val"))


def measure(name: str, args: argparse.Namespace) -> dict | None:
    from tilesearch.core import buffer_report, load_profile, load_space
    from tilesearch.data import (
        ImageSet,
        decode_images,
        get_source,
        image_folder,
        image_sources,
        random_subset,
        stratified_split,
        synthetic_images,
    )
    from tilesearch.data._synthetic import BatchNormMatchingSource
    from tilesearch.nn import discover_se_blocks
    from tilesearch.scoring import Scorer

    found = network(name, args.out)
    if found is None:
        print(f"skipped {name}: {CHECKPOINT} not found (../shared is absent)")
        return None
    label, model_name, model, preprocessing, folder = found
    blocks = discover_se_blocks(model, preprocessing.input_size)
    profile = load_profile("ideal")
    configs = spread_configs(blocks, load_space("default"), profile, args.configs, args.seed)
    se_buffer = sum(b.se_buffer for b in blocks)
    buffers = [buffer_report(blocks, tiles, profile).total / se_buffer for tiles in configs]

    labels = [label_ for _, label_ in image_folder(folder).samples]
    calib, rest = stratified_split(labels, args.images, args.seed)
    holdout = random_subset(rest, args.holdout, args.seed) if args.holdout else rest  # rest is sorted by class
    truth_scorer = Scorer(model, decode_images(folder, preprocessing, holdout), preprocessing, batch_size=256)
    print(f"{label}: {len(blocks)} blocks, {len(configs)} configs, {len(holdout)} held-out images")
    truth_scores = [truth_scorer.score(tiles) for tiles in configs]
    truth = [score.accuracy for score in truth_scores]
    truth_fidelity = [score.kl for score in truth_scores]  # what a search on real unlabelled images would rank by
    print(f"  real held-out accuracy of {len(configs)} configs measured", flush=True)

    image_sets = {"real": decode_images(folder, preprocessing, calib)}
    seconds = {"real": 0.0}
    sources = {name: get_source(name) for name in image_sources()}
    if args.class_target:
        sources["synthetic-bn + class target"] = BatchNormMatchingSource(class_target=True)  # DeepInversion's extra term
    for source, maker in sources.items():
        start = time.perf_counter()
        pixels = synthetic_images(model, model_name, maker, args.images, preprocessing.input_size, preprocessing.mean,
                                  preprocessing.std, seed=args.seed)  # no cache: the time is the synthesis
        seconds[source] = time.perf_counter() - start
        image_sets[source] = ImageSet(pixels, torch.full((len(pixels),), -1, dtype=torch.long), [])
        print(f"  {source}: {args.images} images in {seconds[source]:.0f} s", flush=True)
    budgets = [float(np.quantile(buffers, q)) for q in QUANTILES]
    rows = {}
    for source, images in image_sets.items():
        scorer = Scorer(model, images, preprocessing, batch_size=256)
        scores = [scorer.score(tiles) for tiles in configs]
        fidelity = [score.kl for score in scores]
        agreement = [score.agreement for score in scores]
        picks = {}
        for budget in budgets:
            within = [i for i, ratio in enumerate(buffers) if ratio <= budget]
            best = min(within, key=lambda i: (fidelity[i], buffers[i]))
            picks[f"{budget:.1%}"] = truth[best]
        rows[source] = {"spearman_fidelity": spearman([-f for f in fidelity], truth),
                        "spearman_real_fidelity": spearman(fidelity, truth_fidelity),
                        "spearman_agreement": spearman(agreement, truth), "picks": picks,
                        "seconds": seconds[source]}
    oracle = {f"{b:.1%}": max(truth[i] for i, ratio in enumerate(buffers) if ratio <= b) for b in budgets}
    return {"network": label, "configs": len(configs), "holdout": len(holdout), "images": args.images,
            "se_accuracy": truth[-2], "buffers": buffers, "truth": truth, "truth_fidelity": truth_fidelity, "uniform_7xW_accuracy": truth[-1], "sources": rows, "oracle": oracle}


def print_table(result: dict) -> None:
    print(f"\n{result['network']}: {result['configs']} configs, real accuracy on {result['holdout']} held-out images "
          f"(SE {100 * result['se_accuracy']:.2f}%, uniform 7xW {100 * result['uniform_7xW_accuracy']:.2f}%); "
          f"scores on {result['images']} images per source")
    budgets = list(result["oracle"])
    header = ["source", "Spearman (fidelity)", "Spearman (agreement)", "Spearman vs held-out fidelity",
              *[f"pick @{b}" for b in budgets], "synthesis s"]
    print(" | ".join(header))
    for source, row in result["sources"].items():
        picks = [f"{100 * row['picks'][b]:.2f}%" for b in budgets]
        print(" | ".join([source, f"{row['spearman_fidelity']:.3f}", f"{row['spearman_agreement']:.3f}",
                          f"{row['spearman_real_fidelity']:.3f}", *picks,
                          f"{row['seconds']:.0f}"]))
    print(" | ".join(["oracle", "", "", "", *[f"{100 * result['oracle'][b]:.2f}%" for b in budgets], ""]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=40)
    parser.add_argument("--images", type=int, default=256, help="images per source")
    parser.add_argument("--holdout", type=int, default=2000, help="labelled held-out images (0: all that are left)")
    parser.add_argument("--models", default="regnety,demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-data-free"))
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--class-target", action="store_true",
                        help="also measure synthetic-bn with DeepInversion's cross-entropy towards random classes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import tilesearch.demo  # noqa: F401  (everything imported before hours of measuring)
    import tilesearch.scoring  # noqa: F401

    results = []
    for name in args.models.split(","):
        result = measure(name, args)
        if result is None:
            continue
        results.append(result)
        print_table(result)  # each network's table as soon as it is measured
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
