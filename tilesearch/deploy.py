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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from torch import nn

from tilesearch.config import config_document, load_config, save_config, write_atomically
from tilesearch.cost import buffer_report, load_profile
from tilesearch.data import decode_images, image_folder, stratified_split
from tilesearch.detection import decode_detection_images, detection_loss, detection_targets, load_coco
from tilesearch.errors import TilesearchError
from tilesearch.results import best_trial, front
from tilesearch.search import (
    Search,
    blocks_from_run,
    load_study_of_run,
    prepare_resume,
    read_run_file,
)
from tilesearch.tiled_se import apply_tiles
from tilesearch.tiles import GAP

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
    size = search.preprocessing.input_size if search.detector else None  # effdet builds its anchors for one size
    return load_model(s.model, pretrained=s.pretrained, checkpoint=s.checkpoint, num_classes=s.num_classes, input_size=size)


def _report_scorer(search: Search):
    """A scorer on held-out images for before/after figures; the search's own subset if nothing was held out."""
    return search.holdout_factory() or search.scorer_factory()


def check_train_data(search: Search, train_data: str | Path, train_annotations: str | Path | None = None) -> None:
    """Training data of the wrong kind for the run's model fails before a search or fine-tune starts."""
    if search.detector:
        if train_annotations is None:
            raise TilesearchError("a detector fine-tunes on COCO data: give --train-annotations instances.json with --train-data IMAGES_DIR")
        load_coco(train_data, train_annotations)
    elif train_annotations is not None:
        raise TilesearchError(f"--train-annotations is for detectors (effdet models), not {search.settings.model!r}")
    else:
        image_folder(train_data)


def _subset_size(train_subset: float, total: int) -> int:
    if not 0 < train_subset <= total:
        raise TilesearchError(f"invalid training subset {train_subset}: a fraction in (0, 1] or a number of images")
    return max(1, round(train_subset * total) if train_subset <= 1 else int(train_subset))


