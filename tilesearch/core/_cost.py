"""Analytic pipeline-buffer and compute cost of a tile config.

Vosco et al., section 3.2: a TSE block needs at least tile_h x tile_w x C
elements of buffering (SE: its whole H x W x C input), and its excite runs
once per tile, so N tiles cost (N - 1) excites more than SE. The network's
buffer is the sum over its SE blocks, which is how Tables 1, 4 and 5 count.

How much a tile really costs depends on the accelerator; a
:class:`HardwareProfile` (YAML, see ``tilesearch/profiles``) says at what
granularity it buffers and how many bytes an element takes.

This module holds the one buffer formula (:meth:`HardwareProfile.buffer_elements`)
and the one budget parser (:func:`parse_budget`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from tilesearch.core._blocks import SEBlock
from tilesearch.core._errors import TilesearchError, UnknownNameError
from tilesearch.core._tiles import TileChoice, TileConfig, TileSpec, tile_config
from tilesearch.core._yaml import parse_yaml

GRANULARITIES = ("tile", "rows")


@dataclass(frozen=True)
class HardwareProfile:
    """How an accelerator buffers an SE block's input.

    ``granularity`` is ``tile`` (exactly tile_h x tile_w x C) or ``rows``
    (whole rows, tile_h x W x C, as on row-stationary dataflow designs).
    """

    name: str
    granularity: str = "tile"
    bytes_per_element: int = 1
    description: str = ""

    def buffer_elements(self, block: SEBlock, tile: TileSpec) -> int:
        tile_h, tile_w = tile.resolve(block.height, block.width)
        width = block.width if self.granularity == "rows" else tile_w
        return tile_h * width * block.channels


def available_profiles() -> list[str]:
    """Names of the profiles shipped with tilesearch."""
    folder = resources.files("tilesearch.core") / "profiles"
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """A shipped profile by name (``ideal``, ``row-stationary``) or a profile YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text()
    elif str(name_or_path) in available_profiles():
        text = (resources.files("tilesearch.core") / "profiles" / f"{name_or_path}.yaml").read_text()
    else:
        raise UnknownNameError(
            f"unknown profile {str(name_or_path)!r}: expected one of {', '.join(available_profiles())} or a .yaml file"
        )
    data = parse_yaml(text, f"profile {str(name_or_path)!r}") or {}
    unknown = set(data) - {"name", "granularity", "bytes_per_element", "description"}
    if unknown:
        raise TilesearchError(f"profile {str(name_or_path)!r} has unknown keys: {', '.join(sorted(unknown))}")
    profile = HardwareProfile(**{"name": path.stem, **data})
    if profile.granularity not in GRANULARITIES:
        raise TilesearchError(
            f"profile {profile.name!r} has granularity {profile.granularity!r}: expected one of {', '.join(GRANULARITIES)}"
        )
    if not isinstance(profile.bytes_per_element, int) or profile.bytes_per_element < 1:
        raise TilesearchError(
            f"profile {profile.name!r} has bytes_per_element {profile.bytes_per_element!r}: expected a positive integer"
        )
    return profile


@dataclass(frozen=True)
class BlockCost:
    """Cost of one SE block under one tile."""

    name: str
    stage: int | None
    kind: str
    channels: int
    height: int
    width: int
    tile: str
    tile_h: int
    tile_w: int
    tiles: int
    buffer: int
    se_buffer: int
    extra_macs: int


@dataclass(frozen=True)
class BufferReport:
    """Per-block and network cost of a tile config under a hardware profile."""

    profile: HardwareProfile
    blocks: list[BlockCost]

    @property
    def total(self) -> int:
        """Network buffer in elements: the sum over SE blocks."""
        return sum(block.buffer for block in self.blocks)

    @property
    def se_total(self) -> int:
        """Network buffer of the original SE model (every block GAP)."""
        return sum(block.se_buffer for block in self.blocks)

    @property
    def total_bytes(self) -> int:
        return self.total * self.profile.bytes_per_element

    @property
    def se_total_bytes(self) -> int:
        return self.se_total * self.profile.bytes_per_element

    @property
    def extra_macs(self) -> int:
        return sum(block.extra_macs for block in self.blocks)

    def to_dict(self) -> dict:
        return {
            "profile": self.profile.name,
            "bytes_per_element": self.profile.bytes_per_element,
            "total": self.total,
            "se_total": self.se_total,
            "total_bytes": self.total_bytes,
            "se_total_bytes": self.se_total_bytes,
            "extra_macs": self.extra_macs,
            "blocks": [asdict(block) for block in self.blocks],
        }


