"""Optuna storages of tilesearch studies, and failing the trials of workers that died.

Three kinds, by URL:

* ``sqlite:///FILE`` (the default): one machine; concurrent writers wait for the
  file lock (up to a minute) instead of failing.
* a journal file (``FILE.log`` or ``journal:FILE``): several processes on one machine.
* ``postgresql://USER:PASSWORD@HOST/DB``: several machines sharing one study.

A worker that dies mid-trial must not leave its trial RUNNING forever. RDB
storages (SQLite, PostgreSQL) record heartbeats: a trial whose worker stopped
beating for the grace period is failed by the next worker that starts a trial
and its parameters are enqueued again (Optuna's RetryHeartbeatStaleTrialCallback).
Optuna's journal storage has no heartbeats; on every storage each trial records
its worker's host and process id, and a live worker on the same host fails at
once the RUNNING trials of processes that no longer exist, with the same retry
(a killed single run that is resumed does not wait out the grace period).
"""

from __future__ import annotations

import copy
import datetime
import os
import socket
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tilesearch.core import StudyError, TilesearchError, UnknownNameError
from tilesearch.search._study import trials_in

MAX_RETRY = 2  # a config whose workers died this many times is not tried again
HEARTBEAT_INTERVAL = 30  # seconds; overridden by TILESEARCH_HEARTBEAT_INTERVAL
GRACE_PERIOD = 120  # seconds; overridden by TILESEARCH_HEARTBEAT_GRACE (default 4 x interval)
WORKER_ATTR = "worker"


class RetryDeadWorkersTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry (same parameters, a WAITING trial) without the dead worker's identity,
    so the retry is not mistaken for a dead worker's trial once a live worker has taken it."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trial = copy.deepcopy(trial)
        trial.user_attrs = {key: value for key, value in trial.user_attrs.items() if key != WORKER_ATTR}
        super().__call__(study, trial)


def _retry() -> RetryDeadWorkersTrial:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryDeadWorkersTrial(max_retry=MAX_RETRY)


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace period) in seconds; environment overrides let tests and impatient users shorten them."""
    try:
        interval = int(os.environ.get("TILESEARCH_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL))
        default_grace = GRACE_PERIOD if "TILESEARCH_HEARTBEAT_INTERVAL" not in os.environ else 4 * interval
        grace = int(os.environ.get("TILESEARCH_HEARTBEAT_GRACE", default_grace))
    except ValueError as error:
        raise TilesearchError("TILESEARCH_HEARTBEAT_INTERVAL and TILESEARCH_HEARTBEAT_GRACE must be whole seconds") from error
    if interval < 1 or grace <= interval:
        raise TilesearchError(f"heartbeat interval {interval} s and grace {grace} s: need interval >= 1 and grace > interval")
    return interval, grace


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    if "://" not in url or "@" not in url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an RDB URL after all
        return url


def without_password(url: str) -> tuple[str, str | None]:
    """(the URL without its password, the password): run folders record the first only, and
    workers get the password as PGPASSWORD, which PostgreSQL's client library reads."""
    if not url.startswith(("postgresql", "mysql")) or "@" not in url:
        return url, None
    from sqlalchemy.engine import URL, make_url

    u = make_url(url)  # URL.set(password=None) would keep the password
    bare = URL.create(u.drivername, u.username, None, u.host, u.port, u.database, u.query)
    return bare.render_as_string(hide_password=False), u.password


def is_journal(url: str) -> bool:
    return url.startswith("journal:") or url.endswith((".log", ".jsonl"))


def storage_file(url: str) -> Path | None:
    """The file of a file storage (SQLite or journal), as written in its URL; None for a database server."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    if is_journal(url):
        return Path(url.removeprefix("journal:"))
    return None


def with_file(url: str, file: Path) -> str:
    """``url`` of the same kind, pointing at ``file``."""
    return f"sqlite:///{file}" if url.startswith("sqlite:///") else f"journal:{file}" if url.startswith("journal:") else str(file)


def absolute_storage(url: str, base: Path) -> str:
    """A file storage's URL with a relative path resolved against ``base``; other URLs as they are."""
    file = storage_file(url)
    return url if file is None or file.is_absolute() else with_file(url, (base / file).resolve())


