"""``tilesearch run``, ``resume``, ``worker``, ``pareto`` and ``sensitivity``: the search and its studies."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from tilesearch.cli._options import (
    COMPUTE,
    FINETUNING,
    PREPROCESSING,
    WEIGHTS,
    Annotations,
    IgnoreIndex,
    Masks,
    Budget,
    Data,
    DataSource,
    Metric,
    Model,
    NTrials,
    Out,
    Profile,
    RunDir,
    Sampler,
    Seed,
    Space,
    Storage,
    Strategy,
    EarlyStop,
    StudyName,
    Threads,
    Timeout,
    TrainData,
    ValSubset,
    Workers,
    with_options,
)
from tilesearch.cli._parse import check_positive, compute_options, model_options
from tilesearch.cli._render import (
    console,
    print_finetune,
    print_holdout_front,
    print_plan,
    print_sensitivity,
    print_summary,
)
from tilesearch.core import CLASSIFIER, TilesearchError, get_metric, load_profile
from tilesearch.data import image_folder
from tilesearch.demo import DEFAULT_DEMO, DEMOS, get_demo
from tilesearch.deploy import FINETUNE_DEFAULTS, check_finetune_args, check_train_data, finetune, train_labels
from tilesearch.search import (
    RunResult,
    RunSettings,
    blocks_from_run,
    check_trial_budget,
    completed_trials,
    holdout_front,
    join_study,
    load_study_of_run,
    plan_search,
    prepare_resume,
    prepare_search,
    read_run_file,
    run_caveats,
    run_search,
    sensitivity_for,
    start_worker,
    study_target,
    task_of,
    write_outputs,
    write_search_outputs,
)


def finish(result: RunResult) -> None:
    """Print a run's summary; exit non-zero when it was interrupted or its workers stopped short."""
    print_summary(result, read_run_file(result.run_dir))
    for problem in result.problems:
        typer.echo(f"warning: {problem}", err=True)
    if result.problems and not result.interrupted and result.completed_after < result.target:
        typer.echo(f"error: the workers stopped at {result.completed_after} of {result.target} trials; the study keeps "
                   f"them: see the worker logs, then `tilesearch resume {result.run_dir}`", err=True)
        raise typer.Exit(1)
    if result.interrupted:
        typer.echo(f"interrupted: completed trials are saved; continue with `tilesearch resume {result.run_dir}`", err=True)
        raise typer.Exit(130)


# Options the offline demo cannot honour: it runs its own network on its own images.
NOT_FOR_THE_DEMO = ("holdout", "annotations", "masks", "data_source", "checkpoint", "random_weights", "num_classes", "input_size",
                    "crop_pct", "interpolation", "mean", "std", "train_annotations", "train_masks")


def _given(**values) -> dict:
    """The options a user typed (typer passes None for the others)."""
    return {key: value for key, value in values.items() if value is not None}


