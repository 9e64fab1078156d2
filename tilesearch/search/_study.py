"""Reading a tilesearch study: its trials, its metric, its target and the configs it has measured.

Every trial count, "which configs were measured" and "what does this study
optimise" goes through this module.
"""

from __future__ import annotations

import uuid

import optuna
from optuna.trial import FrozenTrial, TrialState

from tilesearch.core import Metric, get_metric

COMPLETE = TrialState.COMPLETE
TARGET_ATTR = "target_trials"
GRANT_PREFIX = "target_grant:"


def trials_in(study: optuna.Study, *states: TrialState) -> list[FrozenTrial]:
    """The study's trials in ``states`` (all trials when none are given), without copying them."""
    return study.get_trials(deepcopy=False, states=states or None)


def completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials that scored a config (every trial tilesearch completes)."""
    return [trial for trial in trials_in(study, COMPLETE) if "tiles" in trial.user_attrs]


def config_key(tiles: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """A hashable key of a per-block config."""
    return tuple(sorted(tiles.items()))


def measured_configs(study: optuna.Study) -> dict[tuple, dict]:
    """The scores stored for each config actually measured (not reused from an earlier trial), first one kept."""
    measured: dict[tuple, dict] = {}
    for trial in completed_trials(study):
        if "reused_from" not in trial.user_attrs:
            measured.setdefault(config_key(trial.user_attrs["tiles"]), dict(trial.user_attrs))
    return measured


def study_settings(study: optuna.Study) -> dict:
    return study.user_attrs.get("settings", {})


def study_metric(study: optuna.Study) -> Metric:
    """The score a study optimises (accuracy, agreement, kl, map, pseudo_map)."""
    return get_metric(study_settings(study).get("metric", "accuracy"))


def set_target(study: optuna.Study, target: int) -> None:
    """How many COMPLETE trials a new study wants; workers stop when it has them."""
    study.set_user_attr(TARGET_ATTR, int(target))


def add_to_target(study: optuna.Study, trials: int) -> None:
    """Ask for ``trials`` more. Each request is its own attribute, so concurrent requests add up instead of
    overwriting each other (Optuna has no atomic read-modify-write of an attribute)."""
    study.set_user_attr(f"{GRANT_PREFIX}{uuid.uuid4().hex}", int(trials))


def study_target(study: optuna.Study) -> int | None:
    """The COMPLETE trials the study wants: its first target plus every request for more; None if it has none."""
    attrs = study.user_attrs
    if TARGET_ATTR not in attrs:
        return None
    return attrs[TARGET_ATTR] + sum(value for key, value in attrs.items() if key.startswith(GRANT_PREFIX))


def stopped_early(study: optuna.Study) -> list[FrozenTrial]:
    """Trials whose candidate was stopped after its first images (see :mod:`tilesearch.search._early_stop`); a
    config proposed again after that is stopped with no image scored, and is not among them."""
    return [trial for trial in trials_in(study, TrialState.PRUNED)
            if "stopped_early" in trial.user_attrs and trial.user_attrs.get("images_scored", 0) > 0]


def image_forwards(study: optuna.Study) -> tuple[int, int]:
    """Image-forwards the study's trials ran, and how many they would have run with every candidate scored on every
    image (a reused config runs none either way)."""
    measured = [t for t in completed_trials(study) if "images_scored" in t.user_attrs]
    stopped = stopped_early(study)
    full = max((t.user_attrs["images_scored"] for t in measured), default=0)
    done = sum(t.user_attrs["images_scored"] for t in measured + stopped)
    skipped = sum(max(full - t.user_attrs["images_scored"], 0) for t in stopped)
    return done, done + skipped
