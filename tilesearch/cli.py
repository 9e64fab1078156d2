"""``tilesearch``: a thin command-line shell over the public Python API."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from collections.abc import Callable
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from tilesearch.cost import available_profiles, buffer_report, format_count, load_profile
from tilesearch.discover import discover_model
from tilesearch.errors import TilesearchError
from tilesearch.models import default_input_size, matching_names, model_source, se_block_counts
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


def main() -> None:
    app(prog_name="tilesearch")


if __name__ == "__main__":
    sys.exit(main())
