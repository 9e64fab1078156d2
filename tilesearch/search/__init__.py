"""The search: an Optuna study over per-block tiles, the metric up and the buffer down, within a budget.

* :class:`RunSettings`, :func:`prepare_search`, :func:`prepare_resume`, :func:`run_search` -- run or continue a study
* :func:`join_study`, :func:`start_worker` -- workers sharing one study (journal file, SQLite, PostgreSQL)
* :func:`read_run_file`, :func:`load_study_of_run` -- a run folder and its study
* :func:`front`, :func:`best_trial` -- the feasible Pareto front and the best config within budget
* :class:`AdditiveSurrogate`, :func:`pareto_front` -- the additive surrogate and its exact front
* :func:`refit`, :func:`next_config` -- the surrogate that learns from every trial, and what it asks to measure next
* :class:`EarlyStop` -- stopping a dominated candidate after its first images
"""

from tilesearch.search._early_stop import EarlyStop, Reference
from tilesearch.search._interruption import request_stop
from tilesearch.search._learning import Measured, hypervolume_gain, next_config, refit
from tilesearch.search._objective import SCORE_KEYS, Search
from tilesearch.search._prepare import SearchPlan, plan_search, check_settings, prepare_resume, prepare_search, save_run
from tilesearch.search._results import baseline_trial, best_trial, front, pareto_frame, trials_frame, write_outputs
from tilesearch.search._run_folder import blocks_from_run, load_study_of_run, read_run_file
from tilesearch.search._holdout import holdout_front, holdout_report
from tilesearch.search._runner import RunResult, check_trial_budget, run_search, write_search_outputs
from tilesearch.search._seeding import seed_from_surrogate, surrogate_error, surrogate_error_trend, surrogate_errors
from tilesearch.search._sensitivity import saved_sensitivity, sensitivity_for
from tilesearch.search._settings import (
    IDENTITY,
    SAMPLERS,
    STRATEGIES,
    RunSettings,
    default_study_name,
    make_sampler,
    run_caveats,
    scored_on,
)
from tilesearch.search._storage import is_journal, make_storage, safe_url, without_password
from tilesearch.search._study import (
    completed_trials,
    image_forwards,
    set_target,
    stopped_early,
    study_metric,
    study_target,
    trials_in,
)
from tilesearch.search._surrogate import AdditiveSurrogate, FrontPoint, Option, best_within, pareto_front
from tilesearch.search._tasks import TASKS, ClassifierTask, DetectorTask, ScoringParts, Task, task_of
from tilesearch.search._workers import join_study, local_devices, run_workers, start_worker, work

__all__ = [
    "IDENTITY",
    "SAMPLERS",
    "SCORE_KEYS",
    "STRATEGIES",
    "TASKS",
    "AdditiveSurrogate",
    "ClassifierTask",
    "DetectorTask",
    "EarlyStop",
    "FrontPoint",
    "Measured",
    "Option",
    "Reference",
    "RunResult",
    "RunSettings",
    "ScoringParts",
    "Search",
    "SearchPlan",
    "Task",
    "baseline_trial",
    "best_trial",
    "best_within",
    "blocks_from_run",
    "check_settings",
    "check_trial_budget",
    "completed_trials",
    "image_forwards",
    "stopped_early",
    "default_study_name",
    "front",
    "holdout_front",
    "holdout_report",
    "hypervolume_gain",
    "is_journal",
    "join_study",
    "load_study_of_run",
    "local_devices",
    "make_sampler",
    "make_storage",
    "next_config",
    "pareto_frame",
    "pareto_front",
    "plan_search",
    "prepare_resume",
    "prepare_search",
    "read_run_file",
    "refit",
    "request_stop",
    "run_caveats",
    "run_search",
    "run_workers",
    "safe_url",
    "save_run",
    "saved_sensitivity",
    "scored_on",
    "seed_from_surrogate",
    "sensitivity_for",
    "set_target",
    "start_worker",
    "study_metric",
    "study_target",
    "surrogate_error",
    "surrogate_error_trend",
    "surrogate_errors",
    "task_of",
    "trials_frame",
    "trials_in",
    "without_password",
    "work",
    "write_outputs",
    "write_search_outputs",
]