def _classifier_training(search: Search, model: nn.Module, train_data, train_subset: float, seed: int, device):
    """(images, loss_of) for a classifier: cross-entropy on horizontally flipped or plain images."""
    dataset = image_folder(train_data)
    val_classes = image_folder(search.settings.holdout or search.settings.data).classes
    if dataset.classes != val_classes:
        raise TilesearchError(
            f"training folder {str(train_data)!r} has classes {dataset.classes[:4]}... but the validation data has "
            f"{val_classes[:4]}...: they must be the same classes"
        )
    labels = [label for _, label in dataset.samples]
    indices, _ = stratified_split(labels, max(_subset_size(train_subset, len(labels)), len(dataset.classes)), seed)
    images = decode_images(train_data, search.preprocessing, indices, cache_dir=search.run_dir / "cache",
                           description="decoding training images")

    def loss_of(index: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        pixels = images.pixels[index]
        pixels = torch.where(flip[:, None, None, None], pixels.flip(-1), pixels)
        logits = model(search.preprocessing.normalize(pixels.to(device)))
        return nn.functional.cross_entropy(logits, images.labels[index].to(device))

    return len(images), loss_of


def _detector_training(search: Search, model: nn.Module, train_data, train_annotations, train_subset: float, seed: int, device):
    """(images, loss_of) for an effdet detector: effdet's training bench (anchor labels, focal and box loss)."""
    import numpy as np

    coco = load_coco(train_data, train_annotations)
    ids = sorted(coco.imgs)
    ids = sorted(np.random.default_rng(seed).choice(ids, _subset_size(train_subset, len(ids)), replace=False).tolist())
    classes = model.config.num_classes
    beyond = sorted({a["category_id"] for a in coco.dataset["annotations"] if not 1 <= a["category_id"] <= classes})
    if beyond:
        raise TilesearchError(f"training annotations use category id {beyond[0]}, but the detector has classes 1..{classes}")
    images = decode_detection_images(train_data, coco, ids, search.preprocessing.input_size, search.preprocessing.mean,
                                     search.run_dir / "cache", "decoding training images")
    boxes, labels = detection_targets(coco, images)
    return len(images), detection_loss(model, images, boxes, labels, search.preprocessing.normalize, device)


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
    count: int,
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> list[float]:
    """SGD (momentum 0.9, weight decay 5e-5) with a per-step cosine schedule over ``count`` items,
    half of each batch flipped; ``loss_of(index, flip)`` is a batch's loss. Returns each epoch's mean loss."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-count // batch_size)
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
            order = torch.randperm(count, generator=generator)
            total, seen, started = 0.0, 0, time.perf_counter()
            for start in range(0, count, batch_size):
                index = order[start : start + batch_size]
                loss = loss_of(index, torch.rand(len(index), generator=generator) < 0.5)
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
    train_annotations: str | Path | None = None,
) -> dict:
    """Fine-tune the chosen config; writes ``final/`` (model.safetensors, config.yaml, metrics.json).

    Classifiers train on an ImageFolder (``train_data``), detectors on COCO data
    (``train_data`` images and ``train_annotations``). Scores before and after
    are the run's report metric (accuracy, or mAP) on held-out images.
    """
    check_finetune_args(epochs, lr, batch_size, train_subset)
    choice = choose_config(run_dir, trial, config)
    search = prepare_resume(run_dir)
    check_train_data(search, train_data, train_annotations)
    scorer = _report_scorer(search)
    model, metric = scorer.model, search.report_metric
    if search.detector:
        count, loss_of = _detector_training(search, model, train_data, train_annotations, train_subset, seed, scorer.device)
    else:
        count, loss_of = _classifier_training(search, model, train_data, train_subset, seed, scorer.device)
    se = scorer.score(GAP)  # before training: the SE references come from the original weights
    before = scorer.score(choice.tiles)
    apply_tiles(model, choice.tiles)
    started = time.perf_counter()
    losses = train_epochs(model, count, loss_of, epochs, lr, batch_size, seed)
    seconds = time.perf_counter() - started
    after = scorer.score(choice.tiles)
    report = buffer_report(search.blocks, choice.tiles, search.profile)
    metrics = {
        "config": choice.label,
        "trial": choice.trial,
        "metric": metric,
        "held_out_images": len(scorer.images),
        "se_score": getattr(se, metric),
        "score_before": getattr(before, metric),
        "score_after": getattr(after, metric),
        "buffer": report.total,
        "se_buffer": report.se_total,
        "epochs": epochs,
        "train_images": count,
        "lr": lr,
        "losses": losses,
        "seconds": round(seconds, 1),
    }
    document = config_document(search.settings.model, search.preprocessing.input_size, report,
                               {metric: metrics["score_after"], "trial": choice.trial})
    _write_final(Path(run_dir), model, document, metrics)
    return metrics


def _write_final(run_dir: Path, model: nn.Module, document: dict, metrics: dict) -> None:
    """``final/`` replaced as a whole: a crash leaves the previous one or none, never half of one."""
    from safetensors.torch import save_file

    final = run_dir / "final"
    staging = run_dir / f".final.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
        save_file(state, str(staging / "model.safetensors"))
        save_config(staging / "config.yaml", document)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if final.exists():
            shutil.rmtree(final)
        staging.replace(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _finetuned_weights(run_dir: Path, tiles: dict[str, str]) -> Path | None:
    """``final/model.safetensors`` if it was fine-tuned for exactly these tiles."""
    final = run_dir / "final"
    if not (final / "model.safetensors").is_file():
        return None
    config = load_config(final / "config.yaml")
    return final / "model.safetensors" if {k: str(v) for k, v in config.tiles.items()} == tiles else None


def _flat_outputs(outputs) -> list[torch.Tensor]:
    """A classifier's logits, or an effdet model's (class maps, box maps) per pyramid level, as a flat list."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    return [tensor for group in outputs for tensor in _flat_outputs(group)]


def _output_names(model: nn.Module, example: torch.Tensor) -> list[str]:
    with torch.inference_mode():
        outputs = model(example)
    if isinstance(outputs, torch.Tensor):
        return ["output"]
    class_maps, box_maps = outputs
    return [f"class_{i}" for i in range(len(class_maps))] + [f"box_{i}" for i in range(len(box_maps))]


def export_onnx(model: nn.Module, path: Path, input_size: tuple[int, int], opset: int = 17) -> None:
    """The tiled model as ONNX with a static 1x3xHxW input (dataflow compilers want static shapes).

    A detector is exported without its box decoding and NMS (effdet's ``DetBenchPredict``), which
    run on the host: one class map and one box map per pyramid level.
    """
    example = torch.zeros(1, 3, *input_size)
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python ints in the tile arithmetic
        torch.onnx.export(model, (example,), str(path), opset_version=opset, dynamo=False,
                          input_names=["input"], output_names=_output_names(model, example))


def onnx_parity(model: nn.Module, path: Path, inputs: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime and PyTorch outputs on ``inputs`` (one at a time)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.inference_mode():
        for image in inputs:
            expected = _flat_outputs(model(image[None]))
            got = session.run(None, {"input": image[None].numpy()})
            worst = max(worst, *(float(abs(g - e.numpy()).max()) for g, e in zip(got, expected)))
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
                images = _report_scorer(search).images  # real images; the SE reference is not computed
                sample = search.preprocessing.normalize(images.pixels[:parity_images].cpu())
                result["onnx_max_abs_diff"] = onnx_parity(model, tmp, sample)
                tmp.replace(out / "model.onnx")
            finally:
                tmp.unlink(missing_ok=True)
            result["files"]["onnx"] = str(out / "model.onnx")
    write_atomically(out / "export.json", json.dumps(result, indent=2))
    return result

