"""Surrogate seeding: measure one-block drops, make them the learning surrogate's prior, report its error.

Vosco et al. (section 4.3, Table 3) find the drops additive, so the one-block scan's
additive surrogate (:mod:`tilesearch.search._surrogate`) is a good first guess. It is
the prior of the learning surrogate (:mod:`tilesearch.search._learning`), which is
refit before every trial and queues the config it predicts to add most to the front
(:meth:`Search.prepare_next`).
"""

from __future__ import annotations

import optuna

from tilesearch.search._objective import Search
from tilesearch.search._sensitivity import saved_sensitivity, sensitivity_for
from tilesearch.search._study import completed_trials, study_metric
from tilesearch.search._surrogate import AdditiveSurrogate


def seed_from_surrogate(search: Search, study: optuna.Study, show_progress: bool = True) -> None:
    """Give ``search`` the one-block scan's surrogate as its prior (measuring the scan unless the run folder has it)."""
    search.prior = search.surrogate = AdditiveSurrogate.from_rows(sensitivity_for(search, show_progress=show_progress),
                                                                  search.metric)


def load_saved_surrogate(search: Search) -> None:
    """A worker's surrogate prior, if its run folder holds the sensitivity table (never measured here)."""
    rows = saved_sensitivity(search) if search.strategy == "surrogate" else None
    if rows:
        search.prior = search.surrogate = AdditiveSurrogate.from_rows(rows, search.metric)


def surrogate_errors(study: optuna.Study) -> list[tuple[int, float]]:
    """(trial, |predicted - measured|) of every measured trial that tiles two blocks or more, in trial order: each
    prediction was made before its trial was measured, and a config with one tiled block is the scan's own
    measurement, so these are out-of-sample errors."""
    metric = study_metric(study).name
    return [(t.number, abs(t.user_attrs["predicted"] - t.user_attrs[metric])) for t in completed_trials(study)
            if "predicted" in t.user_attrs and "reused_from" not in t.user_attrs
            and sum(tile != "GAP" for tile in t.user_attrs["tiles"].values()) >= 2]


def surrogate_error(study: optuna.Study) -> float | None:
    """Mean out-of-sample error of the surrogate's predictions (see :func:`surrogate_errors`)."""
    errors = [error for _, error in surrogate_errors(study)]
    return sum(errors) / len(errors) if errors else None


def surrogate_error_trend(study: optuna.Study, window: int = 10) -> list[tuple[int, int, float]]:
    """The out-of-sample error in consecutive windows of ``window`` predictions: (first trial, last trial, mean)."""
    errors = surrogate_errors(study)
    return [(chunk[0][0], chunk[-1][0], sum(e for _, e in chunk) / len(chunk))
            for chunk in (errors[i : i + window] for i in range(0, len(errors), window))]
