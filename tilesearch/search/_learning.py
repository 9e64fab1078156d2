"""A surrogate that learns from every measured config, and the next config it asks to measure.

The additive surrogate (:mod:`tilesearch.search._surrogate`; Vosco et al., section
4.3, Table 3) predicts a config's drop as the sum of its one-block drops. Measured
configs show where that is off: tiling many blocks at once usually costs more than
the sum of tiling each alone, and some pairs of blocks interact. After every trial
the drops are refit to all measured configs:

    drop(config) = a * sum_i d0_i(c_i) + sum_i delta_i(c_i)

``d0`` is the one-block scan (the prior), ``a`` a common scale (prior 1, barely
penalised) and ``delta`` a correction per (block, tile) (prior 0), by ridge
regression towards the prior. Its penalty is the one of a grid with the least exact
leave-one-out error. The refit is additive again, ``d_i(c) = a * d0_i(c) +
delta_i(c)``, so its Pareto front is still the exact knapsack front
(:func:`~tilesearch.search._surrogate.pareto_front`).

The next trial is the point of that front, within the budget and not yet measured,
whose predicted (buffer, drop) adds the most hypervolume to the front of the
configs already measured (:func:`next_config`). When no point adds any, the
study's sampler proposes instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tilesearch.core import HardwareProfile, SEBlock, TileSpec
from tilesearch.search._surrogate import AdditiveSurrogate, pareto_front

PENALTIES = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # ridge penalties tried; features are 0/1 indicators
SCALE_PENALTY = 1e-3  # relative penalty on the common scale a: nearly free, so it fits first
MIN_CONFIGS = 3  # measured configs with a tiled block before the prior is refit at all


@dataclass(frozen=True)
class Measured:
    """A measured config: its tiles (block -> tile text), buffer (elements), drop vs SE (metric units, worse > 0)."""

    tiles: Mapping[str, str]
    buffer: int
    drop: float
    feasible: bool = True


def _design(prior: AdditiveSurrogate, configs: Sequence[Mapping[str, str]]) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """(n, 1 + F) matrix: each config's prior drop sum, then one 0/1 column per (block, tile) it uses (GAP has none)."""
    columns = [key for key, drop in prior.drops.items() if key[1] != "GAP"]
    index = {key: j for j, key in enumerate(columns)}
    design = np.zeros((len(configs), 1 + len(columns)))
    for row, tiles in enumerate(configs):
        for key in tiles.items():
            if key in index:
                design[row, 1 + index[key]] = 1.0
                design[row, 0] += prior.drops[key]
    return design, columns


def _ridge(design: np.ndarray, residual: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge coefficients (deviations from the prior) and the exact leave-one-out residuals. The scale's column
    (prior drop sums, in the metric's unit) is penalised relative to its mean square, so that "nearly free" holds
    whatever the unit; the indicator columns are 0/1."""
    weights = np.full(design.shape[1], penalty)
    weights[0] *= SCALE_PENALTY * max(float(np.mean(design[:, 0] ** 2)), 1e-12)
    inverse = np.linalg.inv(design.T @ design + np.diag(weights))
    coefficients = inverse @ design.T @ residual
    leverage = np.einsum("ij,jk,ik->i", design, inverse, design)
    fitted = design @ coefficients
    return coefficients, (residual - fitted) / np.clip(1.0 - leverage, 1e-9, None)


def refit(prior: AdditiveSurrogate, measured: Sequence[Measured]) -> AdditiveSurrogate:
    """The prior's drops refit to the measured configs (see the module's docstring); the prior while too few are measured."""
    informative = [m for m in measured if any((block, tile) in prior.drops and tile != "GAP" for block, tile in m.tiles.items())]
    if len(informative) < MIN_CONFIGS:
        return prior
    design, columns = _design(prior, [m.tiles for m in informative])
    drops = np.array([m.drop for m in informative])
    residual = drops - design[:, 0]  # the prior predicts a = 1, delta = 0
    fits = [_ridge(design, residual, penalty) for penalty in PENALTIES]
    coefficients, _ = min(fits, key=lambda fit: float(np.mean(fit[1] ** 2)))
    scale, corrections = 1.0 + coefficients[0], coefficients[1:]
    refitted = {key: scale * drop for key, drop in prior.drops.items()}
    for key, correction in zip(columns, corrections):
        refitted[key] += correction
    return AdditiveSurrogate(prior.metric, prior.se_score, refitted)


def hypervolume_gain(buffers: np.ndarray, drops: np.ndarray, front_buffers: np.ndarray, front_drops: np.ndarray,
                     reference: tuple[float, float]) -> np.ndarray:
    """For each candidate (buffer, drop), both minimised, the hypervolume it adds to the points of ``front_*``,
    inside the box up to ``reference`` = (buffer, drop)."""
    ref_buffer, ref_drop = reference
    order = np.argsort(front_buffers, kind="stable")
    edges = np.concatenate([[-np.inf], front_buffers[order], [ref_buffer]])
    levels = np.concatenate([[ref_drop], np.minimum.accumulate(np.minimum(front_drops[order], ref_drop))])
    low = np.maximum(edges[None, :-1], buffers[:, None])
    high = np.minimum(edges[None, 1:], ref_buffer)
    widths = np.clip(high - low, 0.0, None)
    heights = np.clip(levels[None, :] - drops[:, None], 0.0, None)
    return (widths * heights).sum(axis=1)


def next_config(surrogate: AdditiveSurrogate, choices: Mapping[str, Sequence[TileSpec]], blocks: Sequence[SEBlock],
                profile: HardwareProfile, budget: float | None, measured: Sequence[Measured],
                excluded: Callable[[dict[str, str]], bool]) -> tuple[dict[str, str], float] | None:
    """The unmeasured config of the surrogate's front within ``budget`` that adds the most predicted hypervolume
    to the measured feasible front, with that gain; None when none adds any.

    ``excluded(tiles)`` says which configs not to propose: measured, stopped early, queued.
    The hypervolume's box reaches the budget (the SE buffer without one) and 1.1 times the largest drop in play.
    """
    names = list(choices)
    front = [point for point in pareto_front(surrogate.options(choices, blocks, profile))
             if budget is None or point.buffer <= budget]
    candidates = [(point, dict(zip(names, point.tiles))) for point in front]
    candidates = [(point, tiles) for point, tiles in candidates if not excluded(tiles)]
    if not candidates:
        return None
    feasible = [m for m in measured if m.feasible]
    ref_buffer = float(budget) if budget is not None else float(sum(block.se_buffer for block in blocks))
    largest = max([point.drop for point, _ in candidates] + [m.drop for m in feasible])
    ref_drop = 1.1 * largest if largest > 0 else 1.0
    gains = hypervolume_gain(np.array([p.buffer for p, _ in candidates], dtype=np.float64),
                             np.array([p.drop for p, _ in candidates]),
                             np.array([m.buffer for m in feasible], dtype=np.float64),
                             np.array([m.drop for m in feasible]), (ref_buffer, ref_drop))
    best = int(gains.argmax())
    if gains[best] <= 0:
        return None
    return candidates[best][1], float(gains[best])
