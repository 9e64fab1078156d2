"""Per-block sensitivity: what each tile costs when only one SE block is tiled.

Vosco et al. (section 4.3, Table 3) find the accuracy lost by assigning SE
weights to TSE additive across stages, so the drop of a whole config is well
predicted by the sum of one-block drops. This module measures those drops for
every block and tile choice.

Prefix caching makes the scan cheap: tiling block i cannot change anything the
network computed before block i, so one reference forward per batch records the
output of every module that finished before each SE block started, and the
forward for a choice at block i replays those outputs instead of recomputing
them. The scan then costs about choices x (blocks / 2) forwards instead of
choices x blocks. The modules replayed are the siblings of block i's ancestors
(stem, earlier stages, earlier blocks, the block's own layers before its SE),
found from the module tree and the recorded call order, so it works for any
model whose earlier modules are each called once. A replayed module is swapped
in its parent for a :class:`_Replay` that returns the recorded output, and
swapped back afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from tilesearch.core import GAP, TileSpec
from tilesearch.nn import apply_tiles, find_se_modules
from tilesearch.scoring._classifier import ClassifierTally
from tilesearch.scoring._device import inference_context


def _clone(value):
    if isinstance(value, Tensor):
        return value.clone()  # later in-place ops (ReLU(inplace=True)) must not touch the cache
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def _replayable(value) -> bool:
    if isinstance(value, Tensor):
        return True
    if isinstance(value, (list, tuple)):
        return all(_replayable(v) for v in value)
    if isinstance(value, dict):
        return all(_replayable(v) for v in value.values())
    return False


class _Replay(nn.Module):
    """Stands in for a module whose output on the recorded batch is known: returns a copy of it."""

    def __init__(self, output) -> None:
        super().__init__()
        self.output = output

    def forward(self, *args, **kwargs):
        return _clone(self.output)


@dataclass
class _Call:
    start: int
    end: int = -1
    count: int = 0


class PrefixCache:
    """Replays everything a forward computed before a chosen SE block.

    ``record(x)`` runs the model once (all SE blocks GAP) and keeps what is
    needed; ``run_from(i, x)`` then computes the model's output with the
    modules that finished before SE block ``i`` replaced by their recorded
    outputs.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.se_names = [name for name, _ in find_se_modules(model)]
        self.modules = dict(model.named_modules())
        self._candidates = self._sibling_candidates()
        self._calls: dict[str, _Call] = {}
        self._outputs: dict[str, object] = {}

    def _sibling_candidates(self) -> dict[str, list[str]]:
        """For each SE block, the children of its ancestors that are not ancestors themselves."""
        candidates = {}
        for se_name in self.se_names:
            parts = se_name.split(".")
            ancestors = {".".join(parts[:k]) for k in range(len(parts) + 1)}
            siblings = []
            for k in range(len(parts)):
                parent = self.modules[".".join(parts[:k])]
                prefix = ".".join(parts[:k])
                for child_name, _ in parent.named_children():
                    full = f"{prefix}.{child_name}" if prefix else child_name
                    if full not in ancestors:
                        siblings.append(full)
            candidates[se_name] = siblings
        return candidates

    @torch.no_grad()
    def record(self, x: Tensor) -> Tensor:
        """The reference forward (SE blocks as they are tiled now, normally all GAP)."""
        wanted = {name for names in self._candidates.values() for name in names} | set(self.se_names)
        self._calls, self._outputs, clock = {}, {}, [0]
        handles = []
        for name in wanted:
            module = self.modules[name]

            def pre(_m, _args, name=name):
                clock[0] += 1
                call = self._calls.setdefault(name, _Call(start=clock[0]))
                call.count += 1

            def post(_m, _args, output, name=name):
                clock[0] += 1
                self._calls[name].end = clock[0]
                self._outputs[name] = output

            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        try:
            return self.model(x)
        finally:
            for handle in handles:
                handle.remove()

    def replayed(self, se_name: str) -> list[str]:
        """Modules whose recorded output stands in for their computation when only ``se_name`` changes."""
        start = self._calls[se_name].start
        return [
            name
            for name in self._candidates[se_name]
            if name in self._calls
            and self._calls[name].count == 1
            and self._calls[name].end < start
            and _replayable(self._outputs[name])
        ]

    @contextmanager
    def _replaying(self, names: list[str]) -> Iterator[None]:
        for name in names:
            self.model.set_submodule(name, _Replay(self._outputs[name]))
        try:
            yield
        finally:
            for name in names:
                self.model.set_submodule(name, self.modules[name])

    @torch.no_grad()
    def run_from(self, se_name: str, x: Tensor) -> Tensor:
        """The model's output on ``x`` (the recorded batch), recomputing only from ``se_name`` on."""
        with self._replaying(self.replayed(se_name)):
            return self.model(x)


