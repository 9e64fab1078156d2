"""``tilesearch buffer`` and ``tilesearch models``: what a model's SE blocks cost, and which models have them."""

import json
from typing import Annotated, Optional

import typer

from tilesearch.cli._options import AsJson, InputSize, Profile
from tilesearch.cli._render import print_buffer, print_models
from tilesearch.core import ACCEPTED_FORMS, TilesearchError, buffer_report, load_profile, parse_input_size, parse_tile
from tilesearch.zoo import default_input_size, discover_model, matching_names, model_source, se_block_counts


def buffer(
    model: Annotated[str, typer.Argument(
        help="Model name: timm (regnety_008), effdet (efficientdet_d2), torchvision/NAME or tilesearch_demo_net.")],
    input_size: InputSize = None,
    tile: Annotated[str, typer.Option("--tile", help=f"Tile for every SE block: {ACCEPTED_FORMS}.")] = "7xW",
    profile: Profile = "ideal",
    as_json: AsJson = False,
) -> None:
    """Per-block and network pipeline buffer of MODEL under one tile, beside the original SE."""
    spec, hardware = parse_tile(tile), load_profile(profile)
    found = discover_model(model, parse_input_size(input_size))
    report = buffer_report(found.blocks, spec, hardware)
    if as_json:
        payload = {"model": model, "input_size": list(found.input_size), "tile": str(spec), **report.to_dict()}
        typer.echo(json.dumps(payload, indent=2))
    else:
        print_buffer(model, found.input_size, spec, hardware, report)


def models(
    pattern: Annotated[Optional[str], typer.Argument(
        help="Glob or substring to filter names [default: the known SE families].")] = None,
) -> None:
    """List the supported model names (those with channel-attention blocks), their block counts and how each
    kind was found: by class (shipped), by registration (register_flavour) or by generic discovery."""
    names = matching_names(pattern)
    if not names:
        raise TilesearchError(f"no model name matches {pattern!r}; try a shorter filter such as 'regnety'")
    counts = se_block_counts(names)
    rows = [(name, model_source(name).zoo.name, counts[name], default_input_size(name))
            for name in names if counts[name].count > 0]
    if not rows:
        raise TilesearchError(f"no model matching {pattern!r} has a tileable channel-attention block")
    print_models(rows)