@with_options(WEIGHTS, PREPROCESSING, COMPUTE, FINETUNING)
def run(
    model: Model = None,
    data: Data = None,
    data_source: DataSource = None,
    holdout: Annotated[Optional[str], typer.Option(
        "--holdout", help="Images for the final report [default: the images --val-subset leaves out].")] = None,
    annotations: Annotations = None,
    masks: Masks = None,
    ignore_index: IgnoreIndex = 255,
    val_subset: ValSubset = None,
    space: Space = None,
    profile: Profile = None,
    buffer_budget: Budget = None,
    sampler: Sampler = None,
    metric: Metric = None,
    strategy: Strategy = None,
    early_stop: EarlyStop = None,
    seed: Seed = None,
    n_trials: NTrials = None,
    timeout: Timeout = None,
    study_name: StudyName = None,
    storage: Storage = None,
    workers: Workers = 1,
    out: Out = "runs",
    train_data: TrainData = None,
    demo: Annotated[Optional[str], typer.Option(
        "--demo", show_default=False,
        help=f"With no --model, which offline demo runs: {', '.join(DEMOS)} (an LR-ASPP segmenter whose head's "
             f"global-pool branch is searched with its SE blocks, scored by mIoU) [default: {DEFAULT_DEMO}].")] = None,
    **options,
) -> None:
    """Search per-block tiles: the score up, the buffer down, within a budget.

    With --model and no --data, images are synthesised for the model (--data-source) and
    configs are scored label-free against the SE network. With no --model it runs an
    offline demo (--demo): a synthetic data set and a small SE network that ship with
    tilesearch, searched (budget 50% of SE) and then fine-tuned; the search options given
    here apply to it too.
    """
    if model is None and data is not None:
        raise TilesearchError("--data needs --model, the network to search; give neither for the offline demo")
    if model is not None and demo is not None:
        raise TilesearchError(f"--demo {demo} runs a demo network: give --model or --demo, not both")
    check_trial_budget(n_trials, timeout)
    search_options = _given(val_subset=val_subset, space=space, profile=profile, budget=buffer_budget, sampler=sampler,
                            metric=metric, strategy=strategy, seed=seed, early_stop=early_stop)
    finetune_args = _given(**{key: options[key] for key in ("epochs", "train_subset", "lr")})
    if model is None:
        given = {**options, "holdout": holdout, "annotations": annotations, "masks": masks, "data_source": data_source,
                 "random_weights": not options["pretrained"]}
        typed = [key for key in NOT_FOR_THE_DEMO if given[key]]
        if typed:
            flag = "--" + typed[0].replace("_", "-")
            raise TilesearchError(f"the offline demo runs its own network on its own images, so {flag} does not apply: "
                                  f"give --model and --data to search your own network")
        chosen = get_demo(demo or DEFAULT_DEMO)
        settings = chosen.settings(Path(out), **search_options, **compute_options(options))
        finetune_args = {**chosen.finetune, **finetune_args}
    else:
        settings = RunSettings(model=model, data=data, data_source=data_source, holdout=holdout, annotations=annotations,
                               masks=masks, ignore_index=ignore_index, **search_options, **compute_options(options), **model_options(options))
    print_plan(plan_search(settings))  # checks every setting before anything is loaded or written
    if train_data is not None or model is None:
        check_finetune_args(**{**FINETUNE_DEFAULTS, **finetune_args}, batch_size=64)
    if model is None:
        train = chosen.data(Path(out), "train")
        train_data, options["train_masks"] = str(train.images), train.masks and str(train.masks)
        chosen.data(Path(out), "val")
    search = prepare_search(settings, out_dir=out, study_name=study_name, storage=storage, parallel=workers > 1,
                            memory_check=not options["skip_memory_check"])
    if train_data is not None:  # fails before the search, not after it
        check_train_data(search, train_data, train_labels(search, options["train_annotations"], options["train_masks"]))
    result = run_search(search, n_trials=n_trials, timeout=timeout, workers=workers)
    finish(result)
    if train_data is not None:
        metrics = finetune(result.run_dir, train_data, train_annotations=options["train_annotations"],
                           train_masks=options["train_masks"], **finetune_args)
        print_finetune(metrics, result.run_dir)


def resume(
    run_dir: RunDir,
    n_trials: Annotated[Optional[int], typer.Option(
        "--n-trials", help="Trials to add to the study's target [default: none, finish the target it has].")] = None,
    timeout: Timeout = None,
    workers: Workers = 1,
) -> None:
    """Continue the study of a run folder: finish its target of trials, or add --n-trials to it.

    Completed trials are never evaluated again; concurrent resumes add up."""
    check_trial_budget(n_trials, timeout)
    finish(run_search(prepare_resume(run_dir), n_trials=n_trials, timeout=timeout, workers=workers))


