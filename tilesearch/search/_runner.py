"""Run a prepared search: open or continue its study, take trials, write the run folder's outputs.

A run lives in a folder (``runs/<study>``): ``run.yaml`` records the settings and
the model's SE blocks, the study sits in an Optuna storage (an SQLite file in the
folder by default). ``tilesearch resume`` (or the same ``run`` command again)
finishes the study's target of trials, or adds ``--n-trials`` more to it; a config
already evaluated is never evaluated again. The SE
baseline (all GAP) and the paper's uniform 7xW are the first trials; with the
surrogate strategy every later trial is the config the learning surrogate, refit to
all measured configs, predicts to add the most to the front (the sampler's otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from tilesearch.core import TilesearchError
from tilesearch.search._objective import Search
from tilesearch.search._prepare import save_run
from tilesearch.search._holdout import holdout_report
from tilesearch.search._results import best_trial, write_outputs
from tilesearch.search._seeding import seed_from_surrogate
from tilesearch.search._settings import run_caveats
from tilesearch.search._study import add_to_target, completed_trials, set_target, study_metric, study_target
from tilesearch.search._workers import run_workers, work


@dataclass
class RunResult:
    """What a call of :func:`run_search` did."""

    run_dir: Path
    study: optuna.Study
    completed_before: int
    completed_after: int
    interrupted: bool
    written: dict[str, Path]
    holdout: dict | None
    problems: list[str] = field(default_factory=list)  # workers that exited with an error
    target: int | None = None  # the study's target of complete trials
    skipped: list[str] = field(default_factory=list)  # unreadable images left out of the search's images


def check_trial_budget(n_trials: int | None, timeout: float | None) -> None:
    """A number of trials and a timeout a user typed, refused with one line before anything is touched."""
    if n_trials is not None and n_trials < 1:
        raise TilesearchError(f"invalid number of trials {n_trials}: expected a positive integer")
    if timeout is not None and timeout <= 0:
        raise TilesearchError(f"invalid timeout {timeout}: expected a positive number of seconds")


def _progress_callback(progress, task, completed_before: int) -> Callable:
    def update(study: optuna.Study, trial: optuna.trial.FrozenTrial | None = None) -> None:
        best, metric = best_trial(study), study_metric(study)
        shown = "-" if best is None else metric.format(best.values[0])
        progress.update(task, completed=len(completed_trials(study)) - completed_before,
                        status=f"best feasible {metric.name}: {shown}")

    return update


def write_search_outputs(search: Search, study: optuna.Study) -> dict[str, Path]:
    """trials.csv, pareto.csv, pareto.png and best.yaml of a search's study."""
    return write_outputs(study, search.run_dir, search.settings.model, search.preprocessing.input_size, search.blocks,
                         search.profile, search.budget, run_caveats(search.settings.to_dict(), short=True))


DEFAULT_TRIALS = 40


def run_search(
    search: Search,
    n_trials: int | None = None,
    timeout: float | None = None,
    show_progress: bool = True,
    workers: int = 1,
    report_holdout: bool = True,
) -> RunResult:
    """Open (or continue) the study, take trials until it has its target of complete trials, write the outputs.

    A new study's target is ``n_trials`` (40 by default); on an existing one ``n_trials`` more are added to
    the target, and without it the target the study already has is finished (an interrupted run completes
    what it was asked for). Concurrent commands on one study add up. ``workers`` > 1 starts that many
    worker processes on it (see :func:`run_workers`), and more may join from elsewhere.
    ``report_holdout`` scores SE and the best config on the held-out images at the end.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    check_trial_budget(n_trials, timeout)  # before the study is created or touched
    if workers < 1:
        raise TilesearchError(f"invalid number of workers {workers}: expected a positive integer")
    search.load_data()  # data and head checked before the study is created or touched
    study = search.open_study()
    save_run(search)
    before = len(completed_trials(study))
    if study_target(study) is None:  # a new study (or one from a version that recorded no target)
        set_target(study, before + (n_trials or DEFAULT_TRIALS))
    elif n_trials:
        add_to_target(study, n_trials)
    target = study_target(study)
    if search.strategy == "surrogate":
        seed_from_surrogate(search, study, show_progress)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}")]
    problems: list[str] = []
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        label = "trials" if workers == 1 else f"trials ({workers} workers)"
        task = progress.add_task(label, total=max(target - before, 0), status="")
        update = _progress_callback(progress, task, before)
        if workers == 1:
            finished = work(search, study, timeout=timeout, on_trial=update)
        else:
            finished, problems = run_workers(search, workers, timeout, lambda: update(study))
    written = write_search_outputs(search, study)
    holdout = holdout_report(search, study) if finished and report_holdout else None
    return RunResult(search.run_dir, study, before, len(completed_trials(study)), not finished, written, holdout,
                     problems, target, search.scorer.images.skipped)
