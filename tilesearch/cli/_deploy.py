"""``tilesearch finetune`` and ``tilesearch export``: deploy a chosen config of a run."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from tilesearch.cli._options import FINETUNING, Config, RunDir, Seed, Trial, with_options
from tilesearch.cli._render import console, print_finetune
from tilesearch.deploy import FORMATS
from tilesearch.deploy import export as export_config
from tilesearch.deploy import finetune as finetune_config


@with_options(FINETUNING)
def finetune(
    run_dir: RunDir,
    train_data: Annotated[str, typer.Option(
        "--train-data", help="Training images: ImageFolder layout with the classes of --data; a detector's COCO images "
                            "folder; a segmenter's images (with --train-masks).")],
    config: Config = None,
    trial: Trial = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Training batch size.")] = 64,
    seed: Seed = 0,
    **options,
) -> None:
    """Fine-tune a chosen config briefly from the SE weights; writes DIR/final/."""
    given = {key: value for key, value in options.items() if value is not None}
    metrics = finetune_config(run_dir, train_data, trial=trial, config=config, batch_size=batch_size, seed=seed, **given)
    print_finetune(metrics, Path(run_dir))


def export(
    run_dir: RunDir,
    format: Annotated[str, typer.Option("--format", help=f"{', '.join(FORMATS)} or all.")] = "all",
    config: Config = None,
    trial: Trial = None,
    out: Annotated[Optional[str], typer.Option("--out", help="Output folder [default: DIR/export].")] = None,
) -> None:
    """Export a chosen config: tile-config YAML, weights (fine-tuned if DIR/final matches), ONNX."""
    result = export_config(run_dir, format, trial=trial, config=config, out=out)
    for kind, path in result["files"].items():
        console.print(f"{kind}: {path}")
    if "weights" in result:
        console.print(f"weights: {result['weights']}")
    if "onnx_max_abs_diff" in result:
        console.print(f"ONNX vs PyTorch on the run's images: largest absolute difference {result['onnx_max_abs_diff']:.2e}")
