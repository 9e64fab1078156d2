"""The search: an Optuna study over per-block tiles, accuracy up and buffer down.

Two objectives (zero-shot accuracy, maximised; network buffer in elements,
minimised), the buffer budget as a constraint (``Trial.set_constraint``, so an
infeasible trial never sits on the reported front), NSGA-II by default. The SE
baseline (all GAP) and the paper's uniform 7xW are enqueued as the first trials.

A run lives in a folder (``runs/<study>``): ``run.yaml`` records the settings and
the model's SE blocks, the study sits in an Optuna storage (an SQLite file in the
folder by default). Running the same command again, or ``tilesearch resume``,
continues the study; a config already evaluated is never evaluated again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import optuna
import yaml

from tilesearch.config import write_atomically
from tilesearch.cost import HardwareProfile, buffer_report, format_count, load_profile, parse_budget
from tilesearch.data import Preprocessing, decode_images, image_folder, resolve_preprocessing, stratified_split
from tilesearch.discover import SEBlock, discover_se_blocks
from tilesearch.errors import TilesearchError
from tilesearch.models import load_model
from tilesearch.score import Scorer
from tilesearch.space import SearchSpace, load_space
from tilesearch.storage import is_journal, load_existing_study, make_storage, without_password
from tilesearch.tiles import GAP, TileSpec, parse_tile

SAMPLERS = ("nsga2", "tpe", "random")
STRATEGIES = ("surrogate", "sampler")
SCORE_KEYS = ("accuracy", "correct", "total", "agreement", "kl", "map", "map50", "pseudo_map")
DETECTION_METRICS = ("map", "pseudo_map")
DETECTION_HOLDOUT = 500  # held-out images of a detector's report, at most
# Settings that define what a study measures: a later run on the same study must agree on them.
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


def parse_amount_budget(text: str | None, profile: HardwareProfile, se_total: int) -> int | None:
    """A budget in elements; ``40%`` is a share of the SE buffer."""
    if text is None:
        return None
    if str(text).strip().endswith("%"):
        try:
            share = float(str(text).strip()[:-1])
        except ValueError:
            share = -1.0
        if not 0 < share <= 100:
            raise TilesearchError(f"invalid buffer budget {text!r}: a share of the SE buffer must lie in (0%, 100%]")
        return max(1, int(se_total * share / 100))
    return parse_budget(text, profile)


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "nsga2":
        # Optuna's default population (50) would leave a 40-trial search purely random.
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise TilesearchError(f"unknown sampler {name!r}: expected one of {', '.join(SAMPLERS)}")


def config_key(tiles: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(tiles.items()))


@dataclass
class Search:
    """A prepared search: model, data, blocks and space checked, nothing written yet."""

    settings: RunSettings
    run_dir: Path
    study_name: str
    storage_url: str
    blocks: list[SEBlock]
    space: SearchSpace
    profile: HardwareProfile
    budget: int | None
    preprocessing: Preprocessing
    scorer_factory: Callable[[], Scorer]
    holdout_factory: Callable[[], Scorer | None]  # a scorer on images the search never sees, if any are left
    scorer: Scorer | None = None
    evaluated: dict = field(default_factory=dict)
    drops: dict[tuple[str, str], float] | None = None  # the surrogate's one-block drops, once measured
    se_score: float | None = None

    @property
    def detector(self) -> bool:
        return self.settings.metric in DETECTION_METRICS

    @property
    def report_metric(self) -> str:
        """The score quoted in held-out and fine-tuning reports: accuracy or mAP where labels exist."""
        if self.detector:
            return "map" if self.settings.annotations else "pseudo_map"
        return "accuracy" if self.settings.metric == "accuracy" else "agreement"

    @property
    def strategy(self) -> str:
        if self.settings.strategy is not None:
            return self.settings.strategy
        classifier = self.settings.metric not in DETECTION_METRICS
        return "surrogate" if self.space.grouping == "per_block" and classifier else "sampler"

    def predicted(self, tiles: dict[str, str]) -> float | None:
        """The additive surrogate's score of a config (SE's score minus the one-block drops)."""
        if self.drops is None or self.se_score is None:
            return None
        worse_by = sum(self.drops.get((name, tile), 0.0) for name, tile in tiles.items())
        return self.se_score + worse_by if self.settings.metric == "kl" else self.se_score - worse_by

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
        if previous is not None:  # the sampler proposed a config already measured: reuse it
            attrs = {key: previous[key] for key in (*SCORE_KEYS, "trial") if key in previous}
            attrs["reused_from"] = previous["trial"]
        else:
            if self.scorer is None:
                self.scorer = self.scorer_factory()
            score = self.scorer.score(tiles)
            attrs = {**score.to_dict(), "trial": trial.number}
        predicted = self.predicted(tiles)
        if predicted is not None:
            attrs["predicted"] = predicted
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
        return attrs[self.settings.metric], float(report.total)

    def _measured_elsewhere(self, study: optuna.Study, tiles: dict[str, str]) -> dict | None:
        """A score another worker has stored for ``tiles`` since this one opened the study."""
        for other in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if "tiles" in other.user_attrs and "reused_from" not in other.user_attrs:
                self.evaluated.setdefault(config_key(other.user_attrs["tiles"]), dict(other.user_attrs))
        return self.evaluated.get(config_key(tiles))

    def seed_params(self) -> dict[str, dict[str, str]]:
        """Parameters of the SE baseline and the paper's uniform 7xW, where the space has them."""
        seeds = {}
        for label, tile in (("SE", GAP), ("7xW", parse_tile("7xW"))):
            params = {}
            for param in self.space.params(self.blocks):
                match = _choice_equivalent(param, tile, self.blocks)
                if match is None:
                    break
                params[param.name] = str(match)
            else:
                seeds[label] = params
        return seeds