def make_storage(url: str, must_exist: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; ``must_exist`` refuses a journal or SQLite file that is not there yet."""
    if url.startswith(("sqlite:", "postgresql", "mysql")):
        return _rdb_storage(url, must_exist)
    if is_journal(url):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url.removeprefix("journal:"))
        if must_exist and not path.is_file():
            raise StudyError(f"journal file {str(path)!r} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    raise UnknownNameError(
        f"unknown storage {safe_url(url)!r}: expected sqlite:///FILE, a journal FILE.log, or postgresql://USER:PASSWORD@HOST/DB"
    )


def _rdb_storage(url: str, must_exist: bool) -> optuna.storages.RDBStorage:
    from optuna.storages import RDBStorage

    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if must_exist and not path.is_file():
            raise StudyError(f"SQLite file {str(path)!r} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": 60}  # wait for another writer's lock rather than fail
    else:
        connect_args = {"connect_timeout": 10}  # an unreachable host fails in seconds, not minutes
    interval, grace = heartbeat_settings()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                engine_kwargs={"connect_args": connect_args},
                heartbeat_interval=interval,
                grace_period=grace,
                heartbeat_stale_trial_callback=_retry(),
            )
    except ImportError as error:
        raise StudyError(
            f"no database driver for {safe_url(url)!r}: install it with pip install 'psycopg[binary]'"
        ) from error
    except Exception as error:  # sqlalchemy raises many types for a bad URL, server or password
        raise StudyError(f"cannot open storage {safe_url(url)!r}: {_reason(error)}") from error


def _reason(error: Exception) -> str:
    """The line of a driver's error that says what went wrong."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    fatal = [line for line in lines if "FATAL" in line or "failed" in line or "refused" in line]
    text = (fatal or lines)[0]
    return text.split(") ", 1)[-1][:240] if text.startswith("(") else text[:240]


def load_existing_study(url: str, study_name: str) -> optuna.Study:
    """A study that must already exist in ``url``; a missing one names those that do."""
    storage = make_storage(url, must_exist=True)
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError as error:
        names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
        known = ", ".join(repr(name) for name in names[:8]) or "none"
        raise StudyError(f"study {study_name!r} is not in storage {safe_url(url)!r} (studies there: {known})") from error


def worker_host() -> str:
    """This machine's name in trial records: TILESEARCH_WORKER_HOST, else the host name. Containers that
    share a host name but not their processes must set it apart."""
    return os.environ.get("TILESEARCH_WORKER_HOST") or socket.gethostname()


def worker_identity() -> dict:
    """Who runs a trial: host, process id and the process's start time (so a reused pid is not mistaken)."""
    return {"host": worker_host(), "pid": os.getpid(), "started": _process_start(os.getpid())}


def _process_start(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _is_alive(identity: dict) -> bool:
    try:
        os.kill(identity["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        fields = Path(f"/proc/{identity['pid']}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True  # no /proc: trust kill()
    if fields[0] == "Z":  # a zombie has finished, whoever reaps it
        return False
    return identity.get("started") in (None, fields[19])


def fail_dead_workers_trials(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials of dead workers and enqueue their parameters again; returns their numbers.

    A worker of this host that no longer exists is seen at once, on any storage; on RDB storages
    a worker elsewhere is seen when its heartbeat is older than the grace period.
    """
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage, host, failed = study._storage, worker_host(), []
    retry, grace = _retry(), heartbeat_settings()[1]
    for trial in trials_in(study, TrialState.RUNNING):
        identity = trial.user_attrs.get(WORKER_ATTR)
        if identity is None:  # died between taking the trial and signing it: only its age tells
            started = trial.datetime_start
            if started is None or (datetime.datetime.now() - started).total_seconds() < grace:
                continue
        elif identity.get("host") != host or _is_alive(identity):
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker failed it first
            continue
        retry(study, storage.get_trial(trial._trial_id))
        failed.append(trial.number)
    if isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage):
        before = {t.number for t in trials_in(study, TrialState.FAIL)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        failed += sorted({t.number for t in trials_in(study, TrialState.FAIL)} - before)
    return failed
