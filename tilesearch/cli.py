"""``tilesearch``: a thin command-line shell over the public Python API."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from tilesearch.config import load_config
from tilesearch.cost import BUDGET_FORMS, available_profiles, buffer_report, format_count, load_profile
from tilesearch.discover import discover_model
from tilesearch.errors import TilesearchError
from tilesearch.models import default_input_size, matching_names, model_source, se_block_counts
from tilesearch.search import read_run_file, surrogate_error
from tilesearch.tiles import ACCEPTED_FORMS, parse_tile

# effdet decorates helpers with torch.jit.script, which torch now warns about on import.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

app = typer.Typer(
    help="Find, per squeeze-and-excite block, the tile that fits an accelerator's activation buffer "
    "with the least accuracy lost (tiled squeeze-and-excite, Vosco et al.).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console()


def user_errors(command: Callable) -> Callable:
    """Turn a :class:`TilesearchError` into ``error: ...`` on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except TilesearchError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def parse_input_size(text: str | None) -> int | None:
    """``"224"`` -> 224; anything but a positive integer is a user error."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise TilesearchError(f"invalid input size {text!r}: expected a positive integer such as 224")
    return value


@app.command()
@user_errors
def buffer(
    model: str = typer.Argument(..., help="Model name: timm (regnety_008), effdet (efficientdet_d2) or torchvision/NAME."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Square input side in pixels [default: the model's own]."),
    tile: str = typer.Option("7xW", "--tile", help=f"Tile for every SE block: {ACCEPTED_FORMS}."),
    profile: str = typer.Option(
        "ideal", "--profile", help=f"Hardware profile: {', '.join(available_profiles())} or a profile .yaml file."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Per-block and network pipeline buffer of MODEL under one tile, beside the original SE."""
    spec = parse_tile(tile)
    hw = load_profile(profile)
    found = discover_model(model, parse_input_size(input_size))
    report = buffer_report(found.blocks, spec, hw)
    if as_json:
        payload = {"model": model, "input_size": list(found.input_size), "tile": str(spec), **report.to_dict()}
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"{model} at {found.input_size[0]}x{found.input_size[1]}, tile {spec}, profile {hw.name}")
    for column in ("block", "stage", "C x H x W", "tile", "tiles", "SE buffer", "buffer"):
        table.add_column(column, justify="left" if column in ("block", "C x H x W") else "right")
    for row in report.blocks:
        table.add_row(
            row.name,
            "-" if row.stage is None else str(row.stage),
            f"{row.channels} x {row.height} x {row.width}",
            f"{row.tile_h}x{row.tile_w}",
            str(row.tiles),
            format_count(row.se_buffer),
            format_count(row.buffer),
        )
    console.print(table)
    bpe = hw.bytes_per_element
    console.print(f"SE (all GAP): {format_count(report.se_total)} elements ({format_count(report.se_total_bytes)}B at {bpe} B/element)")
    console.print(
        f"tile {spec}: {format_count(report.total)} elements ({format_count(report.total_bytes)}B), "
        f"{report.total / report.se_total:.1%} of SE, +{format_count(report.extra_macs)} MACs"
    )


@app.command()
@user_errors
def models(
    pattern: Optional[str] = typer.Argument(None, help="Glob or substring to filter names [default: the known SE families]."),
) -> None:
    """List the supported model names (those with SE blocks) and their SE-block counts."""
    names = matching_names(pattern)
    if not names:
        raise TilesearchError(f"no model name matches {pattern!r}; try a shorter filter such as 'regnety'")
    counts = se_block_counts(names)
    table = Table(title="models with squeeze-and-excite blocks")
    for column in ("model", "zoo", "SE blocks", "input size"):
        table.add_column(column, justify="left" if column in ("model", "zoo") else "right")
    shown = 0
    for name in names:
        if counts.get(name, 0) > 0:
            height, width = default_input_size(name)
            table.add_row(name, model_source(name).zoo, str(counts[name]), f"{height}x{width}")
            shown += 1
    if not shown:
        raise TilesearchError(f"no model matching {pattern!r} has a squeeze-and-excite block")
    console.print(table)


