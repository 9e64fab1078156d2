"""Surrogate seeding: measure one-block drops, solve the additive surrogate's exact front, enqueue its configs.

Vosco et al. (section 4.3, Table 3) find the drops additive, so the surrogate's
front (:mod:`tilesearch.search._surrogate`) is a good first guess; the configs
spread along its feasible part are the study's first trials and the sampler
refines with real evaluations.
"""

from __future__ import annotations

import optuna

from tilesearch.search._objective import Search
from tilesearch.search._sensitivity import saved_sensitivity, sensitivity_for
from tilesearch.search._study import completed_trials, study_metric
from tilesearch.search._surrogate import AdditiveSurrogate, front_configs, pareto_front

SEEDED_ATTR = "surrogate_seeded"


def seed_from_surrogate(search: Search, study: optuna.Study, n_trials: int | None, show_progress: bool = True) -> None:
    """Give ``search`` its surrogate and, once per study, enqueue configs from the surrogate's feasible front."""
    search.surrogate = AdditiveSurrogate.from_rows(sensitivity_for(search, show_progress=show_progress), search.metric)
    if study.user_attrs.get(SEEDED_ATTR):
        return
    choices = search.space.block_choices(search.blocks)
    options = search.surrogate.options(choices, search.blocks, search.profile)
    front = [point for point in pareto_front(options) if search.budget is None or point.buffer <= search.budget]
    for config in front_configs(front, list(choices), k=min(max((n_trials or 20) // 2, 1), 20)):
        study.enqueue_trial(config, user_attrs={"surrogate_seed": True}, skip_if_exists=True)
    study.set_user_attr(SEEDED_ATTR, True)


def load_saved_surrogate(search: Search) -> None:
    """A worker's surrogate predictions, if its run folder holds the sensitivity table (never measured here)."""
    rows = saved_sensitivity(search) if search.strategy == "surrogate" else None
    if rows:
        search.surrogate = AdditiveSurrogate.from_rows(rows, search.metric)


def surrogate_error(study: optuna.Study) -> float | None:
    """Mean absolute difference between the surrogate's prediction and the measured score."""
    metric = study_metric(study).name
    errors = [abs(t.user_attrs["predicted"] - t.user_attrs[metric]) for t in completed_trials(study) if "predicted" in t.user_attrs]
    return sum(errors) / len(errors) if errors else None