def worker(
    run_dir: Annotated[Optional[str], typer.Argument(help="A run folder on this machine, e.g. runs/regnety_002-5M.")] = None,
    study: Annotated[Optional[str], typer.Option(
        "--study", help="Study name, with --storage, when this machine has no run folder.")] = None,
    storage: Annotated[Optional[str], typer.Option(
        "--storage", help="The study's storage URL, e.g. postgresql://USER:PASSWORD@HOST/DB.")] = None,
    n_trials: Annotated[Optional[int], typer.Option(
        "--n-trials", help="At most this many trials by this worker [default: until the study's target].")] = None,
    timeout: Timeout = None,
    out: Annotated[str, typer.Option("--out", help="Where this machine keeps the run folder (with --study).")] = "runs",
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1 ... [default: the study's].")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", help="Images per forward pass on this worker [default: the study's].")] = None,
    threads: Threads = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Refuse to join unless the study is of this model.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Refuse to join unless the study scores these images.")] = None,
    buffer_budget: Annotated[Optional[str], typer.Option(
        "--buffer-budget", help="Refuse to join unless the study has this budget.")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="Refuse to join unless the study has this metric.")] = None,
    space: Annotated[Optional[str], typer.Option("--space", help="Refuse to join unless the study has this search space.")] = None,
    spawned: Annotated[bool, typer.Option(
        "--spawned", hidden=True, help="Started by `run --workers`: no progress bar or outputs.")] = False,
) -> None:
    """Join an existing study and take trials until its target is met.

    The study records its settings and target (set by `tilesearch run`), so nothing else is
    repeated; --model, --data, --buffer-budget, --metric and --space given here are checked
    against the study's. Start as many workers as there are GPUs or machines; a worker that dies
    has its trial failed and its config retried.
    """
    import optuna
    from rich.progress import Progress

    check_trial_budget(n_trials, timeout)
    check_positive(threads, "number of threads")
    if threads is not None:
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
            progress.update(task, completed=len(completed_trials(study_)), total=study_target(study_))

        joined, finished = start_worker(search, n_trials, timeout, on_trial=on_trial)
    if not finished:
        raise typer.Exit(130)
    if spawned:
        return
    write_search_outputs(search, joined)
    console.print(f"worker took {len(taken)} trials; study {search.study_name!r} has {len(completed_trials(joined))} of "
                  f"{study_target(joined)} complete; outputs in {search.run_dir}/")


def pareto(
    run_dir: RunDir,
    holdout: Annotated[bool, typer.Option(
        "--holdout", help="Also score every front point on the held-out images (cached decoding, progress bar): "
                          "pareto_holdout.csv and pareto_holdout.png, beside the search's front.")] = False,
) -> None:
    """Print the feasible Pareto front from the study's storage and refresh the run folder's files."""
    document = read_run_file(run_dir)
    study = load_study_of_run(document)
    settings = document["settings"]
    written = write_outputs(
        study, Path(run_dir), settings["model"], tuple(document["preprocessing"]["input_size"]),
        blocks_from_run(document), load_profile(settings["profile"]), document.get("budget_elements"),
        run_caveats(settings, short=True),
    )
    done = len(completed_trials(study))
    print_summary(RunResult(Path(run_dir), study, done, done, False, written, None), document)
    if holdout:
        search = prepare_resume(run_dir)
        print_holdout_front(holdout_front(search, study), get_metric(search.report_metric), Path(run_dir))


@with_options(WEIGHTS, PREPROCESSING, COMPUTE)
def sensitivity(
    model: Annotated[str, typer.Option("--model", help="Model name, as for `tilesearch run`.")],
    data: Annotated[str, typer.Option("--data", help="Images: ImageFolder layout, a flat folder of unlabeled images, "
                                                      "or a segmenter's images (see --masks).")],
    masks: Masks = None,
    ignore_index: IgnoreIndex = 255,
    val_subset: Annotated[int, typer.Option("--val-subset", help="Images to scan on (stratified, seeded).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the subset.")] = 0,
    space: Space = "default",
    profile: Profile = "ideal",
    out: Out = "runs",
    study_name: StudyName = None,
    **options,
) -> None:
    """One-block-at-a-time drops of every tile choice (prefix-cached); writes sensitivity.csv and .png."""
    task = task_of(model)
    if not task.supports_surrogate:
        raise TilesearchError(f"the sensitivity scan is for classifiers and segmenters, not the {task.name} {model!r}")
    metric = None  # the task's default: mIoU with masks, pseudo-mIoU without
    if task.name == CLASSIFIER:
        metric = "accuracy" if image_folder(data).classes else "agreement"
    settings = RunSettings(
        model=model, data=data, masks=masks, ignore_index=ignore_index, val_subset=val_subset, seed=seed, space=space,
        profile=profile, metric=metric, **compute_options(options), **model_options(options),
    )
    search = prepare_search(settings, out_dir=out, study_name=study_name, memory_check=not options["skip_memory_check"])
    print_sensitivity(model, sensitivity_for(search), search.metric)
    console.print(f"written: {search.run_dir / 'sensitivity.csv'}, {search.run_dir / 'sensitivity.png'}")
