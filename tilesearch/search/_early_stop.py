"""Stopping a candidate early: fewer images per verdict when the first ones already show it dominated.

A trial scores its config on a first slice of the search's images (a quarter), then on
a second (half of them), then on all. At each look, if a config already measured uses
no more buffer and is better on those same images with confidence (the paired
bootstrap of :func:`tilesearch.scoring.drop_interval`: the candidate's drop versus
that config above zero), the candidate is dominated and cannot be on the front: the
trial is pruned with the reason recorded and the rest of the images are never
forwarded. Otherwise the scorer goes on, no image forwarded twice.

The error rate is held at 5% per candidate: each look tests against one config only
and at level 1 - 0.05 / looks (Bonferroni over the looks). That config is the measured
one, with buffer at most the candidate's, that scores best on the images the look does
not test, so picking it does not favour it on the images it is compared on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from tilesearch.core import Metric
from tilesearch.scoring import PerImage, drop_interval


@dataclass(frozen=True)
class Reference:
    """A measured config an early verdict can compare with: its trial, buffer, score and per-image statistics."""

    trial: int
    buffer: int
    score: float
    per_image: PerImage


def _score_after(per_image: PerImage, count: int, metric: Metric) -> float:
    """A reference's score on its images after the first ``count`` (on all of them when there are no others)."""
    rest = per_image.values[count:] if count < len(per_image) else per_image.values
    return float(per_image.scores(rest.sum(0)[None])[metric.name][0])


@dataclass(frozen=True)
class EarlyStop:
    """When to look (``fractions`` of the images, each look at least ``minimum`` images) and how sure to be
    (``level`` over all looks of one candidate).

    ``prune`` False records the verdict and scores every image anyway, so what stopping would
    have saved and changed can be measured on one and the same sequence of trials.
    """

    fractions: tuple[float, ...] = (0.25, 0.5)
    minimum: int = 100
    level: float = 0.95
    prune: bool = True

    def looks(self, total: int) -> list[int]:
        """Images scored at each look before the last (all ``total``), increasing; empty when too few images."""
        return sorted({count for count in (max(self.minimum, int(f * total)) for f in self.fractions) if count < total})

    def look_level(self, total: int) -> float:
        """The confidence of each look's test: the family's error split evenly over the looks."""
        return 1 - (1 - self.level) / max(len(self.looks(total)), 1)

    def verdict(self, metric: Metric, partial: PerImage, buffer: int, references: Sequence[Reference],
                seed: int = 0, level: float | None = None) -> str | None:
        """Why a candidate with ``partial`` statistics on the first images and ``buffer`` is dominated at ``level``
        (this look's, :meth:`look_level`; ``self.level`` by default), or None."""
        level = self.level if level is None else level
        usable = [ref for ref in references if ref.buffer <= buffer and len(ref.per_image) >= len(partial)]
        if not usable:
            return None
        count = len(partial)
        best = min(usable, key=lambda ref: (metric.rank_key(_score_after(ref.per_image, count, metric)), ref.buffer))
        first = PerImage(best.per_image.values[:count], best.per_image.scores)
        low, high = drop_interval(metric, first, partial, seed=seed, level=level)
        if low <= 0:
            return None
        return (f"dominated by trial {best.trial} (buffer {best.buffer} <= {buffer}) on the first {count} images: "
                f"{metric.name} worse by {metric.format_drop(low)} to {metric.format_drop(high)} "
                f"({level:.1%} paired bootstrap)")

    def judge(self, stages: Callable[..., Iterator], total: int, metric: Metric, buffer: int,
              references: Sequence[Reference], seed: int = 0) -> Verdict:
        """Score a candidate through a scorer's ``score_stages`` (bound to its config), looking after each stage.

        With ``prune`` the first dominated look ends it (the score is None); without, every image is scored and the
        first verdict is kept with the images it came after."""
        staged = stages(self.looks(total))
        level = self.look_level(total)
        reason = images = None
        for score in staged:
            per_image = getattr(score, "per_image", None)
            if per_image is None or len(per_image) >= total:
                return Verdict(score, reason, images)
            if reason is None:
                reason = self.verdict(metric, per_image, buffer, references, seed, level)
                images = len(per_image) if reason is not None else None
            if reason is not None and self.prune:
                staged.close()
                return Verdict(None, reason, images)
        raise AssertionError("a scorer's stages end with the score on every image")


@dataclass(frozen=True)
class Verdict:
    """How a candidate's scoring ended: its score on every image (None when stopped), and the first look's reason to
    stop it with the images it came after (None when no look found it dominated)."""

    score: object | None
    reason: str | None = None
    images: int | None = None
