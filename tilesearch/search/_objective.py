"""A prepared search and its objective: one trial scores one per-block config.

Two objectives (the metric, in its direction; network buffer in elements,
minimised), the buffer budget as a constraint (``Trial.set_constraint``, so an
infeasible trial never sits on the reported front). A config already measured,
in this process or by another worker, is reused, never scored again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import optuna
from optuna.trial import TrialState

from tilesearch.core import (
    GAP,
    HardwareProfile,
    METRICS,
    Metric,
    SearchSpace,
    SEBlock,
    StudyError,
    TileSpec,
    buffer_report,
    get_metric,
    parse_tile,
)
from tilesearch.scoring import drop_interval
from tilesearch.search._early_stop import EarlyStop, Reference
from tilesearch.search._interruption import interruptible
from tilesearch.search._learning import Measured, next_config, refit
from tilesearch.search._settings import IDENTITY, RunSettings, first_difference, make_sampler
from tilesearch.search._storage import make_storage
from tilesearch.search._study import config_key, measured_configs, stopped_early, trials_in
from tilesearch.search._surrogate import AdditiveSurrogate
from tilesearch.search._tasks import ScoringParts, Task

# What a trial keeps of its score: every metric, the counts and sub-scores that come with them, and the
# paired 95% interval of its drop versus SE on the same images (where the scorer keeps per-image statistics).
SCORE_KEYS = (*METRICS, "correct", "total", "map50", "drop_ci_low", "drop_ci_high")


@dataclass(eq=False)
class Search:
    """A prepared search: model, data, blocks and space checked, nothing written yet."""

    settings: RunSettings
    task: Task
    run_dir: Path
    study_name: str
    storage_url: str
    blocks: list[SEBlock]
    space: SearchSpace
    profile: HardwareProfile
    budget: int | None
    parts: ScoringParts
    surrogate: AdditiveSurrogate | None = None  # set once one-block drops are measured (or read); refit per trial
    prior: AdditiveSurrogate | None = None  # the one-block scan's surrogate: the learning surrogate's prior
    early_stop: EarlyStop | None = None  # None: every candidate is scored on every image
    evaluated: dict = field(default_factory=dict)
    references: dict = field(default_factory=dict)  # config key -> early-stop Reference, for configs scored here
    stopped: dict = field(default_factory=dict)  # config key -> the trial that stopped it early and why

    def __post_init__(self) -> None:
        if self.early_stop is None and self.settings.early_stop:
            self.early_stop = EarlyStop()

    @property
    def metric(self) -> Metric:
        return get_metric(self.settings.metric)

    @property
    def preprocessing(self):
        return self.parts.preprocessing

    @functools.cached_property
    def scorer(self):
        """The scorer on the search's images, made (images decoded) on first use and kept."""
        return self.parts.scorer_factory()

    @functools.cached_property
    def se_score(self):
        """SE on the search's images: the reference of every trial's drop interval (computed once)."""
        return self.scorer.score(GAP)

    def drop_interval(self, score, reference=None, metric: Metric | None = None) -> dict[str, float]:
        """``drop_ci_low`` and ``drop_ci_high``: the paired bootstrap interval of ``score``'s drop in ``metric`` (the
        search's by default) versus ``reference``, SE's score on the same images (the search's by default), in the
        metric's unit; empty for a scorer that keeps no per-image statistics (a detector's mAP)."""
        if getattr(score, "per_image", None) is None:
            return {}
        reference = self.se_score if reference is None else reference
        if getattr(reference, "per_image", None) is None:
            return {}
        low, high = drop_interval(metric or self.metric, reference.per_image, score.per_image, seed=self.settings.seed)
        return {"drop_ci_low": low, "drop_ci_high": high}

    def load_data(self) -> None:
        """Decode the search's images and check the model's head against them (before a study is touched)."""
        _ = self.scorer

    def holdout_scorer(self):
        """A scorer on images the search never saw, or None when none are left."""
        return self.parts.holdout_factory()

    @property
    def report_metric(self) -> str:
        """The score quoted in held-out and fine-tuning reports: accuracy or mAP where labels exist."""
        return self.task.report_metric(self.settings)

    @property
    def strategy(self) -> str:
        if self.settings.strategy is not None:
            return self.settings.strategy
        return "surrogate" if self.space.grouping == "per_block" and self.task.supports_surrogate else "sampler"

    @property
    def se_total(self) -> int:
        return sum(block.se_buffer for block in self.blocks)

    def tiles_for(self, params: dict[str, str]) -> dict[str, str]:
        """Per-block tiles (name -> tile text) of a trial's parameters."""
        tiles = {block.name: str(GAP) for block in self.blocks}
        for param in self.space.params(self.blocks):
            for name in param.blocks:
                tiles[name] = params[param.name]
        return tiles

    def objective(self, trial: optuna.Trial) -> tuple[float, float]:
        params = {
            param.name: trial.suggest_categorical(param.name, [str(tile) for tile in param.choices])
            for param in self.space.params(self.blocks)
        }
        tiles = self.tiles_for(params)
        report = buffer_report(self.blocks, tiles, self.profile)
        trial.set_constraint("buffer", 0.0 if self.budget is None else float(report.total - self.budget))
        previous = self.evaluated.get(config_key(tiles)) or self._measured_elsewhere(trial.study, tiles)
        predicted = {} if self.surrogate is None else {"predicted": self.surrogate.predict(tiles)}  # before measuring
        if previous is not None:  # the sampler proposed a config already measured: reuse it
            attrs = {key: previous[key] for key in (*SCORE_KEYS, "trial") if key in previous}
            attrs.update(reused_from=previous["trial"], images_scored=0)
        else:
            score = self._score(trial, tiles, report.total, predicted)
            if all(tile == "GAP" for tile in tiles.values()):
                self.__dict__.setdefault("se_score", score)  # the SE baseline is the intervals' reference: no rescoring
            attrs = {**score.to_dict(), **self.drop_interval(score), "trial": trial.number,
                     "images_scored": self._image_count(score)}
            self._remember(tiles, report.total, score, trial.number)
        attrs.update(predicted)
        attrs.update(
            tiles=tiles,
            buffer=report.total,
            buffer_bytes=report.total_bytes,
            extra_macs=report.extra_macs,
            feasible=self.budget is None or report.total <= self.budget,
        )
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        self.evaluated.setdefault(config_key(tiles), attrs)
        return attrs[self.metric.name], float(report.total)

    def _measured_elsewhere(self, study: optuna.Study, tiles: dict[str, str]) -> dict | None:
        """A score another worker has stored for ``tiles`` since this one opened the study."""
        for key, attrs in measured_configs(study).items():
            self.evaluated.setdefault(key, attrs)
        return self.evaluated.get(config_key(tiles))

    def _score(self, trial: optuna.Trial, tiles: dict[str, str], buffer: int, predicted: dict):
        """The config's score on every image, or :class:`optuna.TrialPruned` once its first images show it dominated
        (the verdict recorded on the trial; with ``early_stop.prune`` off it is recorded and scoring goes on)."""
        key = config_key(tiles)
        if key in self.stopped and self.early_stop is not None and self.early_stop.prune:
            self._prune(trial, tiles, buffer, predicted, f"stopped early before, in trial {self.stopped[key]['trial']}",
                        images=0)
        stages = getattr(self.scorer, "score_stages", None)
        with interruptible():  # the long step: Ctrl-C abandons it, never a storage write (see _interruption)
            if self.early_stop is None or stages is None or not self.early_stop.looks(self._images()):
                return self.scorer.score(tiles)
            verdict = self.early_stop.judge(functools.partial(stages, tiles), self._images(), self.metric, buffer,
                                            list(self.references.values()), self.settings.seed)
        if verdict.score is None:
            self.stopped[key] = {"trial": trial.number, "reason": verdict.reason}
            self._prune(trial, tiles, buffer, predicted, verdict.reason, images=verdict.images)
        if verdict.reason is not None:  # watching only: what stopping would have decided, and after how many images
            trial.set_user_attr("early_verdict", verdict.reason)
            trial.set_user_attr("early_verdict_images", verdict.images)
        return verdict.score

    def _prune(self, trial: optuna.Trial, tiles: dict[str, str], buffer: int, predicted: dict, reason: str,
               images: int) -> NoReturn:
        """Record why a candidate was stopped early and stop it (the trial ends PRUNED)."""
        for key, value in {"tiles": tiles, "buffer": buffer, "stopped_early": reason, "images_scored": images,
                           **predicted}.items():
            trial.set_user_attr(key, value)
        raise optuna.TrialPruned(reason)

    def _images(self) -> int:
        """How many images the search scores each config on."""
        return len(self.scorer.images)

    @staticmethod
    def _image_count(score) -> int:
        per_image = getattr(score, "per_image", None)
        return len(per_image) if per_image is not None else int(getattr(score, "total", 0) or 0)

    def _remember(self, tiles: dict[str, str], buffer: int, score, trial: int) -> None:
        """Keep a scored config's per-image statistics: a later candidate's early verdict compares with it (over
        budget or not: a config dominated by any measured point is on no front)."""
        per_image = getattr(score, "per_image", None)
        if per_image is not None:
            value = getattr(score, self.metric.name)
            self.references.setdefault(config_key(tiles), Reference(trial, buffer, value, per_image))

    def prepare_next(self, study: optuna.Study) -> None:
        """Before each trial, with the learning surrogate: refit it to every config measured so far and, when no
        trial is queued, queue the unmeasured config it predicts to add the most hypervolume."""
        if self.prior is None:
            return
        for key, attrs in measured_configs(study).items():
            self.evaluated.setdefault(key, attrs)
        for trial in stopped_early(study):  # stopped by another worker or an earlier run: not scored again here
            self.stopped.setdefault(config_key(trial.user_attrs["tiles"]), {"trial": trial.number,
                                                                             "reason": trial.user_attrs["stopped_early"]})
        metric, se_score = self.metric, self.prior.se_score
        measured = [Measured(attrs["tiles"], attrs["buffer"], metric.worse_by(se_score, attrs[metric.name]),
                             bool(attrs.get("feasible", True)))
                    for attrs in self.evaluated.values() if attrs.get(metric.name) is not None]
        self.surrogate = refit(self.prior, measured)
        if trials_in(study, TrialState.WAITING):
            return
        # Every config the study holds in any state (measured, stopped, failed, running elsewhere): Optuna would
        # skip enqueueing one of them, and the same proposal would come back before every trial.
        names = {param.name for param in self.space.params(self.blocks)}
        taken = {config_key(self.tiles_for(t.params)) for t in trials_in(study) if set(t.params) == names}
        taken |= set(self.evaluated) | set(self.stopped)

        def excluded(params: dict[str, str]) -> bool:
            return config_key(self.tiles_for(params)) in taken

        choices = self.space.block_choices(self.blocks)
        proposal = next_config(self.surrogate, choices, self.blocks, self.profile, self.budget, measured, excluded)
        if proposal is not None:
            params, gain = proposal
            study.enqueue_trial(params, user_attrs={"surrogate_gain": gain}, skip_if_exists=True)

    def seed_params(self) -> dict[str, dict[str, str]]:
        """Parameters of the SE baseline and the paper's uniform 7xW, where the space has them."""
        seeds = {}
        for label, tile in (("SE", GAP), ("7xW", parse_tile("7xW"))):
            params = {}
            for param in self.space.params(self.blocks):
                match = _choice_equivalent(param.choices, param.blocks, tile, self.blocks)
                if match is None:
                    break
                params[param.name] = str(match)
            else:
                seeds[label] = params
        return seeds

    def open_study(self) -> optuna.Study:
        """Create the study or load it; a study made with other settings is refused untouched."""
        storage = make_storage(self.storage_url)
        existing = {summary.study_name: summary for summary in optuna.get_all_study_summaries(storage)}
        if self.study_name in existing:
            recorded, mine = existing[self.study_name].user_attrs.get("settings", {}), self.settings.to_dict()
            if recorded:  # as this version spells settings (older studies recorded `pretrained`)
                recorded = RunSettings.from_dict(recorded).to_dict()
            key = first_difference(recorded, mine, IDENTITY)
            if key is not None:
                raise StudyError(
                    f"study {self.study_name!r} was made with {key}={recorded.get(key)!r}, not {mine.get(key)!r}; "
                    f"pass --study-name NAME for a new study"
                )
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            directions=[self.metric.direction, "minimize"],
            sampler=make_sampler(self.settings.sampler, self.settings.seed),
            load_if_exists=True,
        )
        if self.study_name not in existing:
            study.set_user_attr("settings", self.settings.to_dict())
            study.set_user_attr("budget_elements", self.budget)
            study.set_user_attr("se_buffer", self.se_total)
            for label, params in self.seed_params().items():
                study.enqueue_trial(params, user_attrs={"baseline": label}, skip_if_exists=True)
        for key, attrs in measured_configs(study).items():
            self.evaluated.setdefault(key, attrs)
        return study


def _choice_equivalent(choices, names, tile: TileSpec, blocks: list[SEBlock]) -> TileSpec | None:
    """The one of ``choices`` that acts like ``tile`` on every block of ``names`` (choices may be merged)."""
    by_name = {block.name: block for block in blocks}
    for choice in choices:
        if all(choice.resolve(by_name[n].height, by_name[n].width) == tile.resolve(by_name[n].height, by_name[n].width)
               for n in names):
            return choice
    return None
