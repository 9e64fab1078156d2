"""Additive surrogate of a tile config's accuracy, and its exact Pareto front.

Vosco et al., *Tiled Squeeze-and-Excite*, section 4.3 / Table 3: the accuracy
lost by replacing SE with TSE is additive across stages. So a per-block config
is scored without running the network:

    predicted score = base - sum_i drop_i(choice_i)
    buffer          = sum_i buffer_i(choice_i)

where ``base`` is the SE model's score and ``drop_i(c)`` the measured drop when
only block i uses tile c (a sensitivity table); for a metric where smaller is
better (KL) a drop is how much it grew (:class:`AdditiveSurrogate`). Both objectives are sums over
blocks, so the surrogate's Pareto front (buffer down, drop down) is that of a
multiple-choice knapsack, solved exactly here by dynamic programming over the
blocks: the front of the first k+1 blocks is built from the front of the first
k, each point extended by every option of block k+1, dominated points pruned.
That is exact because a partial config that is dominated stays dominated under
any common completion (integer buffers add exactly, and float rounding is
monotone).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tilesearch.core import HardwareProfile, Metric, SEBlock, TilesearchError, TileSpec


@dataclass(frozen=True)
class Option:
    """One choice for one block: its tile, its buffer (elements) and its accuracy drop vs SE."""

    tile: str
    buffer: int
    drop: float


@dataclass(frozen=True)
class FrontPoint:
    """A Pareto-optimal config: total buffer, total drop, and the choice (index and tile) per block."""

    buffer: int
    drop: float
    choices: tuple[int, ...]
    tiles: tuple[str, ...]



def validate(blocks: Sequence[Sequence[Option]]) -> None:
    """Reject empty blocks, non-integer or negative buffers and non-finite drops."""
    for index, options in enumerate(blocks):
        if not options:
            raise TilesearchError(f"block {index} has no options: expected at least one")
        for option in options:
            if isinstance(option.buffer, bool) or not isinstance(option.buffer, (int, np.integer)) or option.buffer < 0:
                raise TilesearchError(
                    f"block {index} option {option.tile!r} has buffer {option.buffer!r}: expected a non-negative integer"
                )
            if not math.isfinite(option.drop):
                raise TilesearchError(f"block {index} option {option.tile!r} has drop {option.drop!r}: expected a finite number")


def prune(buffers: np.ndarray, drops: np.ndarray, order_keys: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points, by increasing buffer (so strictly decreasing drop).

    Among points with equal buffer and drop the one with the smallest ``order_keys`` is kept.
    """
    order = np.lexsort((order_keys, drops, buffers))
    sorted_drops = drops[order]
    best_before = np.empty_like(sorted_drops)
    best_before[0] = np.inf
    np.minimum.accumulate(sorted_drops[:-1], out=best_before[1:])
    return order[sorted_drops < best_before]


def lex_ranks(keys: np.ndarray) -> np.ndarray:
    """Each key's rank among ``keys`` (all distinct), 0 for the smallest."""
    ranks = np.empty(len(keys), dtype=np.int64)
    ranks[np.argsort(keys, kind="stable")] = np.arange(len(keys))
    return ranks


def backtrack(parents: list[np.ndarray], picks: list[np.ndarray], count: int) -> np.ndarray:
    """The choice indices of every final front point, shape (count, blocks), from the per-block back-pointers."""
    choices = np.empty((count, len(picks)), dtype=np.int64)
    index = np.arange(count)
    for block in range(len(picks) - 1, -1, -1):
        choices[:, block] = picks[block][index]
        index = parents[block][index]
    return choices


def pareto_front(blocks: Sequence[Sequence[Option]]) -> list[FrontPoint]:
    """The exact Pareto front of (total buffer, total drop), both minimised, over all per-block choices.

    Sorted by increasing buffer, so by strictly decreasing drop: the first point is
    the least-buffer config, the last the least-drop one. Of configs with equal
    buffer and drop, the one first in lexicographic order of choice indices is kept.
    """
    validate(blocks)
    buffers = np.zeros(1, dtype=np.int64)
    drops = np.zeros(1, dtype=np.float64)
    ranks = np.zeros(1, dtype=np.int64)
    parents: list[np.ndarray] = []
    picks: list[np.ndarray] = []
    for options in blocks:
        option_buffers = np.array([o.buffer for o in options], dtype=np.int64)
        option_drops = np.array([o.drop for o in options], dtype=np.float64)
        width = len(options)
        cand_buffers = (buffers[:, None] + option_buffers[None, :]).ravel()
        cand_drops = (drops[:, None] + option_drops[None, :]).ravel()
        cand_keys = (ranks[:, None] * width + np.arange(width)[None, :]).ravel()
        keep = prune(cand_buffers, cand_drops, cand_keys)
        buffers, drops = cand_buffers[keep], cand_drops[keep]
        ranks = lex_ranks(cand_keys[keep])
        parents.append(keep // width)
        picks.append(keep % width)
    choices = backtrack(parents, picks, len(buffers))
    return [
        FrontPoint(
            buffer=int(buffer),
            drop=float(drop),
            choices=tuple(int(c) for c in row),
            tiles=tuple(blocks[i][int(c)].tile for i, c in enumerate(row)),
        )
        for buffer, drop, row in zip(buffers, drops, choices)
    ]


def best_within(front: Sequence[FrontPoint], budget: float) -> FrontPoint | None:
    """The least-drop point whose buffer fits the budget, or None if none does."""
    feasible = [point for point in front if point.buffer <= budget]
    return min(feasible, key=lambda point: point.drop, default=None)


@dataclass(frozen=True)
class AdditiveSurrogate:
    """The surrogate of one study: SE's score and each (block, tile)'s one-block drop, in the metric's direction."""

    metric: Metric
    se_score: float
    drops: Mapping[tuple[str, str], float]  # (block, tile) -> how much worse than SE; GAP is 0

    @classmethod
    def from_rows(cls, rows: Iterable, metric: Metric) -> AdditiveSurrogate:
        """From sensitivity rows (``block``, ``tile`` and the metric's value, GAP rows being SE's own)."""
        rows = list(rows)
        reference = {row.block: getattr(row, metric.name) for row in rows if row.tile == "GAP"}
        drops = {(row.block, row.tile): metric.worse_by(reference[row.block], getattr(row, metric.name)) for row in rows}
        return cls(metric, next(iter(reference.values())), drops)

    def predict(self, tiles: Mapping[str, str]) -> float:
        """The predicted score of a per-block config (name -> tile text)."""
        worse_by = sum(self.drops.get((name, tile), 0.0) for name, tile in tiles.items())
        return self.metric.worsened(self.se_score, worse_by)

    def options(self, choices: Mapping[str, Sequence[TileSpec]], blocks: Sequence[SEBlock], profile: HardwareProfile) -> list[list[Option]]:
        """Each block's choices as knapsack options (tile, buffer, drop), in ``choices`` order."""
        by_name = {block.name: block for block in blocks}
        return [
            [Option(str(tile), profile.buffer_elements(by_name[name], tile), self.drops[(name, str(tile))]) for tile in tiles]
            for name, tiles in choices.items()
        ]
