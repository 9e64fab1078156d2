"""Search spaces: which tiles each SE block may take, from YAML.

A space file (the shipped ones are in ``tilesearch/core/spaces/``)::

    choices: [GAP, 1xW, 3xW, 5xW, 7xW, 9xW, Hx7, 7x7, 13x13]
    grouping: per_block        # per_block | per_stage | uniform
    stages:                    # optional per-stage overrides of `choices`
      1: [GAP, 7xW]

``per_block`` gives every SE block its own choice (the paper's Table 3 finds the
accuracy cost additive across stages, so blocks can be chosen independently),
``per_stage`` one choice per stage, ``uniform`` one tile for the whole network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from tilesearch.core._blocks import SEBlock
from tilesearch.core._cost import HardwareProfile
from tilesearch.core._errors import TilesearchError, UnknownNameError
from tilesearch.core._tiles import TileSpec, parse_tile
from tilesearch.core._yaml import parse_yaml

GROUPINGS = ("per_block", "per_stage", "uniform")
_KEYS = {"choices", "grouping", "stages", "description"}


@dataclass(frozen=True)
class Param:
    """One decision of the search: a name, its tile choices and the blocks it sets."""

    name: str
    choices: tuple[TileSpec, ...]
    blocks: tuple[str, ...]


@dataclass
class SearchSpace:
    name: str
    choices: list[TileSpec]
    grouping: str = "per_block"
    stages: dict[int, list[TileSpec]] = field(default_factory=dict)

    def params(self, blocks: list[SEBlock]) -> list[Param]:
        """The decisions for a model's blocks; choices that clip to the same tile on a block are merged."""
        if self.grouping == "uniform":
            return [Param("tile", tuple(self.choices), tuple(b.name for b in blocks))]
        if self.grouping == "per_stage":
            groups: dict[int | None, list[SEBlock]] = {}
            for block in blocks:
                groups.setdefault(block.stage, []).append(block)
            return [
                Param(f"stage_{stage}", tuple(self.choices_for(stage)), tuple(b.name for b in members))
                for stage, members in groups.items()
            ]
        return [Param(name, tuple(tiles), (name,)) for name, tiles in self.block_choices(blocks).items()]

    def block_choices(self, blocks: list[SEBlock]) -> dict[str, list[TileSpec]]:
        """The distinct tiles each block may take (choices that clip to the same tile on it merged)."""
        return {block.name: distinct_choices(self.choices_for(block.stage), block) for block in blocks}

    def choices_for(self, stage: int | None) -> list[TileSpec]:
        return self.stages.get(stage, self.choices) if stage is not None else self.choices

    def min_buffer(self, blocks: list[SEBlock], profile: HardwareProfile) -> int:
        """The smallest network buffer any config of this space reaches."""
        by_name = {block.name: block for block in blocks}
        return sum(
            min(sum(profile.buffer_elements(by_name[name], tile) for name in param.blocks) for tile in param.choices)
            for param in self.params(blocks)
        )


def distinct_choices(choices: list[TileSpec], block: SEBlock) -> list[TileSpec]:
    """Drop choices that clip to the same tile as an earlier one on this block (9xW = GAP on 7 rows)."""
    seen, kept = set(), []
    for tile in choices:
        resolved = tile.resolve(block.height, block.width)
        if resolved not in seen:
            seen.add(resolved)
            kept.append(tile)
    return kept


def _shipped():
    return resources.files("tilesearch.core") / "spaces"


def available_spaces() -> list[str]:
    """Names of the search spaces shipped with tilesearch."""
    return sorted(entry.name[: -len(".yaml")] for entry in _shipped().iterdir() if entry.name.endswith(".yaml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A shipped space by name (``default``, ``strips``, ...) or a space YAML file."""
    path = Path(name_or_path)
    if path.is_file():
        name, label, text = path.stem, path.name, path.read_text()
    elif str(name_or_path) in available_spaces():
        name, label = str(name_or_path), f"{name_or_path}.yaml"
        text = (_shipped() / label).read_text()
    else:
        raise UnknownNameError(
            f"unknown search space {str(name_or_path)!r}: expected one of {', '.join(available_spaces())} or a .yaml file"
        )
    where = f"search space {label!r}"
    data = parse_yaml(text, where) or {}
    if not isinstance(data, dict):
        raise TilesearchError(f"{where} must be a mapping with 'choices' and 'grouping'")
    unknown = set(data) - _KEYS
    if unknown:
        raise TilesearchError(f"{where} has unknown key {sorted(unknown)[0]!r}: expected {', '.join(sorted(_KEYS))}")
    grouping = data.get("grouping", "per_block")
    if grouping not in GROUPINGS:
        raise TilesearchError(f"{where} has grouping {grouping!r}: expected one of {', '.join(GROUPINGS)}")
    choices = _tiles(data.get("choices"), where)
    stages = {}
    for stage, stage_choices in (data.get("stages") or {}).items():
        if not isinstance(stage, int) or stage < 0:
            raise TilesearchError(f"{where} has stage {stage!r}: expected a stage number such as 1")
        stages[stage] = _tiles(stage_choices, f"{where} stage {stage}")
    return SearchSpace(name, choices, grouping, stages)


def _tiles(values, where: str) -> list[TileSpec]:
    if not isinstance(values, list) or not values:
        raise TilesearchError(f"{where} needs a non-empty list of tile choices, e.g. [GAP, 7xW, 1xW]")
    try:
        return [parse_tile(str(value)) for value in values]
    except TilesearchError as error:
        raise TilesearchError(f"{where}: {error}") from error
