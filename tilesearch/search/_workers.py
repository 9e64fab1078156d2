"""Workers: processes that share one study and take trials until the study's target is met.

``tilesearch run`` records in the study its settings and its target (how many
COMPLETE trials it wants). Any number of workers then join: ``run --workers K``
starts K on this machine (one per GPU when several are visible), ``tilesearch
worker`` joins from another shell or machine with nothing repeated but the study
and storage. A worker stops when the target is met; a trial that would overshoot
it (two workers starting the last trial at once) is pruned unevaluated, so the
study ends with exactly its target of COMPLETE trials. While trials of other
workers are still running it waits, failing the trials of dead workers (see
:mod:`tilesearch.search._storage`) so that their configs are retried.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tilesearch.core import StudyError, TilesearchError
from tilesearch.search._interruption import stop_requested, worker_loop
from tilesearch.search._objective import Search
from tilesearch.search._prepare import prepare_search, save_run
from tilesearch.search._run_folder import read_run_file
from tilesearch.search._seeding import load_saved_surrogate
from tilesearch.search._settings import IDENTITY, RunSettings, first_difference
from tilesearch.search._storage import (
    WORKER_ATTR,
    fail_dead_workers_trials,
    load_existing_study,
    without_password,
    worker_identity,
)
from tilesearch.search._study import study_target, trials_in

POLL_SECONDS = 0.5


def _guarded(search: Search, target: int) -> Callable[[optuna.Trial], tuple[float, float]]:
    """The search's objective, which records its worker and prunes a trial beyond the target."""
    identity = worker_identity()

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        trial.set_user_attr(WORKER_ATTR, identity)
        ahead = trials_in(trial.study, TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        if sum(1 for other in ahead if other.number < trial.number) >= target:
            raise optuna.TrialPruned(f"the study's target of {target} trials is met by earlier trials")
        return search.objective(trial)

    return objective


def work(
    search: Search,
    study: optuna.Study,
    max_trials: int | None = None,
    timeout: float | None = None,
    on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> bool:
    """Take trials until the study has its target of COMPLETE trials, this worker has run
    ``max_trials`` or ``timeout`` seconds have passed. False if interrupted by Ctrl-C."""
    target = study_target(study)
    if target is None:
        raise StudyError(f"study {study.study_name!r} has no trial target: start it with `tilesearch run ... --n-trials N`")
    objective = _guarded(search, target)
    try:
        with worker_loop():
            return _take_trials(study, objective, target, max_trials, timeout, on_trial, search.prepare_next)
    except KeyboardInterrupt:
        return False


def _take_trials(study: optuna.Study, objective: Callable, target: int, max_trials: int | None,
                 timeout: float | None, on_trial: Callable | None, prepare_next: Callable[[optuna.Study], None]) -> bool:
    started, taken = time.monotonic(), 0
    while not stop_requested():
        fail_dead_workers_trials(study)
        complete, running = len(trials_in(study, TrialState.COMPLETE)), len(trials_in(study, TrialState.RUNNING))
        if complete >= target or (max_trials is not None and taken >= max_trials):
            return True
        if timeout is not None and time.monotonic() - started >= timeout:
            return True
        if complete + running >= target:  # the rest is running elsewhere; wait in case a worker dies
            time.sleep(POLL_SECONDS)
            continue
        prepare_next(study)  # the learning surrogate refits and queues its next config
        study.optimize(objective, n_trials=1, callbacks=[on_trial] if on_trial else None, gc_after_trial=False)
        taken += 1
    return False


def join_study(
    run_dir: str | Path | None = None,
    study_name: str | None = None,
    storage: str | None = None,
    out: str | Path = "runs",
    expect: dict | None = None,
    device: str | None = None,
    batch_size: int | None = None,
) -> Search:
    """The search of an existing study, from its run folder or from its name and storage.

    ``expect`` holds settings a user typed (model, data, ...): each must agree with the study's.
    ``device`` and ``batch_size`` are the worker's own.
    """
    if run_dir is not None:
        if study_name or storage:
            raise TilesearchError("give a run folder or --study NAME with --storage URL, not both")
        document = read_run_file(run_dir)
        study_name, storage = document["study_name"], document["storage"]
    elif not (study_name and storage):
        raise TilesearchError("give a run folder (runs/STUDY) or both --study NAME and --storage URL")
    study = load_existing_study(storage, study_name)
    recorded = study.user_attrs.get("settings")
    if recorded is None:
        raise StudyError(f"study {study_name!r} was not made by `tilesearch run` (it records no settings)")
    given = {key: value for key, value in (expect or {}).items() if value is not None and key in IDENTITY}
    key = first_difference(RunSettings.from_dict(recorded).to_dict(), given, given)
    if key is not None:
        raise StudyError(
            f"study {study_name!r} was made with {key}={recorded.get(key)!r}, not {given[key]!r}; "
            f"a worker takes the study's own settings, so leave that option out"
        )
    if study_target(study) is None:
        raise StudyError(f"study {study_name!r} has no trial target: start it with `tilesearch run ... --n-trials N`")
    settings = RunSettings.from_dict(recorded)
    if device is not None:
        settings = replace(settings, device=device)
    if batch_size is not None:
        settings = replace(settings, batch_size=batch_size)
    run_dir = Path(run_dir) if run_dir is not None else Path(out) / study_name
    return prepare_search(settings, study_name=study_name, storage=storage, run_dir=run_dir, memory_check=False)


def start_worker(search: Search, max_trials: int | None = None, timeout: float | None = None, on_trial=None) -> tuple[optuna.Study, bool]:
    """Open a joined study (the run folder is made if this machine has none) and work on it."""
    search.load_data()
    study = search.open_study()
    if not (search.run_dir / "run.yaml").is_file():
        save_run(search)
    load_saved_surrogate(search)
    return study, work(search, study, max_trials, timeout, on_trial)


def local_devices(device: str | None, count: int) -> list[str | None]:
    """One device per worker: the run's own, else the visible GPUs in turn."""
    import torch

    if device is None and torch.cuda.device_count() > 1:
        return [f"cuda:{i % torch.cuda.device_count()}" for i in range(count)]
    return [device] * count


def run_workers(
    search: Search,
    count: int,
    timeout: float | None = None,
    on_poll: Callable[[], None] | None = None,
) -> tuple[bool, list[str]]:
    """Start ``count`` worker processes on the run folder and wait for them.

    Returns (not interrupted, problems): a worker that exits with an error is reported, not
    fatal, since the others fail its trial and retry the config. Logs go to ``run_dir/workers/``.
    """
    logs = search.run_dir / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // count)
    password = without_password(search.storage_url)[1]  # run.yaml has none: PostgreSQL's client reads PGPASSWORD
    env = {**os.environ, **({"PGPASSWORD": password} if password else {})}
    processes = []
    for index, device in enumerate(local_devices(search.settings.device, count)):
        command = [sys.executable, "-m", "tilesearch", "worker", str(search.run_dir), "--spawned"]
        command += ["--device", device] if device else []
        command += ["--threads", str(threads)] if not (device or "").startswith("cuda") else []
        command += ["--timeout", str(timeout)] if timeout is not None else []
        with open(logs / f"worker-{index}.log", "w") as log:  # own session: Ctrl-C reaches them once, from here
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
    interrupted = False
    try:
        while any(process.poll() is None for process in processes):
            if on_poll:
                on_poll()
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        interrupted = True
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait()
    if on_poll:
        on_poll()
    problems = [
        f"worker {index} exited with status {process.returncode} (log: {logs / f'worker-{index}.log'})"
        for index, process in enumerate(processes)
        if process.returncode not in (0, 130) and not interrupted
    ]
    return not interrupted, problems
