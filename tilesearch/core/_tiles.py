"""Tile choices for tiled squeeze-and-excite (TSE).

A tile is the spatial extent one squeeze descriptor averages over
(Vosco et al., "Tiled Squeeze-and-Excite", section 3.2):

* ``GAP``  -- the whole tensor: the original SE block.
* ``kxW``  -- strip tiling by rows: k rows, full width.
* ``Hxk``  -- strip tiling by columns: full height, k columns.
* ``kxk`` / ``hxw`` -- patch tiling: fixed h x w patches.

This module is the one place a tile typed by a user is parsed (:func:`parse_tile`)
and the one place a tile choice becomes a per-block config (:func:`tile_config`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tilesearch.core._errors import TilesearchError

ACCEPTED_FORMS = "GAP, kxW (k rows), Hxk (k columns) or hxw (h x w patch), with k, h, w positive integers"

_DIM = r"(H|W|[+-]?\d+)"
_TILE_RE = re.compile(rf"^\s*{_DIM}\s*[xX×]\s*{_DIM}\s*$")


@dataclass(frozen=True, order=True)
class TileSpec:
    """A tile as the user wrote it; ``None`` on an axis means the full extent.

    ``TileSpec(None, None)`` is GAP, ``TileSpec(7, None)`` is 7xW,
    ``TileSpec(None, 7)`` is Hx7 and ``TileSpec(7, 7)`` is a 7x7 patch.
    """

    rows: int | None = None
    cols: int | None = None

    def __post_init__(self) -> None:
        for value in (self.rows, self.cols):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise TilesearchError(f"invalid tile size {value!r}: expected {ACCEPTED_FORMS}")

    @property
    def is_gap(self) -> bool:
        return self.rows is None and self.cols is None

    def resolve(self, height: int, width: int) -> tuple[int, int]:
        """Tile height and width on a ``height x width`` tensor; a larger tile clips to it."""
        tile_h = height if self.rows is None else min(self.rows, height)
        tile_w = width if self.cols is None else min(self.cols, width)
        return tile_h, tile_w

    def num_tiles(self, height: int, width: int) -> int:
        """Number of (possibly partial) tiles covering a ``height x width`` tensor."""
        tile_h, tile_w = self.resolve(height, width)
        return -(-height // tile_h) * -(-width // tile_w)

    def __str__(self) -> str:
        if self.is_gap:
            return "GAP"
        rows = "H" if self.rows is None else str(self.rows)
        cols = "W" if self.cols is None else str(self.cols)
        return f"{rows}x{cols}"


GAP = TileSpec()


def parse_tile(text: str | TileSpec) -> TileSpec:
    """Parse ``GAP``, ``kxW``, ``Hxk``, ``hxw`` (``HxW`` is GAP) into a :class:`TileSpec`."""
    if isinstance(text, TileSpec):
        return text
    if not isinstance(text, str):
        raise TilesearchError(f"invalid tile {text!r}: expected {ACCEPTED_FORMS}")
    if text.strip().upper() == "GAP":
        return GAP
    match = _TILE_RE.match(text)
    if match is None:
        raise TilesearchError(f"invalid tile {text!r}: expected {ACCEPTED_FORMS}")
    rows_text, cols_text = match.groups()
    if rows_text == "W" or cols_text == "H":
        raise TilesearchError(f"invalid tile {text!r}: rows come first (kxW, Hxk); expected {ACCEPTED_FORMS}")
    rows = None if rows_text == "H" else int(rows_text)
    cols = None if cols_text == "W" else int(cols_text)
    if (rows is not None and rows < 1) or (cols is not None and cols < 1):
        raise TilesearchError(f"invalid tile {text!r}: sizes must be positive; expected {ACCEPTED_FORMS}")
    return TileSpec(rows, cols)


TileChoice = TileSpec | str
TileConfig = Mapping[str, TileChoice]


def tile_config(block_names: Iterable[str], tiles: TileChoice | TileConfig) -> dict[str, TileSpec]:
    """One tile per block: ``tiles`` is a tile for every block or a name -> tile mapping.

    Blocks a mapping does not name stay GAP; a mapping that names a block the
    model does not have is an error listing those names.
    """
    names = list(block_names)
    if not isinstance(tiles, Mapping):
        uniform = parse_tile(tiles)
        return {name: uniform for name in names}
    parsed = {name: parse_tile(tile) for name, tile in tiles.items()}
    unknown = [name for name in parsed if name not in set(names)]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        example = f" (its blocks look like {names[0]!r})" if names else ""
        raise TilesearchError(f"tile config names blocks the model does not have: {shown}{example}")
    return {name: parsed.get(name, GAP) for name in names}
