"""Ctrl-C and SIGTERM at a safe point: never inside a write to the study's storage.

A KeyboardInterrupt raised while SQLAlchemy writes a trial can leave that write's
transaction open, holding SQLite's lock, and the next write (the trial's FAIL)
then waits for it until the lock times out. So a signal handler calls
:func:`request_stop` instead of raising: while a config is being scored (the only
long step of a trial) the trial is abandoned at once, and Optuna fails it; at any
other moment of a worker's loop the write in progress finishes and the loop ends
before the next trial; outside a worker's loop it interrupts as Ctrl-C always does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class _State:
    working = False  # inside a worker's loop
    scoring = False  # inside the scoring of one config
    requested = False  # a stop was asked for between two storage writes


_STATE = _State()


def request_stop() -> None:
    """Stop this process's search as Ctrl-C would, at a safe point; meant to be called by a signal handler."""
    if _STATE.scoring or not _STATE.working:
        raise KeyboardInterrupt
    _STATE.requested = True


def stop_requested() -> bool:
    return _STATE.requested


@contextmanager
def interruptible() -> Iterator[None]:
    """The scoring of a config: a stop asked for now interrupts it."""
    if _STATE.requested:
        raise KeyboardInterrupt
    _STATE.scoring = True
    try:
        yield
    finally:
        _STATE.scoring = False


@contextmanager
def worker_loop() -> Iterator[None]:
    """A worker's loop over trials, which ends at the first :func:`stop_requested`."""
    _STATE.working, _STATE.requested = True, False
    try:
        yield
    finally:
        _STATE.working = False