def block_cost(block: SEBlock, tile: TileSpec, profile: HardwareProfile) -> BlockCost:
    tile_h, tile_w = tile.resolve(block.height, block.width)
    tiles = tile.num_tiles(block.height, block.width)
    return BlockCost(
        name=block.name,
        stage=block.stage,
        kind=block.kind,
        channels=block.channels,
        height=block.height,
        width=block.width,
        tile=str(tile),
        tile_h=tile_h,
        tile_w=tile_w,
        tiles=tiles,
        buffer=profile.buffer_elements(block, tile),
        se_buffer=block.se_buffer,
        extra_macs=(tiles - 1) * block.excite_macs,
    )


def buffer_report(
    blocks: list[SEBlock], tiles: TileChoice | TileConfig, profile: HardwareProfile | str = "ideal"
) -> BufferReport:
    """Cost every block of ``blocks`` under ``tiles`` (one tile, or name -> tile)."""
    if not isinstance(profile, HardwareProfile):
        profile = load_profile(profile)
    config = tile_config([block.name for block in blocks], tiles)
    return BufferReport(profile, [block_cost(block, config[block.name], profile) for block in blocks])


def format_count(value: float) -> str:
    """``1078784`` -> ``1.079M``: elements the way the paper's tables write them."""
    for suffix, scale in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(value) >= scale:
            return f"{value / scale:.3f}{suffix}"
    return f"{value:g}"


_ELEMENT_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}
_BYTE_SUFFIXES = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
_BUDGET_RE = re.compile(r"^\s*(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*$")
BUDGET_FORMS = "elements such as 5M, 500K, 4.7e6, 5000000, bytes such as 4MiB, 512KB, or a share of SE such as 40%"


def is_share(text: str) -> bool:
    """Whether a budget is a share of the SE buffer (``40%``), known only once the model is."""
    return str(text).strip().endswith("%")


def parse_share(text: str) -> float:
    """``40%`` -> 40.0, a percentage of the SE buffer in (0, 100]."""
    try:
        share = float(str(text).strip()[:-1])
    except ValueError:
        share = -1.0
    if not 0 < share <= 100:
        raise TilesearchError(f"invalid buffer budget {text!r}: a share of the SE buffer must lie in (0%, 100%]")
    return share


def parse_budget(text: str, profile: HardwareProfile, se_total: int | None = None) -> int:
    """A buffer budget in elements: ``5M``/``500K``/``4.7e6`` are elements, ``4MiB``/``4MB`` bytes,
    ``40%`` a share of ``se_total``, the SE network's buffer (a share needs it)."""
    if is_share(text):
        share = parse_share(text)
        if se_total is None:
            raise TilesearchError(f"buffer budget {text!r} is a share of the SE buffer: the model's SE buffer is needed")
        return max(1, int(se_total * share / 100))
    match = _BUDGET_RE.match(str(text))
    suffix = match.group(2).upper() if match else ""
    if match is None or (suffix not in _ELEMENT_SUFFIXES and suffix not in _BYTE_SUFFIXES):
        raise TilesearchError(f"invalid buffer budget {text!r}: expected {BUDGET_FORMS}")
    amount = float(match.group(1))
    if suffix in _ELEMENT_SUFFIXES:
        elements = amount * _ELEMENT_SUFFIXES[suffix]
    else:
        elements = amount * _BYTE_SUFFIXES[suffix] / profile.bytes_per_element
    if elements < 1:
        raise TilesearchError(f"invalid buffer budget {text!r}: it must be at least one element")
    return int(elements)
