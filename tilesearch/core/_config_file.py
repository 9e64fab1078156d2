"""The tile-config file: one tile per SE block of one model, as YAML.

A versioned schema (``schema: tilesearch/tile-config``, ``version: 1``) that
records what the tiles were chosen for (model, input size, profile) and the cost
of every block, so a config can be read by people and checked on load::

    schema: tilesearch/tile-config
    version: 1
    model: regnety_002
    input_size: [128, 128]
    profile: ideal
    bytes_per_element: 1
    blocks:
    - {name: s1.b1.se, channels: 24, height: 32, width: 32, tile: 7xW, tile_h: 7, tile_w: 32, buffer: 5376}
    totals: {buffer: 83392, se_buffer: 148608, buffer_bytes: 83392, extra_macs: 1234}
    metrics: {accuracy: 0.83, trial: 12}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tilesearch.core._cost import BufferReport
from tilesearch.core._errors import TilesearchError
from tilesearch.core._files import write_text_atomically
from tilesearch.core._tiles import TileSpec, parse_tile
from tilesearch.core._yaml import read_yaml

SCHEMA = "tilesearch/tile-config"
VERSION = 1
_TOP_KEYS = {"schema", "version", "model", "input_size", "profile", "bytes_per_element", "blocks", "totals", "metrics"}


@dataclass
class TileConfigFile:
    """A tile config as saved: the tiles and what they were chosen for."""

    model: str
    input_size: tuple[int, int]
    profile: str
    tiles: dict[str, TileSpec]
    totals: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def tiles_for(self, block_names: list[str]) -> dict[str, TileSpec]:
        """The tiles, checked to name exactly the SE blocks ``block_names`` of the model they are applied to."""
        missing = [name for name in block_names if name not in self.tiles]
        extra = [name for name in self.tiles if name not in block_names]
        if missing or extra:
            parts = ([f"the model's {', '.join(missing[:3])} missing from it"] if missing else []) + (
                [f"{', '.join(extra[:3])} not in the model"] if extra else []
            )
            raise TilesearchError(
                f"tile config for {self.model!r} does not match this model's SE blocks: {'; '.join(parts)}"
            )
        return dict(self.tiles)


def config_document(
    model: str, input_size: tuple[int, int], report: BufferReport, metrics: dict | None = None
) -> dict:
    """The YAML document of a config whose cost is ``report``."""
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "model": model,
        "input_size": list(input_size),
        "profile": report.profile.name,
        "bytes_per_element": report.profile.bytes_per_element,
        "blocks": [
            {key: getattr(block, key) for key in ("name", "channels", "height", "width", "tile", "tile_h", "tile_w", "buffer")}
            for block in report.blocks
        ],
        "totals": {
            "buffer": report.total,
            "se_buffer": report.se_total,
            "buffer_bytes": report.total_bytes,
            "extra_macs": report.extra_macs,
        },
        "metrics": dict(metrics or {}),
    }


def save_config(path: str | Path, document: dict) -> Path:
    """Write a tile-config document (see :func:`config_document`) as YAML, atomically."""
    return write_text_atomically(path, yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=140))


def load_config(path: str | Path) -> TileConfigFile:
    """Read and validate a tile-config YAML file."""
    path = Path(path)
    data = read_yaml(path, "config file")
    where = f"config file {str(path)!r}"
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise TilesearchError(f"{where} is not a tilesearch tile config (expected 'schema: {SCHEMA}')")
    if data.get("version") != VERSION:
        raise TilesearchError(f"{where} has version {data.get('version')!r}; this tilesearch reads version {VERSION}")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise TilesearchError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    blocks = data.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise TilesearchError(f"{where} lists no blocks")
    tiles = {}
    for entry in blocks:
        if not isinstance(entry, dict) or "name" not in entry or "tile" not in entry:
            raise TilesearchError(f"{where}: every block needs a name and a tile, got {entry!r}")
        tiles[str(entry["name"])] = parse_tile(str(entry["tile"]))
    size = data.get("input_size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise TilesearchError(f"{where} has input_size {size!r}: expected [height, width]")
    return TileConfigFile(
        model=str(data.get("model", "")),
        input_size=(size[0], size[1]),
        profile=str(data.get("profile", "ideal")),
        tiles=tiles,
        totals=dict(data.get("totals") or {}),
        metrics=dict(data.get("metrics") or {}),
    )