def _choice_equivalent(param, tile: TileSpec, blocks: list[SEBlock]) -> TileSpec | None:
    """The choice of ``param`` that acts like ``tile`` on every block it sets (choices may be merged)."""
    by_name = {block.name: block for block in blocks}
    for choice in param.choices:
        if all(choice.resolve(by_name[n].height, by_name[n].width) == tile.resolve(by_name[n].height, by_name[n].width) for n in param.blocks):
            return choice
    return None


def default_study_name(settings: RunSettings) -> str:
    parts = [settings.model.replace("/", "-")]
    if settings.space != "default":
        parts.append(Path(settings.space).stem)
    if settings.metric != "accuracy":
        parts.append(settings.metric)
    if settings.budget:
        parts.append(str(settings.budget).replace("%", "pct").replace(" ", ""))
    return "-".join(parts)


def prepare_search(
    settings: RunSettings,
    out_dir: str | Path = "runs",
    study_name: str | None = None,
    storage: str | None = None,
    run_dir: str | Path | None = None,
    parallel: bool = False,
) -> Search:
    """Check every setting and load the model and its blocks (images load lazily); write nothing.

    Storage: ``storage``, else the one the run folder already records, else a file in the run
    folder: SQLite, or a journal file when ``parallel`` workers will share it.
    """
    from tilesearch.models import model_source

    detector = model_source(settings.model).zoo == "effdet"
    settings = _with_default_metric(settings, detector)
    space = load_space(settings.space)
    profile = load_profile(settings.profile)
    make_sampler(settings.sampler, settings.seed)
    _check_choices(settings, space, detector)
    if settings.budget is not None and not str(settings.budget).strip().endswith("%"):
        parse_budget(settings.budget, profile)  # fail on a malformed budget before loading anything
    name = study_name or default_study_name(settings)
    run_dir = Path(run_dir) if run_dir is not None else Path(out_dir) / name
    parts = (_detector_parts if detector else _classifier_parts)(settings, run_dir)
    model, preprocessing, scorer_factory, holdout_factory = parts
    blocks = discover_se_blocks(model, preprocessing.input_size)
    se_total = sum(block.se_buffer for block in blocks)
    budget = parse_amount_budget(settings.budget, profile, se_total)
    smallest = space.min_buffer(blocks, profile)
    if budget is not None and budget < smallest:
        raise TilesearchError(
            f"buffer budget {settings.budget!r} ({format_count(budget)} elements) is below the smallest buffer "
            f"search space {space.name!r} reaches on {settings.model} ({format_count(smallest)} elements)"
        )
    storage_url = storage or _default_storage(run_dir, parallel)
    return Search(settings, run_dir, name, storage_url, blocks, space, profile, budget, preprocessing, scorer_factory,
                  holdout_factory)


