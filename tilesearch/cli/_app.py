"""The ``tilesearch`` command: a thin typer shell over the public Python API."""

from __future__ import annotations

import functools
import logging
import signal
import warnings
from collections.abc import Callable

import typer

from tilesearch.cli._deploy import export, finetune
from tilesearch.cli._inspect import buffer, models
from tilesearch.cli._score import evaluate
from tilesearch.cli._search import pareto, resume, run, sensitivity, worker
from tilesearch.core import TilesearchError
from tilesearch.search import request_stop

app = typer.Typer(
    help="Find, per squeeze-and-excite block, the tile that fits an accelerator's activation buffer "
    "with the least accuracy lost (tiled squeeze-and-excite, Vosco et al.).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


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


for _name, _command in (
    ("run", run), ("resume", resume), ("worker", worker), ("pareto", pareto), ("sensitivity", sensitivity),
    ("eval", evaluate), ("finetune", finetune), ("export", export), ("buffer", buffer), ("models", models),
):
    app.command(_name)(user_errors(_command))


class _ReportedTrialFailures(logging.Filter):
    """Drops Optuna's warning (and traceback) for a trial that failed on Ctrl-C, SIGTERM or a user mistake:
    the command has already said what happened in one line."""

    def __init__(self) -> None:
        super().__init__()
        self.reported: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        trial = message.split(" failed with ", 1)[0] if " failed with " in message else None
        error = record.exc_info[1] if record.exc_info else None
        if trial and isinstance(error, (KeyboardInterrupt, TilesearchError)):
            self.reported.add(trial)
            return False
        return trial not in self.reported


def _interrupt(_signum, _frame) -> None:
    request_stop()  # SIGTERM ends a command the way Ctrl-C does: completed trials kept, the trial in progress failed


def configure_process() -> None:
    """What the command-line program (not the library) sets for its own process."""
    import optuna

    # effdet decorates helpers with torch.jit.script, which torch now warns about on import.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    reported = _ReportedTrialFailures()
    for handler in logging.getLogger("optuna").handlers:  # records of optuna.* loggers pass its handlers, not it
        handler.addFilter(reported)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def main() -> None:
    configure_process()
    app(prog_name="tilesearch")
