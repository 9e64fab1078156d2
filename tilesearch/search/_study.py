"""Reading a tilesearch study: its trials, its metric, its target and the configs it has measured.

Every trial count, "which configs were measured" and "what does this study
optimise" goes through this module.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from tilesearch.core import Metric, get_metric

COMPLETE = TrialState.COMPLETE
TARGET_ATTR = "target_trials"


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
    """How many COMPLETE trials the study wants; workers stop when it has them."""
    study.set_user_attr(TARGET_ATTR, int(target))


def study_target(study: optuna.Study) -> int | None:
    return study.user_attrs.get(TARGET_ATTR)