@dataclass(frozen=True)
class SensitivityRow:
    """The scores of one (block, tile) with every other block GAP; ``row.NAME`` reads ``scores[NAME]``."""

    block: str
    tile: str
    scores: dict[str, float]  # every score the task measures (accuracy, agreement, kl, fidelity; miou, ...)
    drop: float  # how far the task's headline score (its first: accuracy, mIoU) fell from SE's

    def __getattr__(self, name: str) -> float:
        scores = self.__dict__.get("scores", {})
        if name not in scores:
            raise AttributeError(f"{type(self).__name__} has no score {name!r}")
        return scores[name]

    def to_dict(self) -> dict:
        """One flat row, as ``sensitivity.csv`` keeps it."""
        return {"block": self.block, "tile": self.tile, **self.scores, "drop": self.drop}

    @classmethod
    def from_dict(cls, row: dict) -> SensitivityRow:
        scores = {key: float(value) for key, value in row.items() if key not in ("block", "tile", "drop")}
        return cls(str(row["block"]), str(row["tile"]), scores, float(row["drop"]))


class Tally(Protocol):
    """A task's running scores of one config over the batches, against the SE outputs of the same batches."""

    def add(self, reference, output, targets) -> None: ...

    def values(self) -> dict[str, float]: ...


def scan(
    model: nn.Module,
    batches: Callable[[], Iterator[tuple[Tensor, Tensor]]],
    choices: dict[str, list[TileSpec]],
    use_prefix_cache: bool = True,
    progress: Callable[[int], None] | None = None,
    tally: Callable[[], Tally] = ClassifierTally,
) -> list[SensitivityRow]:
    """One-block-at-a-time zero-shot scores of every (block, choice), all other blocks GAP.

    ``batches()`` yields (normalised inputs, targets) on the model's device; ``choices`` maps
    block name -> tiles to try (GAP is the reference); ``tally()`` accumulates the task's
    scores of one config (a classifier's by default; a scorer's ``tally`` for its task).
    """
    apply_tiles(model, GAP)
    with inference_context(next(model.parameters()).device):  # as every trial's forward runs
        return _scan(model, batches, choices, use_prefix_cache, progress, tally)


def _scan(model, batches, choices, use_prefix_cache, progress, tally) -> list[SensitivityRow]:
    cache = PrefixCache(model)
    tallies: dict[tuple[str, str], Tally] = {}
    se = tally()
    for inputs, targets in batches():
        reference = cache.record(inputs)
        se.add(reference, reference, targets)
        for block, tiles in choices.items():
            module = model.get_submodule(block)
            for tile in tiles:
                if tile.is_gap:
                    continue
                module.tile = tile
                output = cache.run_from(block, inputs) if use_prefix_cache else model(inputs)
                tallies.setdefault((block, str(tile)), tally()).add(reference, output, targets)
                if progress:
                    progress(1)
            module.tile = GAP
    se_scores = se.values()
    headline = next(iter(se_scores))
    rows = []
    for block, tiles in choices.items():
        for tile in tiles:
            scores = se_scores if tile.is_gap else tallies[(block, str(tile))].values()
            rows.append(SensitivityRow(block, str(tile), scores, se_scores[headline] - scores[headline] + 0.0))
    return rows
