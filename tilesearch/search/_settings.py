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

from tilesearch.core import InputSize, UnknownNameError, parse_input_size

SAMPLERS = {
    # Optuna's default NSGA-II population (50) would leave a 40-trial search purely random.
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=20),
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}
STRATEGIES = ("surrogate", "sampler")
IDENTITY = (
    "model", "checkpoint", "random_weights", "num_classes", "data", "data_source", "annotations", "masks",
    "ignore_index", "val_subset", "seed",
    "input_size", "crop_pct", "interpolation", "mean", "std", "space", "profile", "budget", "metric",
)


@dataclass
class RunSettings:
    """Everything a search needs; saved in ``run.yaml`` and the study so it can be resumed."""

    model: str
    data: str | None = None  # None: images synthesised from ``data_source``
    checkpoint: str | None = None
    random_weights: bool = False  # without a checkpoint, the zoo's pretrained weights unless this is set
    num_classes: int | None = None
    holdout: str | None = None
    annotations: str | None = None  # COCO instances JSON, for detectors
    masks: str | None = None  # PNG label maps named like the --data images, for segmenters
    ignore_index: int = 255  # the mask label that no score counts
    data_source: str | None = None  # with no --data: synthetic-bn, procedural or noise
    val_subset: int | None = None  # images scored: a subset of --data (1000) or synthesised (the task's number)
    seed: int = 0
    input_size: InputSize | None = None  # (height, width)
    crop_pct: float | None = None
    interpolation: str | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    space: str = "default"
    profile: str = "ideal"
    budget: str | None = None
    sampler: str = "nsga2"
    metric: str | None = None  # the task's default: accuracy, mAP or pseudo-mAP with data, fidelity without
    strategy: str | None = None  # surrogate (default for per-block spaces) or sampler
    batch_size: int = 256
    device: str | None = None
    strict_data: bool = False  # refuse an unreadable image instead of skipping it
    early_stop: bool = True  # stop scoring a candidate once its first images show it dominated

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("mean", "std", "input_size"):
            data[key] = None if data[key] is None else list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunSettings:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if "pretrained" in data and "random_weights" not in data:  # written before pretrained weights were the default
            values["random_weights"] = not data["pretrained"] and not data.get("checkpoint")
        for key in ("mean", "std"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def __post_init__(self) -> None:
        self.input_size = parse_input_size(self.input_size)  # runs saved before non-square sizes kept one side


def scored_on(settings: dict) -> str:
    """Which images a study's scores come from, as run.yaml, holdout.yaml and the summary say it."""
    if settings.get("data") is None:
        return (f"{settings.get('val_subset')} images synthesised by {settings.get('data_source')} (seed "
                f"{settings.get('seed')}), scored label-free against the SE network: no held-out accuracy exists")
    return f"images of {settings['data']}"


def run_caveats(settings: dict, short: bool = False) -> list[str]:
    """What every output of a run must say about its figures: random weights, synthesised images
    (``short``: as a plot's title says it)."""
    caveats = []
    if settings.get("random_weights"):
        caveats.append("RANDOM weights" if short else
                       "RANDOM weights (--random-weights): the scores say nothing about a trained network")
    if settings.get("data") is None:
        caveats.append(f"synthesised images ({settings.get('data_source')}), no held-out accuracy" if short else
                       f"scores come from {scored_on(settings)}")
    return caveats


def first_difference(recorded: dict, mine: dict, keys: Iterable[str] = IDENTITY) -> str | None:
    """The first of ``keys`` on which two settings dicts disagree, or None: the one identity check."""
    def plain(value):  # a tuple as typed and a list as stored are the same setting
        return list(value) if isinstance(value, tuple) else value

    return next((key for key in keys if plain(recorded.get(key)) != plain(mine.get(key))), None)


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler called ``name`` (nsga2, tpe, random), seeded."""
    if name not in SAMPLERS:
        raise UnknownNameError(f"unknown sampler {name!r}: expected one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](seed)


def default_study_name(settings: RunSettings) -> str:
    parts = [settings.model.replace("/", "-")]
    if settings.data is None:
        parts.append(settings.data_source or "synthetic")
    if settings.space != "default":
        parts.append(Path(settings.space).stem)
    if settings.metric != "accuracy":
        parts.append(settings.metric)
    if settings.budget:
        parts.append(str(settings.budget).replace("%", "pct").replace(" ", ""))
    return "-".join(parts)
