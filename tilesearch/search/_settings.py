"""What a search is run with: its settings, the samplers and strategies, the study's name.

:class:`RunSettings` is saved in ``run.yaml`` and in the study itself, so a run can
be resumed and joined by workers with nothing repeated. The settings in
:data:`IDENTITY` define what a study measures; a later run, worker or cached
sensitivity table must agree on them (:func:`first_difference`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import optuna

from tilesearch.core import UnknownNameError

SAMPLERS = {
    # Optuna's default NSGA-II population (50) would leave a 40-trial search purely random.
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=20),
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}
STRATEGIES = ("surrogate", "sampler")
IDENTITY = (
    "model", "checkpoint", "pretrained", "num_classes", "data", "annotations", "val_subset", "seed",
    "input_size", "crop_pct", "interpolation", "mean", "std", "space", "profile", "budget", "metric",
)


@dataclass
class RunSettings:
    """Everything a search needs; saved in ``run.yaml`` and the study so it can be resumed."""

    model: str
    data: str
    checkpoint: str | None = None
    pretrained: bool = False
    num_classes: int | None = None
    holdout: str | None = None
    annotations: str | None = None  # COCO instances JSON, for detectors
    val_subset: int | None = 1000
    seed: int = 0
    input_size: int | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    space: str = "default"
    profile: str = "ideal"
    budget: str | None = None
    sampler: str = "nsga2"
    metric: str = "accuracy"
    strategy: str | None = None  # surrogate (default for per-block spaces) or sampler
    batch_size: int = 256
    device: str | None = None
    strict_data: bool = False  # refuse an unreadable image instead of skipping it

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("mean", "std"):
            data[key] = None if data[key] is None else list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunSettings:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        for key in ("mean", "std"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def first_difference(recorded: dict, mine: dict, keys: Iterable[str] = IDENTITY) -> str | None:
    """The first of ``keys`` on which two settings dicts disagree, or None: the one identity check."""
    return next((key for key in keys if recorded.get(key) != mine.get(key)), None)


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler called ``name`` (nsga2, tpe, random), seeded."""
    if name not in SAMPLERS:
        raise UnknownNameError(f"unknown sampler {name!r}: expected one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](seed)


def default_study_name(settings: RunSettings) -> str:
    parts = [settings.model.replace("/", "-")]
    if settings.space != "default":
        parts.append(Path(settings.space).stem)
    if settings.metric != "accuracy":
        parts.append(settings.metric)
    if settings.budget:
        parts.append(str(settings.budget).replace("%", "pct").replace(" ", ""))
    return "-".join(parts)
