"""Deploy a chosen config: fine-tune it briefly, export it (YAML, safetensors, ONNX).

Fine-tuning follows the paper's recipe for regaining what the zero-shot swap
lost (Vosco et al., sections 4.1 and 4.3, Table 2 "TSE^ft"): SGD with momentum
0.9, weight decay 5e-5, a cosine learning rate, on 10% of the training data,
starting from the SE weights. The exported ONNX graph keeps the tiled squeeze
and the per-tile broadcast in standard operators (AveragePool, Reshape, Tile,
Slice, Mul) that accelerator compilers accept, and is checked against PyTorch
with onnxruntime on real images.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from torch import nn

from tilesearch.config import config_document, load_config, save_config, write_atomically
from tilesearch.cost import buffer_report, load_profile
from tilesearch.data import ImageSet, decode_images, image_folder, stratified_split
from tilesearch.errors import TilesearchError
from tilesearch.results import best_trial, front
from tilesearch.score import Scorer
from tilesearch.search import (
    Search,
    blocks_from_run,
    holdout_images,
    load_study_of_run,
    prepare_resume,
    read_run_file,
)
from tilesearch.tiled_se import apply_tiles

FORMATS = ("yaml", "safetensors", "onnx")


@dataclass
class Choice:
    """A config picked from a run: its tiles, and where they came from."""

    tiles: dict[str, str]
    label: str  # "trial 12", "best.yaml", or a config file path
    trial: int | None = None


def choose_config(run_dir: str | Path, trial: int | None = None, config: str | Path | None = None) -> Choice:
    """``--trial N``, ``--config FILE`` or, by default, the run's best config within budget."""
    document = read_run_file(run_dir)
    if trial is not None and config is not None:
        raise TilesearchError("give either --trial N or --config FILE, not both")
    if config is not None:
        loaded = load_config(config)
        model = document["settings"]["model"]
        if loaded.model and loaded.model != model:
            raise TilesearchError(f"config {str(config)!r} is for model {loaded.model!r}, but run {str(run_dir)!r} is {model!r}")
        names = [block["name"] for block in document["blocks"]]
        if set(loaded.tiles) != set(names):
            raise TilesearchError(f"config {str(config)!r} names other SE blocks than model {model!r} has")
        return Choice({name: str(tile) for name, tile in loaded.tiles.items()}, str(config))
    study = load_study_of_run(document)
    feasible = front(study)
    if trial is None:
        best = best_trial(study)
        if best is None:
            raise TilesearchError(f"run {str(run_dir)!r} has no feasible trial yet; continue it with `tilesearch resume`")
        return Choice(dict(best.user_attrs["tiles"]), f"trial {best.number} (best within budget)", best.number)
    listing = ", ".join(str(t.number) for t in feasible) or "none"
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    chosen = trials.get(trial)
    if chosen is None or chosen.state != optuna.trial.TrialState.COMPLETE or "tiles" not in chosen.user_attrs:
        raise TilesearchError(f"trial {trial} does not exist or did not complete; the front's trials are {listing}")
    if not chosen.user_attrs.get("feasible", True):
        raise TilesearchError(f"trial {trial} is over the buffer budget; the front's trials are {listing}")
    return Choice(dict(chosen.user_attrs["tiles"]), f"trial {trial}", trial)


def _model_of(search: Search) -> nn.Module:
    from tilesearch.models import load_model

    s = search.settings
    return load_model(s.model, pretrained=s.pretrained, checkpoint=s.checkpoint, num_classes=s.num_classes)


def _classifier_only(run_dir: str | Path, what: str) -> None:
    from tilesearch.search import DETECTION_METRICS

    if read_run_file(run_dir)["settings"].get("metric") in DETECTION_METRICS:
        raise TilesearchError(f"{what} is not supported for detectors yet; the tile config (best.yaml) is")


def _report_images(search: Search) -> ImageSet:
    """Held-out images for before/after figures; the search's own subset if nothing was held out."""
    images = holdout_images(search)
    if images is not None:
        return images
    labels = [label for _, label in image_folder(search.settings.data).samples]
    indices, _ = stratified_split(labels, search.settings.val_subset, search.settings.seed)
    return decode_images(search.settings.data, search.preprocessing, indices, cache_dir=search.run_dir / "cache")