# Options shared by `run` and `eval`: how to build the model and read the data.
MODEL_HELP = "Model name: timm (regnety_002), effdet (efficientdet_d2) or torchvision/NAME."
PRETRAINED = typer.Option(False, "--pretrained", help="Load timm's pretrained weights (from the local Hugging Face cache when offline).")
CHECKPOINT = typer.Option(None, "--checkpoint", help="Weights file: .safetensors, or .pth/.pth.tar holding a state dict.")
NUM_CLASSES = typer.Option(None, "--num-classes", help="Classes of the model's head [default: the model's own].")
INPUT_SIZE = typer.Option(None, "--input-size", help="Square input side in pixels [default: timm's data config for the model].")
CROP_PCT = typer.Option(None, "--crop-pct", help="Center-crop fraction, e.g. 0.875; 1.0 resizes without cropping.")
INTERPOLATION = typer.Option(None, "--interpolation", help="Resize interpolation: bilinear, bicubic, ...")
MEAN = typer.Option(None, "--mean", help="Normalisation mean, three comma-separated numbers.")
STD = typer.Option(None, "--std", help="Normalisation std, three comma-separated numbers.")
BATCH_SIZE = typer.Option(256, "--batch-size", help="Images per forward pass.")
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... [default: cuda if available].")
WORKERS = typer.Option(1, "--workers", help="Worker processes on this machine sharing the study (one per GPU when several are visible).")
TRAIN_ANNOTATIONS = typer.Option(None, "--train-annotations", help="Detectors: COCO instances JSON of the --train-data images.")


def parse_triple(text: str | None, label: str) -> tuple[float, float, float] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", ",").split(",") if v)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise TilesearchError(f"invalid {label} {text!r}: expected three comma-separated numbers such as 0.485,0.456,0.406")
    return values


def print_summary(result) -> None:
    from tilesearch.results import pareto_frame

    study, run_dir = result.study, result.run_dir
    document = read_run_file(run_dir)
    frame = pareto_frame(study, document["se_buffer"])
    table = Table(title=f"Pareto front of {study.study_name} ({result.completed_after} trials, "
                        f"{result.completed_after - result.completed_before} new)")
    metric = study.user_attrs.get("settings", {}).get("metric", "accuracy")
    scale, unit = (1, "") if metric == "kl" else (100, "%")
    for column in ("trial", metric, "drop vs SE", "buffer", "vs SE", "extra MACs"):
        table.add_column(column, justify="right")
    budget = document.get("budget_elements")
    for row in frame.itertuples(index=False):
        table.add_row(
            str(row.trial), f"{scale * row.score:.{4 if metric == 'kl' else 2}f}{unit}",
            "-" if row.drop is None or row.drop != row.drop else f"{scale * row.drop:.2f}{' pts' if unit else ''}",
            format_count(row.buffer), f"{row.buffer_ratio:.1%}", format_count(row.extra_macs),
        )
    console.print(table)
    if budget is not None:
        console.print(f"budget: {format_count(budget)} elements ({budget / document['se_buffer']:.1%} of SE)")
    if "best.yaml" in result.written:
        console.print(f"best config within budget: {result.written['best.yaml']}")
    error = surrogate_error(study)
    if error is not None:
        metric = study.user_attrs.get("settings", {}).get("metric", "accuracy")
        shown = f"{error:.4f}" if metric == "kl" else f"{100 * error:.2f} points"
        console.print(f"surrogate error (mean |predicted - measured| {metric}): {shown}")
    if result.holdout:
        se, best, shown = result.holdout["se"], result.holdout["best"], result.holdout["metric"]
        console.print(
            f"held-out ({result.holdout['images']} images): {shown} SE {format_score(shown, se[shown])}, "
            f"best (trial {best['trial']}) {format_score(shown, best[shown])}"
        )
    console.print(f"outputs in {run_dir}/: " + ", ".join(sorted(result.written)))


