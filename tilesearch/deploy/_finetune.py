"""Fine-tune a chosen config of a run briefly from its SE weights; the result goes to ``RUN/final/``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from tilesearch.core import GAP, atomic_path, buffer_report, config_document, load_config, save_config
from tilesearch.deploy._choice import choose_config
from tilesearch.deploy._training import (
    FINETUNE_DEFAULTS,
    check_finetune_args,
    check_train_data,
    train_epochs,
    train_labels,
    training_for,
)
from tilesearch.nn import apply_tiles
from tilesearch.search import Search, prepare_resume


def report_scorer(search: Search):
    """A scorer on held-out images for before/after figures; the search's own subset if nothing was held out."""
    return search.holdout_scorer() or search.scorer


def finetune(
    run_dir: str | Path,
    train_data: str | Path,
    trial: int | None = None,
    config: str | Path | None = None,
    epochs: int = FINETUNE_DEFAULTS["epochs"],
    train_subset: float = FINETUNE_DEFAULTS["train_subset"],
    lr: float = FINETUNE_DEFAULTS["lr"],
    batch_size: int = 64,
    seed: int = 0,
    train_annotations: str | Path | None = None,
    train_masks: str | Path | None = None,
) -> dict:
    """Fine-tune the chosen config; writes ``final/`` (model.safetensors, config.yaml, metrics.json).

    Classifiers train on an ImageFolder (``train_data``), detectors on COCO data
    (``train_data`` images and ``train_annotations``), segmenters on images and
    ``train_masks``. Scores before and after are the run's report metric
    (accuracy, mAP or mIoU) on held-out images.
    """
    check_finetune_args(epochs, lr, batch_size, train_subset)
    choice = choose_config(run_dir, trial, config)
    search = prepare_resume(run_dir)
    labels = train_labels(search, train_annotations, train_masks)
    check_train_data(search, train_data, labels)
    scorer = report_scorer(search)
    model, metric = scorer.model, search.report_metric
    training = training_for(search)
    count, loss_of = training.prepare(search, model, train_data, labels, train_subset, seed,
                                                  scorer.device)
    se = scorer.score(GAP)  # before training: the SE references come from the original weights
    before = scorer.score(choice.tiles)
    apply_tiles(model, choice.tiles)
    started = time.perf_counter()
    losses = train_epochs(model, count, loss_of, epochs, lr, training.batch_size(search, batch_size), seed)
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


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """The model's state dict as safetensors (CPU, contiguous), written atomically."""
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path


def _write_final(run_dir: Path, model: nn.Module, document: dict, metrics: dict) -> None:
    """``final/`` replaced as a whole: a crash leaves the previous one or none, never half of one."""
    with atomic_path(run_dir / "final") as staging:
        staging.mkdir()
        save_weights(model, staging / "model.safetensors")
        save_config(staging / "config.yaml", document)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))


def finetuned_weights(run_dir: Path, tiles: dict[str, str]) -> Path | None:
    """``final/model.safetensors`` if it was fine-tuned for exactly these tiles."""
    final = run_dir / "final"
    if not (final / "model.safetensors").is_file():
        return None
    config = load_config(final / "config.yaml")
    return final / "model.safetensors" if {k: str(v) for k, v in config.tiles.items()} == tiles else None