def _train_images(search: Search, train_data: str | Path, train_subset: float, seed: int) -> ImageSet:
    dataset = image_folder(train_data)
    val_classes = image_folder(search.settings.holdout or search.settings.data).classes
    if dataset.classes != val_classes:
        raise TilesearchError(
            f"training folder {str(train_data)!r} has classes {dataset.classes[:4]}... but the validation data has "
            f"{val_classes[:4]}...: they must be the same classes"
        )
    labels = [label for _, label in dataset.samples]
    if not 0 < train_subset <= len(labels):
        raise TilesearchError(f"invalid training subset {train_subset}: a fraction in (0, 1] or a number of images")
    count = round(train_subset * len(labels)) if train_subset <= 1 else int(train_subset)
    indices, _ = stratified_split(labels, max(count, len(dataset.classes)), seed)
    return decode_images(train_data, search.preprocessing, indices, cache_dir=search.run_dir / "cache",
                         description="decoding training images")


def check_finetune_args(epochs: int, lr: float, batch_size: int, train_subset: float) -> None:
    """Fine-tuning settings a user typed, checked before any work is done."""
    if epochs < 1:
        raise TilesearchError(f"invalid number of epochs {epochs}: expected a positive integer")
    if not lr > 0:
        raise TilesearchError(f"invalid learning rate {lr}: expected a positive number")
    if batch_size < 1:
        raise TilesearchError(f"invalid batch size {batch_size}: expected a positive integer")
    if not train_subset > 0:
        raise TilesearchError(f"invalid training subset {train_subset}: a fraction in (0, 1] or a number of images")