def format_score(metric: str, value: float) -> str:
    """KL as a number, the other scores (accuracy, agreement, mAP) as percentages, as in the tables."""
    return f"{value:.4f}" if metric == "kl" else f"{100 * value:.2f}%"


def finish(result) -> None:
    print_summary(result)
    for problem in result.problems:
        typer.echo(f"warning: {problem}", err=True)
    if result.problems and not result.interrupted and result.completed_after < result.target:
        typer.echo(f"error: the workers stopped at {result.completed_after} of {result.target} trials; the study keeps "
                   f"them: see the worker logs, then `tilesearch resume {result.run_dir}`", err=True)
        raise typer.Exit(1)
    if result.interrupted:
        typer.echo(f"interrupted: completed trials are saved; continue with `tilesearch resume {result.run_dir}`", err=True)
        raise typer.Exit(130)


@app.command()
@user_errors
def run(
    model: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP + " [default: the offline demo]"),
    data: Optional[str] = typer.Option(None, "--data", help="Validation images, ImageFolder layout (DIR/CLASS/IMAGE)."),
    pretrained: bool = PRETRAINED,
    checkpoint: Optional[str] = CHECKPOINT,
    num_classes: Optional[int] = NUM_CLASSES,
    holdout: Optional[str] = typer.Option(None, "--holdout", help="Images for the final report [default: the images --val-subset leaves out]."),
    annotations: Optional[str] = typer.Option(None, "--annotations", help="Detectors: COCO instances JSON for --data IMAGES_DIR (score: mAP); without it, pseudo-mAP against the SE model's detections."),
    val_subset: int = typer.Option(1000, "--val-subset", help="Images the search scores on: a stratified, seeded subset of --data."),
    input_size: Optional[str] = INPUT_SIZE,
    crop_pct: Optional[float] = CROP_PCT,
    interpolation: Optional[str] = INTERPOLATION,
    mean: Optional[str] = MEAN,
    std: Optional[str] = STD,
    space: str = typer.Option("default", "--space", help="Search space: a name in search_spaces/ (default, strips, patches, uniform) or a .yaml file."),
    profile: str = typer.Option("ideal", "--profile", help="Hardware profile: ideal, row-stationary or a .yaml file."),
    buffer_budget: Optional[str] = typer.Option(None, "--buffer-budget", help=f"Network buffer limit: {BUDGET_FORMS}, or 40% of SE."),
    sampler: str = typer.Option("nsga2", "--sampler", help="Optuna sampler: nsga2, tpe or random."),
    metric: str = typer.Option("accuracy", "--metric", help="Score to maximise: accuracy, agreement (top-1 agreement with SE) or kl (mean KL from SE, minimised); the last two need no labels. Detectors: map or pseudo-map."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="surrogate (one-block sensitivity scan, exact front of the additive surrogate enqueued first) or sampler [default: surrogate for per-block spaces]."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampler and of the validation subset."),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", help="Trials to add to the study in this run [default: 40; demo 30]."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop starting new trials after this many seconds."),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="Study name [default: from model, space and budget]."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage: sqlite:///FILE, a journal FILE.log, or postgresql://USER:PASSWORD@HOST/DB [default: runs/STUDY/study.db, or study.log with --workers]."),
    workers: int = WORKERS,
    out: str = typer.Option("runs", "--out", help="Folder that holds the run folders."),
    batch_size: int = BATCH_SIZE,
    device: Optional[str] = DEVICE,
    train_data: Optional[str] = typer.Option(None, "--train-data", help="Training images: end with a short fine-tune of the best config."),
    train_annotations: Optional[str] = TRAIN_ANNOTATIONS,
    epochs: int = typer.Option(5, "--epochs", help="Fine-tuning epochs (with --train-data)."),
    train_subset: float = typer.Option(0.1, "--train-subset", help="Fraction (or number) of training images to fine-tune on."),
    lr: float = typer.Option(0.01, "--lr", help="Fine-tuning learning rate (SGD, cosine schedule)."),
) -> None:
    """Search per-block tiles: zero-shot accuracy up, buffer down, within a budget.

    With no --model and --data it runs the offline demo: a synthetic data set and a
    small SE network that ship with tilesearch, searched and then fine-tuned.
    """
    from tilesearch.search import RunSettings, prepare_search, run_search

    if (model is None) != (data is None):
        raise TilesearchError("give both --model and --data, or neither for the offline demo")
    if n_trials is not None and n_trials < 1:
        raise TilesearchError(f"invalid number of trials {n_trials}: expected a positive integer")
    finetune_args = {"epochs": epochs, "train_subset": train_subset, "lr": lr}
    if model is None:
        from tilesearch.demo import DEMO_FINETUNE, DEMO_TRIALS, demo_data, demo_settings

        settings = demo_settings(Path(out))
        n_trials = n_trials or DEMO_TRIALS
        train_data, finetune_args = str(demo_data(Path(out), "train")), DEMO_FINETUNE
    else:
        settings = RunSettings(
            model=model, data=data, checkpoint=checkpoint, pretrained=pretrained, num_classes=num_classes,
            holdout=holdout, annotations=annotations, val_subset=val_subset, seed=seed, input_size=parse_input_size(input_size),
            crop_pct=crop_pct, interpolation=interpolation, mean=parse_triple(mean, "mean"),
            std=parse_triple(std, "std"), space=space, profile=profile, budget=buffer_budget, sampler=sampler,
            metric=metric, strategy=strategy, batch_size=batch_size, device=device,
        )
    search = prepare_search(settings, out_dir=out, study_name=study_name, storage=storage, parallel=workers > 1)
    if train_data is not None:
        from tilesearch.deploy import check_finetune_args, check_train_data

        check_train_data(search, train_data, train_annotations)  # fails before the search, not after it
        check_finetune_args(**finetune_args, batch_size=64)
    result = run_search(search, n_trials=n_trials or 40, timeout=timeout, workers=workers)
    finish(result)
    if train_data is not None:
        from tilesearch.deploy import finetune

        metrics = finetune(result.run_dir, train_data, train_annotations=train_annotations, **finetune_args)
        print_finetune(metrics, result.run_dir)