def _default_storage(run_dir: Path, parallel: bool) -> str:
    if (run_dir / "run.yaml").is_file():
        recorded = read_run_file(run_dir)["storage"]
        file = recorded.removeprefix("sqlite:///").removeprefix("journal:")
        if recorded.startswith("sqlite:///") or is_journal(recorded):
            if not Path(file).is_file():
                raise TilesearchError(f"run folder {str(run_dir)!r} records storage {recorded!r}, which does not exist "
                                      f"(was the folder moved?): pass --storage with its new place")
        return recorded
    return str(run_dir.resolve() / "study.log") if parallel else f"sqlite:///{run_dir.resolve() / 'study.db'}"


def _with_default_metric(settings: RunSettings, detector: bool) -> RunSettings:
    """Detectors score by mAP (against annotations, else against the SE model's detections)."""
    from dataclasses import replace

    metric = settings.metric.replace("-", "_")
    if detector and metric == "accuracy":
        metric = "map" if settings.annotations else "pseudo_map"
    return replace(settings, metric=metric)


def _check_choices(settings: RunSettings, space: SearchSpace, detector: bool) -> None:
    from tilesearch.score import METRICS

    metrics = DETECTION_METRICS if detector else METRICS
    if settings.metric not in metrics:
        kind = "a detector" if detector else "a classifier"
        raise TilesearchError(f"unknown metric {settings.metric!r} for {kind}: expected one of {', '.join(metrics)}")
    if settings.annotations is not None and not detector:
        raise TilesearchError(f"--annotations is for detectors (effdet models such as efficientdet_d0), not {settings.model!r}")
    if settings.metric == "map" and settings.annotations is None:
        raise TilesearchError("--metric map needs --annotations instances.json; without labels use --metric pseudo-map")
    if settings.strategy is not None and settings.strategy not in STRATEGIES:
        raise TilesearchError(f"unknown strategy {settings.strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if settings.strategy == "surrogate" and (space.grouping != "per_block" or detector):
        raise TilesearchError("the surrogate strategy needs a classifier and a per_block space; use --strategy sampler")
    if settings.batch_size < 1:
        raise TilesearchError(f"invalid batch size {settings.batch_size}: expected a positive integer")
    if settings.val_subset is not None and settings.val_subset < 1:
        raise TilesearchError(f"invalid validation subset {settings.val_subset}: expected a positive number of images")


def _classifier_parts(settings: RunSettings, run_dir: Path):
    dataset = image_folder(settings.data)
    if not dataset.classes and settings.metric == "accuracy":
        raise TilesearchError(f"{settings.data!r} holds unlabeled images: use --metric agreement or --metric kl")
    if settings.holdout is not None:
        image_folder(settings.holdout)
    model = load_model(
        settings.model, pretrained=settings.pretrained, checkpoint=settings.checkpoint, num_classes=settings.num_classes
    )
    preprocessing = resolve_preprocessing(
        model, settings.input_size, settings.crop_pct, settings.interpolation, settings.mean, settings.std
    )
    search_indices, rest = stratified_split([label for _, label in dataset.samples], settings.val_subset, settings.seed)

    def scorer_on(root: str, indices: list[int] | None, description: str) -> Scorer:
        images = decode_images(root, preprocessing, indices, cache_dir=run_dir / "cache", description=description)
        return Scorer(model, images, preprocessing, batch_size=settings.batch_size, device=settings.device)

    def scorer_factory() -> Scorer:
        return scorer_on(settings.data, search_indices, "decoding images")

    def holdout_factory() -> Scorer | None:
        if settings.holdout is not None:
            return scorer_on(settings.holdout, None, "decoding held-out images")
        return scorer_on(settings.data, rest, "decoding held-out images") if rest else None

    return model, preprocessing, scorer_factory, holdout_factory


def _detector_parts(settings: RunSettings, run_dir: Path):
    """An effdet model at its input size, effdet's preprocessing and DetectionScorer factories."""
    import numpy as np
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from tilesearch.detection import DetectionScorer, decode_detection_images, image_listing, load_coco
    from tilesearch.models import default_input_size

    if settings.holdout is not None:
        raise TilesearchError("--holdout is for classifiers; a detector is reported on the --data images outside --val-subset")
    coco = load_coco(settings.data, settings.annotations) if settings.annotations else image_listing(settings.data)
    size = (settings.input_size,) * 2 if settings.input_size else default_input_size(settings.model)
    model = load_model(settings.model, pretrained=settings.pretrained, checkpoint=settings.checkpoint,
                       num_classes=settings.num_classes, input_size=size)
    mean, std = settings.mean or IMAGENET_DEFAULT_MEAN, settings.std or IMAGENET_DEFAULT_STD
    preprocessing = Preprocessing(size, "bilinear", 1.0, "resize-pad", tuple(mean), tuple(std))
    ids = sorted(coco.imgs)
    if settings.val_subset is not None and settings.val_subset < len(ids):
        ids = sorted(np.random.default_rng(settings.seed).choice(ids, settings.val_subset, replace=False).tolist())
    rest = sorted(set(coco.imgs) - set(ids))
    if len(rest) > DETECTION_HOLDOUT:  # two passes at 768 px over all of COCO val would dwarf the search
        rest = sorted(np.random.default_rng(settings.seed + 1).choice(rest, DETECTION_HOLDOUT, replace=False).tolist())

    def scorer_on(image_ids: list[int], description: str) -> DetectionScorer:
        images = decode_detection_images(settings.data, coco, image_ids, size, tuple(mean), run_dir / "cache", description)
        return DetectionScorer(model, images, tuple(mean), tuple(std), ground_truth=coco if settings.annotations else None,
                               batch_size=min(settings.batch_size, 8), device=settings.device)

    def scorer_factory() -> DetectionScorer:
        return scorer_on(ids, "decoding images")

    def holdout_factory() -> DetectionScorer | None:
        return scorer_on(rest, "decoding held-out images") if rest else None

    return model, preprocessing, scorer_factory, holdout_factory


def open_study(search: Search) -> optuna.Study:
    """Create the study or load it; a study made with other settings is refused untouched."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(search.storage_url)
    existing = {summary.study_name: summary for summary in optuna.get_all_study_summaries(storage)}
    if search.study_name in existing:
        recorded = existing[search.study_name].user_attrs.get("settings", {})
        mine = search.settings.to_dict()
        differ = [key for key in IDENTITY if recorded.get(key) != mine.get(key)]
        if differ:
            key = differ[0]
            raise TilesearchError(
                f"study {search.study_name!r} was made with {key}={recorded.get(key)!r}, not {mine.get(key)!r}; "
                f"pass --study-name NAME for a new study"
            )
    study = optuna.create_study(
        study_name=search.study_name,
        storage=storage,
        directions=["minimize" if search.settings.metric == "kl" else "maximize", "minimize"],
        sampler=make_sampler(search.settings.sampler, search.settings.seed),
        load_if_exists=True,
    )
    if search.study_name not in existing:
        study.set_user_attr("settings", search.settings.to_dict())
        study.set_user_attr("budget_elements", search.budget)
        study.set_user_attr("se_buffer", search.se_total)
        for label, params in search.seed_params().items():
            study.enqueue_trial(params, user_attrs={"baseline": label}, skip_if_exists=True)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if "tiles" in trial.user_attrs and "reused_from" not in trial.user_attrs:
            search.evaluated.setdefault(config_key(trial.user_attrs["tiles"]), dict(trial.user_attrs))
    return study


def save_run_file(search: Search) -> Path:
    """``run.yaml``: settings, study location and the model's SE blocks, for resume and pareto."""
    document = {
        "study_name": search.study_name,
        "storage": without_password(search.storage_url)[0],  # never a password on disk
        "settings": search.settings.to_dict(),
        "preprocessing": {**search.preprocessing.to_dict(), "input_size": list(search.preprocessing.input_size)},
        "budget_elements": search.budget,
        "se_buffer": search.se_total,
        "blocks": [block.to_dict() for block in search.blocks],
    }
    path = search.run_dir / "run.yaml"
    write_atomically(path, yaml.safe_dump(document, sort_keys=False))
    return path


def read_run_file(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "run.yaml"
    if not path.is_file():
        raise TilesearchError(f"{str(run_dir)!r} is not a tilesearch run folder (no run.yaml in it)")
    return yaml.safe_load(path.read_text())


def blocks_from_run(document: dict) -> list[SEBlock]:
    return [SEBlock(**block) for block in document["blocks"]]


def _check_budget_of_trials(n_trials: int | None, timeout: float | None) -> None:
    if n_trials is not None and n_trials < 1:
        raise TilesearchError(f"invalid number of trials {n_trials}: expected a positive integer")
    if timeout is not None and timeout <= 0:
        raise TilesearchError(f"invalid timeout {timeout}: expected a positive number of seconds")


@dataclass
class RunResult:
    """What a call of :func:`run_search` did."""

    run_dir: Path
    study: optuna.Study
    completed_before: int
    completed_after: int
    interrupted: bool
    written: dict[str, Path]
    holdout: dict | None
    problems: list[str] = field(default_factory=list)  # workers that exited with an error
    target: int | None = None  # the study's target of complete trials


def _progress_callback(progress, task, completed_before: int) -> Callable:
    from tilesearch.results import best_trial, completed, study_metric

    def update(study: optuna.Study, trial: optuna.trial.FrozenTrial | None = None) -> None:
        best, metric = best_trial(study), study_metric(study)
        if best is None:
            text = f"best feasible {metric}: -"
        elif metric == "kl":
            text = f"best feasible kl: {best.values[0]:.4f}"
        else:
            text = f"best feasible {metric}: {100 * best.values[0]:.2f}%"
        progress.update(task, completed=len(completed(study)) - completed_before, status=text)

    return update


def run_search(
    search: Search,
    n_trials: int | None = 40,
    timeout: float | None = None,
    show_progress: bool = True,
    workers: int = 1,
) -> RunResult:
    """Open (or continue) the study, run ``n_trials`` more trials, write the run folder's outputs.

    The study's target becomes its completed trials plus ``n_trials``; ``workers`` > 1 starts that
    many worker processes on it (see :mod:`tilesearch.worker`), and more may join from elsewhere.
    """
    from tilesearch.worker import run_workers, set_target, work
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tilesearch.results import completed, write_outputs

    _check_budget_of_trials(n_trials, timeout)  # before the study is created or touched
    if workers < 1:
        raise TilesearchError(f"invalid number of workers {workers}: expected a positive integer")
    if search.scorer is None:  # data and head checked before the study is created or touched
        search.scorer = search.scorer_factory()
    study = open_study(search)
    search.run_dir.mkdir(parents=True, exist_ok=True)
    save_run_file(search)
    before = len(completed(study))
    set_target(study, before + n_trials)
    if search.strategy == "surrogate":
        seed_from_surrogate(search, study, n_trials, show_progress)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}")]
    problems: list[str] = []
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        task = progress.add_task("trials" if workers == 1 else f"trials ({workers} workers)", total=n_trials, status="")
        update = _progress_callback(progress, task, before)
        if workers == 1:
            finished = work(search, study, timeout=timeout, on_trial=update)
        else:
            finished, problems = run_workers(search, workers, timeout, lambda: update(study))
    written = write_outputs(
        study, search.run_dir, search.settings.model, search.preprocessing.input_size, search.blocks,
        search.profile, search.budget,
    )
    holdout = holdout_report(search, study) if finished else None
    return RunResult(search.run_dir, study, before, len(completed(study)), not finished, written, holdout, problems,
                     before + n_trials)


def holdout_report(search: Search, study: optuna.Study) -> dict | None:
    """SE and the best config on images the search never saw: the rest of --data, or --holdout."""
    from tilesearch.results import best_trial

    best = best_trial(study)
    if best is None:
        return None
    scorer = search.holdout_factory()
    if scorer is None:
        return None
    report = {
        "images": len(scorer.images),
        "source": str(search.settings.holdout or search.settings.data),
        "metric": search.report_metric,
        "se": scorer.score(GAP).to_dict(),
        "best": {"trial": best.number, **scorer.score(best.user_attrs["tiles"]).to_dict()},
    }
    write_atomically(search.run_dir / "holdout.yaml", yaml.safe_dump(report, sort_keys=False))
    return report


def prepare_resume(run_dir: str | Path) -> Search:
    """The search recorded in a run folder, ready to continue."""
    document = read_run_file(run_dir)
    settings = RunSettings.from_dict(document["settings"])
    return prepare_search(settings, study_name=document["study_name"], storage=document["storage"], run_dir=run_dir)


def load_study_of_run(document: dict) -> optuna.Study:
    """The study a run folder's ``run.yaml`` points to."""
    return load_existing_study(document["storage"], document["study_name"])


def seed_from_surrogate(search: Search, study: optuna.Study, n_trials: int | None, show_progress: bool = True) -> None:
    """Measure one-block drops (prefix-cached), solve the additive surrogate's exact front and enqueue
    configs spread along its feasible part; afterwards the sampler refines with real evaluations."""
    from tilesearch.sensitivity import block_choices, sensitivity_for
    from tilesearch.surrogate import Option, front_configs, pareto_front

    _set_drops(search, sensitivity_for(search, show_progress=show_progress))
    if study.user_attrs.get("surrogate_seeded"):
        return
    by_name = {block.name: block for block in search.blocks}
    names = list(block_choices(search))
    options = [
        [Option(str(tile), search.profile.buffer_elements(by_name[name], tile), search.drops[(name, str(tile))])
         for tile in tiles]
        for name, tiles in block_choices(search).items()
    ]
    front = [point for point in pareto_front(options) if search.budget is None or point.buffer <= search.budget]
    for config in front_configs(front, names, k=min(max((n_trials or 20) // 2, 1), 20)):
        study.enqueue_trial(config, user_attrs={"surrogate_seed": True}, skip_if_exists=True)
    study.set_user_attr("surrogate_seeded", True)


def _set_drops(search: Search, rows) -> None:
    """The surrogate's one-block drops ("worse by", whatever the metric's direction) from a sensitivity table."""
    metric = search.settings.metric
    sign = -1.0 if metric == "kl" else 1.0
    reference = {row.block: getattr(row, metric) for row in rows if row.tile == "GAP"}
    search.se_score = next(iter(reference.values()))
    search.drops = {(row.block, row.tile): sign * (reference[row.block] - getattr(row, metric)) for row in rows}


def load_saved_drops(search: Search) -> None:
    """A worker's surrogate predictions, if its run folder holds the sensitivity table (never measured here)."""
    from tilesearch.sensitivity import saved_sensitivity

    rows = saved_sensitivity(search) if search.strategy == "surrogate" else None
    if rows:
        _set_drops(search, rows)


def surrogate_error(study: optuna.Study) -> float | None:
    """Mean absolute difference between the surrogate's prediction and the measured score."""
    from tilesearch.results import completed

    metric = study.user_attrs.get("settings", {}).get("metric", "accuracy")
    errors = [abs(t.user_attrs["predicted"] - t.user_attrs[metric]) for t in completed(study) if "predicted" in t.user_attrs]
    return sum(errors) / len(errors) if errors else None