def _freeze_norm_statistics(model: nn.Module) -> None:
    # A short schedule on a small subset would only add noise to the running statistics.
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def train_epochs(
    model: nn.Module,
    images: ImageSet,
    search: Search,
    epochs: int,
    lr: float,
    batch_size: int,
    device: torch.device,
    seed: int,
) -> list[float]:
    """SGD (momentum 0.9, weight decay 5e-5) with a per-step cosine schedule; returns each epoch's mean loss."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(images) // batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-5)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    losses = []
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}")]
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("fine-tuning", total=epochs * steps_per_epoch, status="")
        for epoch in range(epochs):
            model.train()
            _freeze_norm_statistics(model)
            order = torch.randperm(len(images), generator=generator)
            total, seen, started = 0.0, 0, time.perf_counter()
            for start in range(0, len(images), batch_size):
                index = order[start : start + batch_size]
                pixels = images.pixels[index]
                flip = torch.rand(len(index), generator=generator) < 0.5
                pixels = torch.where(flip[:, None, None, None], pixels.flip(-1), pixels)  # horizontal flips
                inputs = search.preprocessing.normalize(pixels.to(device))
                loss = nn.functional.cross_entropy(model(inputs), images.labels[index].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item() * len(index)
                seen += len(index)
                rate = seen / max(time.perf_counter() - started, 1e-9)
                progress.update(task, advance=1, status=f"epoch {epoch + 1}/{epochs} loss {total / seen:.3f} {rate:.0f} img/s")
            losses.append(total / seen)
    model.eval()
    return losses


def finetune(
    run_dir: str | Path,
    train_data: str | Path,
    trial: int | None = None,
    config: str | Path | None = None,
    epochs: int = 5,
    train_subset: float = 0.1,
    lr: float = 0.01,
    batch_size: int = 64,
    seed: int = 0,
) -> dict:
    """Fine-tune the chosen config; writes ``final/`` (model.safetensors, config.yaml, metrics.json)."""
    from safetensors.torch import save_file

    check_finetune_args(epochs, lr, batch_size, train_subset)
    choice = choose_config(run_dir, trial, config)
    _classifier_only(run_dir, "fine-tuning")
    search = prepare_resume(run_dir)
    train = _train_images(search, train_data, train_subset, seed)
    model = _model_of(search)
    held_out = _report_images(search)
    scorer = Scorer(model, held_out, search.preprocessing, search.settings.batch_size, search.settings.device)
    before = scorer.score(choice.tiles)
    apply_tiles(scorer.model, choice.tiles)
    started = time.perf_counter()
    losses = train_epochs(scorer.model, train, search, epochs, lr, batch_size, scorer.device, seed)
    seconds = time.perf_counter() - started
    after = scorer.score(choice.tiles)
    report = buffer_report(search.blocks, choice.tiles, search.profile)
    metrics = {
        "config": choice.label,
        "trial": choice.trial,
        "held_out_images": len(held_out),
        "se_accuracy": int((scorer.se_predictions == held_out.labels).sum()) / len(held_out),
        "accuracy_before": before.accuracy,
        "accuracy_after": after.accuracy,
        "buffer": report.total,
        "se_buffer": report.se_total,
        "epochs": epochs,
        "train_images": len(train),
        "lr": lr,
        "losses": losses,
        "seconds": round(seconds, 1),
    }
    final = Path(run_dir) / "final"
    staging = Path(run_dir) / f".final.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        state = {key: value.detach().cpu().contiguous() for key, value in scorer.model.state_dict().items()}
        save_file(state, str(staging / "model.safetensors"))
        document = config_document(search.settings.model, search.preprocessing.input_size, report,
                                   {"accuracy": after.accuracy, "trial": choice.trial})
        save_config(staging / "config.yaml", document)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if final.exists():
            shutil.rmtree(final)
        staging.replace(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return metrics


def _finetuned_weights(run_dir: Path, tiles: dict[str, str]) -> Path | None:
    """``final/model.safetensors`` if it was fine-tuned for exactly these tiles."""
    final = run_dir / "final"
    if not (final / "model.safetensors").is_file():
        return None
    config = load_config(final / "config.yaml")
    return final / "model.safetensors" if {k: str(v) for k, v in config.tiles.items()} == tiles else None


def export_onnx(model: nn.Module, path: Path, input_size: tuple[int, int], opset: int = 17) -> None:
    """The tiled model as ONNX with a static 1x3xHxW input (dataflow compilers want static shapes)."""
    example = torch.zeros(1, 3, *input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python ints in the tile arithmetic
        torch.onnx.export(model.eval(), (example,), str(path), opset_version=opset, dynamo=False,
                          input_names=["input"], output_names=["output"])


def onnx_parity(model: nn.Module, path: Path, inputs: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime and PyTorch outputs on ``inputs`` (one at a time)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.inference_mode():
        for image in inputs:
            expected = model(image[None]).numpy()
            got = session.run(None, {"input": image[None].numpy()})[0]
            worst = max(worst, float(abs(got - expected).max()))
    return worst


def export(
    run_dir: str | Path,
    formats: str = "all",
    trial: int | None = None,
    config: str | Path | None = None,
    out: str | Path | None = None,
    parity_images: int = 8,
) -> dict:
    """Export the chosen config: YAML, weights (fine-tuned if ``final/`` matches) and ONNX."""
    wanted = FORMATS if formats == "all" else (formats,)
    if any(fmt not in FORMATS for fmt in wanted):
        raise TilesearchError(f"unknown export format {formats!r}: expected one of {', '.join(FORMATS)} or all")
    run_dir = Path(run_dir)
    choice = choose_config(run_dir, trial, config)
    document = read_run_file(run_dir)
    if wanted != ("yaml",):
        _classifier_only(run_dir, "exporting weights and ONNX (use --format yaml)")
    out = Path(out) if out is not None else run_dir / "export"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".probe{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise TilesearchError(f"cannot write to {str(out)!r}: {error.strerror or error}") from None
    blocks = blocks_from_run(document)
    profile = load_profile(document["settings"]["profile"])
    report = buffer_report(blocks, choice.tiles, profile)
    input_size = tuple(document["preprocessing"]["input_size"])
    result: dict = {"config": choice.label, "files": {}}
    if "yaml" in wanted:
        path = save_config(out / "config.yaml", config_document(document["settings"]["model"], input_size, report,
                                                                {"trial": choice.trial}))
        result["files"]["yaml"] = str(path)
    if "safetensors" in wanted or "onnx" in wanted:
        search = prepare_resume(run_dir)
        model = _model_of(search)
        weights = _finetuned_weights(run_dir, choice.tiles)
        if weights is not None:
            from tilesearch.models import load_checkpoint

            load_checkpoint(model, weights)
        result["weights"] = "fine-tuned (final/model.safetensors)" if weights else "original SE weights"
        apply_tiles(model, choice.tiles)
        if "safetensors" in wanted:
            from safetensors.torch import save_file

            tmp = out / f".model.safetensors.tmp{os.getpid()}"
            state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
            save_file(state, str(tmp), metadata={"tilesearch_config": json.dumps(choice.tiles)})
            tmp.replace(out / "model.safetensors")
            result["files"]["safetensors"] = str(out / "model.safetensors")
        if "onnx" in wanted:
            tmp = out / f".model.onnx.tmp{os.getpid()}"
            try:
                export_onnx(model, tmp, input_size)
                images = _report_images(search)
                sample = search.preprocessing.normalize(images.pixels[:parity_images])
                result["onnx_max_abs_diff"] = onnx_parity(model, tmp, sample)
                tmp.replace(out / "model.onnx")
            finally:
                tmp.unlink(missing_ok=True)
            result["files"]["onnx"] = str(out / "model.onnx")
    write_atomically(out / "export.json", json.dumps(result, indent=2))
    return result