def print_finetune(metrics: dict, run_dir: Path) -> None:
    metric = metrics["metric"]
    console.print(
        f"fine-tuned {metrics['config']} for {metrics['epochs']} epochs on {metrics['train_images']} images "
        f"({metrics['seconds']:.0f} s): held-out {metric} {format_score(metric, metrics['score_before'])} -> "
        f"{format_score(metric, metrics['score_after'])} (SE {format_score(metric, metrics['se_score'])}), "
        f"buffer {format_count(metrics['buffer'])} of {format_count(metrics['se_buffer'])}; written to {Path(run_dir) / 'final'}/"
    )


@app.command()
@user_errors
def finetune(
    run_dir: str = typer.Argument(..., help="A run folder, e.g. runs/regnety_002-5M."),
    train_data: str = typer.Option(..., "--train-data", help="Training images: ImageFolder layout with the classes of --data; a detector's COCO images folder."),
    train_annotations: Optional[str] = TRAIN_ANNOTATIONS,
    config: Optional[str] = typer.Option(None, "--config", help="A tile-config YAML [default: the run's best within budget]."),
    trial: Optional[int] = typer.Option(None, "--trial", help="Fine-tune this trial's config instead."),
    epochs: int = typer.Option(5, "--epochs", help="Epochs over the training subset."),
    train_subset: float = typer.Option(0.1, "--train-subset", help="Fraction (or number) of training images; the paper uses 10%."),
    lr: float = typer.Option(0.01, "--lr", help="Base learning rate (SGD, momentum 0.9, cosine, weight decay 5e-5)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Training batch size."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subset, the order and the flips."),
) -> None:
    """Fine-tune a chosen config briefly from the SE weights; writes DIR/final/."""
    from tilesearch.deploy import finetune as run_finetune

    metrics = run_finetune(run_dir, train_data, trial=trial, config=config, epochs=epochs, train_subset=train_subset,
                           lr=lr, batch_size=batch_size, seed=seed, train_annotations=train_annotations)
    print_finetune(metrics, Path(run_dir))


@app.command()
@user_errors
def export(
    run_dir: str = typer.Argument(..., help="A run folder, e.g. runs/regnety_002-5M."),
    format: str = typer.Option("all", "--format", help="yaml, safetensors, onnx or all."),
    config: Optional[str] = typer.Option(None, "--config", help="A tile-config YAML [default: the run's best within budget]."),
    trial: Optional[int] = typer.Option(None, "--trial", help="Export this trial's config instead."),
    out: Optional[str] = typer.Option(None, "--out", help="Output folder [default: DIR/export]."),
) -> None:
    """Export a chosen config: tile-config YAML, weights (fine-tuned if DIR/final matches), ONNX."""
    from tilesearch.deploy import export as run_export

    result = run_export(run_dir, format, trial=trial, config=config, out=out)
    for kind, path in result["files"].items():
        console.print(f"{kind}: {path}")
    if "weights" in result:
        console.print(f"weights: {result['weights']}")
    if "onnx_max_abs_diff" in result:
        console.print(f"ONNX vs PyTorch on held-out images: largest absolute difference {result['onnx_max_abs_diff']:.2e}")


@app.command()
@user_errors
def resume(
    run_dir: str = typer.Argument(..., help="A run folder, e.g. runs/regnety_002-5M."),
    n_trials: int = typer.Option(40, "--n-trials", help="Trials to add."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop starting new trials after this many seconds."),
    workers: int = WORKERS,
) -> None:
    """Continue the study of a run folder; completed trials are never evaluated again."""
    from tilesearch.search import prepare_resume, run_search

    if n_trials < 1:
        raise TilesearchError(f"invalid number of trials {n_trials}: expected a positive integer")
    finish(run_search(prepare_resume(run_dir), n_trials=n_trials, timeout=timeout, workers=workers))


@app.command()
@user_errors
def worker(
    run_dir: Optional[str] = typer.Argument(None, help="A run folder on this machine, e.g. runs/regnety_002-5M."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name, with --storage, when this machine has no run folder."),
    storage: Optional[str] = typer.Option(None, "--storage", help="The study's storage URL, e.g. postgresql://USER:PASSWORD@HOST/DB."),
    n_trials: Optional[int] = typer.Option(None, "--n-trials", help="At most this many trials by this worker [default: until the study's target]."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Stop starting new trials after this many seconds."),
    out: str = typer.Option("runs", "--out", help="Where this machine keeps the run folder (with --study)."),
    device: Optional[str] = DEVICE,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per forward pass on this worker [default: the study's]."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for PyTorch [default: PyTorch's]."),
    model: Optional[str] = typer.Option(None, "--model", help="Refuse to join unless the study is of this model."),
    data: Optional[str] = typer.Option(None, "--data", help="Refuse to join unless the study scores these images."),
    buffer_budget: Optional[str] = typer.Option(None, "--buffer-budget", help="Refuse to join unless the study has this budget."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Refuse to join unless the study has this metric."),
    space: Optional[str] = typer.Option(None, "--space", help="Refuse to join unless the study has this search space."),
    spawned: bool = typer.Option(False, "--spawned", hidden=True, help="Started by `run --workers`: no progress bar or outputs."),
) -> None:
    """Join an existing study and take trials until its target is met.

    The study records its settings and target (set by `tilesearch run`), so nothing else is
    repeated; settings given here are checked against the study's. Start as many workers as
    there are GPUs or machines; a worker that dies has its trial failed and its config retried.
    """
    import optuna
    from rich.progress import Progress

    from tilesearch.worker import join_study, start_worker, study_target

    if n_trials is not None and n_trials < 1:
        raise TilesearchError(f"invalid number of trials {n_trials}: expected a positive integer")
    if timeout is not None and timeout <= 0:
        raise TilesearchError(f"invalid timeout {timeout}: expected a positive number of seconds")
    if threads is not None:
        if threads < 1:
            raise TilesearchError(f"invalid number of threads {threads}: expected a positive integer")
        import torch

        torch.set_num_threads(threads)
    expect = {"model": model, "data": data, "budget": buffer_budget, "space": space,
              "metric": None if metric is None else metric.replace("-", "_")}
    search = join_study(run_dir, study, storage, out, expect, device=device, batch_size=batch_size)
    taken = []
    with Progress(disable=spawned) as progress:
        task = progress.add_task(f"worker on {search.study_name}", total=None)

        def on_trial(study_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            taken.append(trial.number)
            done = len(study_.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
            progress.update(task, completed=done, total=study_target(study_))

        study_, finished = start_worker(search, n_trials, timeout, on_trial=on_trial)
    if not finished:
        raise typer.Exit(130)
    if spawned:
        return
    from tilesearch.results import write_outputs

    write_outputs(study_, search.run_dir, search.settings.model, search.preprocessing.input_size, search.blocks,
                  search.profile, search.budget)
    done = sum(1 for t in study_.get_trials(deepcopy=False) if t.state.name == "COMPLETE")
    console.print(f"worker took {len(taken)} trials; study {search.study_name!r} has {done} of {study_target(study_)} "
                  f"complete; outputs in {search.run_dir}/")


@app.command()
@user_errors
def pareto(run_dir: str = typer.Argument(..., help="A run folder, e.g. runs/regnety_002-5M.")) -> None:
    """Print the feasible Pareto front from the study's storage and refresh the run folder's files."""
    from tilesearch.results import write_outputs
    from tilesearch.search import blocks_from_run, load_study_of_run

    document = read_run_file(run_dir)
    study = load_study_of_run(document)
    blocks = blocks_from_run(document)
    written = write_outputs(
        study, Path(run_dir), document["settings"]["model"], tuple(document["preprocessing"]["input_size"]),
        blocks, load_profile(document["settings"]["profile"]), document.get("budget_elements"),
    )
    done = sum(1 for t in study.trials if t.state.name == "COMPLETE")
    print_summary(SimpleNamespace(study=study, run_dir=Path(run_dir), completed_before=done, completed_after=done,
                                  written=written, holdout=None))


@app.command()
@user_errors
def sensitivity(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    data: str = typer.Option(..., "--data", help="Images: ImageFolder layout, or a flat folder of unlabeled images."),
    pretrained: bool = PRETRAINED,
    checkpoint: Optional[str] = CHECKPOINT,
    num_classes: Optional[int] = NUM_CLASSES,
    val_subset: int = typer.Option(1000, "--val-subset", help="Images to scan on (stratified, seeded)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subset."),
    input_size: Optional[str] = INPUT_SIZE,
    crop_pct: Optional[float] = CROP_PCT,
    interpolation: Optional[str] = INTERPOLATION,
    mean: Optional[str] = MEAN,
    std: Optional[str] = STD,
    space: str = typer.Option("default", "--space", help="Search space whose tile choices are scanned."),
    profile: str = typer.Option("ideal", "--profile", help="Hardware profile for the buffer column."),
    out: str = typer.Option("runs", "--out", help="Folder that holds the run folders."),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="Run folder name [default: from model and space]."),
    batch_size: int = BATCH_SIZE,
    device: Optional[str] = DEVICE,
) -> None:
    """One-block-at-a-time drops of every tile choice (prefix-cached); writes sensitivity.csv and .png."""
    from tilesearch.search import RunSettings, prepare_search
    from tilesearch.sensitivity import sensitivity_for

    if model_source(model).zoo == "effdet":
        raise TilesearchError(f"the sensitivity scan is for classifiers for now, not the detector {model!r}")
    settings = RunSettings(
        model=model, data=data, checkpoint=checkpoint, pretrained=pretrained, num_classes=num_classes,
        val_subset=val_subset, seed=seed, input_size=parse_input_size(input_size), crop_pct=crop_pct,
        interpolation=interpolation, mean=parse_triple(mean, "mean"), std=parse_triple(std, "std"), space=space,
        profile=profile, metric="accuracy" if image_classes(data) else "agreement", batch_size=batch_size, device=device,
    )
    search = prepare_search(settings, out_dir=out, study_name=study_name)
    rows = sensitivity_for(search)
    table = Table(title=f"{model}: score drop when only one block is tiled (points)")
    tiles = list(dict.fromkeys(row.tile for row in rows))
    table.add_column("block")
    for tile in tiles:
        table.add_column(tile, justify="right")
    cells = {(row.block, row.tile): row for row in rows}
    metric = settings.metric
    for block in dict.fromkeys(row.block for row in rows):
        table.add_row(block, *[
            "" if (block, t) not in cells else f"{100 * (1 - cells[(block, t)].agreement if metric == 'agreement' else cells[(block, t)].drop):.2f}"
            for t in tiles
        ])
    console.print(table)
    console.print(f"written: {search.run_dir / 'sensitivity.csv'}, {search.run_dir / 'sensitivity.png'}")


def image_classes(data: str) -> list[str]:
    from tilesearch.data import image_folder

    return image_folder(data).classes


@app.command("eval")
@user_errors
def evaluate(
    model: str = typer.Option(..., "--model", help=MODEL_HELP),
    data: str = typer.Option(..., "--data", help="Images in ImageFolder layout (DIR/CLASS/IMAGE)."),
    tile: Optional[str] = typer.Option(None, "--tile", help=f"One tile for every SE block: {ACCEPTED_FORMS}."),
    config: Optional[str] = typer.Option(None, "--config", help="A tile-config YAML (e.g. runs/STUDY/best.yaml)."),
    pretrained: bool = PRETRAINED,
    checkpoint: Optional[str] = CHECKPOINT,
    num_classes: Optional[int] = NUM_CLASSES,
    input_size: Optional[str] = INPUT_SIZE,
    crop_pct: Optional[float] = CROP_PCT,
    interpolation: Optional[str] = INTERPOLATION,
    mean: Optional[str] = MEAN,
    std: Optional[str] = STD,
    profile: str = typer.Option("ideal", "--profile", help="Hardware profile for the buffer figure."),
    annotations: Optional[str] = typer.Option(None, "--annotations", help="COCO instances JSON: score a detector (effdet) by mAP on --data IMAGES_DIR."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Score a stratified subset of this many images."),
    batch_size: int = BATCH_SIZE,
    device: Optional[str] = DEVICE,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Score one tile config zero-shot: accuracy, agreement with SE, buffer."""
    from tilesearch.score import evaluate_config

    if (tile is None) == (config is None):
        raise TilesearchError("give exactly one of --tile SPEC or --config FILE")
    tiles = tile if tile is not None else load_config(config).tiles
    if annotations is not None or model_source(model).zoo == "effdet":
        from tilesearch.detection import evaluate_detection

        result = evaluate_detection(model, data, tiles, annotations, pretrained=pretrained, checkpoint=checkpoint,
                                    num_classes=num_classes, input_size=parse_input_size(input_size), limit=limit,
                                    profile=profile, batch_size=min(batch_size, 8), device=device)
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
            console.print(f"{model}: mAP {result['map']:.4f} (SE {result['se_map']:.4f}), pseudo-mAP vs SE "
                          f"{result['pseudo_map']:.4f} on {result['total']} images, buffer {format_count(result['buffer'])} "
                          f"of {format_count(result['se_buffer'])} elements")
        return
    result = evaluate_config(
        model, data, tiles,
        pretrained=pretrained, checkpoint=checkpoint, num_classes=num_classes,
        input_size=parse_input_size(input_size), crop_pct=crop_pct, interpolation=interpolation,
        mean=parse_triple(mean, "mean"), std=parse_triple(std, "std"), profile=profile, limit=limit,
        batch_size=batch_size, device=device,
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console.print(
        f"{model}: accuracy {100 * result['accuracy']:.2f}% ({result['correct']}/{result['total']}), "
        f"agreement with SE {100 * result['agreement']:.2f}%, SE accuracy {100 * result['se_accuracy']:.2f}%, "
        f"buffer {format_count(result['buffer'])} of {format_count(result['se_buffer'])} elements"
    )


def main() -> None:
    app(prog_name="tilesearch")


if __name__ == "__main__":
    sys.exit(main())
