"""Paired bootstrap intervals of a config's drop versus SE, over the images both were scored on.

A config and SE are scored on the same images, so their difference is paired: each
bootstrap resample draws the images once (with replacement, as multinomial weights)
and recomputes both scores from per-image statistics, so a score that is not a mean
over images (mIoU sums confusion matrices first) resamples correctly too. The 95%
interval is the 2.5th and 97.5th percentile of the resampled drops (the percentile
bootstrap, 1000 resamples, seeded: the same images and seed give the same interval).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tilesearch.core import Metric

RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class PerImage:
    """Per-image statistics (N, F) and how F column totals over any weighting of the images become scores."""

    values: np.ndarray  # (N, F): each image's additive statistics (counts, sums, a flattened confusion matrix)
    scores: Callable[[np.ndarray], dict[str, np.ndarray]]  # totals (B, F) -> {metric: (B,)}

    def __len__(self) -> int:
        return len(self.values)


def resample_weights(count: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, count) multinomial weights: how often each image is drawn in each bootstrap resample."""
    return np.random.default_rng(seed).multinomial(count, np.full(count, 1.0 / count), size=resamples).astype(np.float64)


def drop_interval(metric: Metric, se: PerImage, config: PerImage, resamples: int = RESAMPLES, seed: int = 0,
                  level: float = LEVEL) -> tuple[float, float]:
    """The ``level`` interval of ``metric.worse_by(SE, config)``, paired over the images, in the metric's raw unit."""
    if len(se) != len(config):
        raise ValueError(f"SE was scored on {len(se)} images and the config on {len(config)}: not paired")
    weights = resample_weights(len(se), resamples, seed)
    reference = se.scores(weights @ se.values)[metric.name]
    value = config.scores(weights @ config.values)[metric.name]
    drops = metric.worse_by(reference, value)  # elementwise over the resamples
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(drops, [tail, 100 - tail])
    return float(low) + 0.0, float(high) + 0.0


def mean_scores(names: tuple[str, ...]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Scores that are per-image means: column j of the totals over the images' count (the last column)."""

    def scores(totals: np.ndarray) -> dict[str, np.ndarray]:
        return {name: totals[:, j] / totals[:, -1] for j, name in enumerate(names)}

    return scores
