"""The ``tilesearch`` command: a thin typer shell over the public Python API."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import typer

from tilesearch.cli._deploy import export, finetune
from tilesearch.cli._inspect import buffer, models
from tilesearch.cli._score import evaluate
from tilesearch.cli._search import pareto, resume, run, sensitivity, worker
from tilesearch.core import TilesearchError

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


def quiet_third_party_output() -> None:
    """What the command-line program (not the library) wants of its dependencies' chatter."""
    import optuna

    # effdet decorates helpers with torch.jit.script, which torch now warns about on import.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def main() -> None:
    quiet_third_party_output()
    app(prog_name="tilesearch")
