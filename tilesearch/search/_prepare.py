"""Prepare a search from settings, or from a run folder to resume it; nothing is written until it runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tilesearch.core import (
    SEBlock,
    TilesearchError,
    UnknownNameError,
    buffer_report,
    format_count,
    is_share,
    load_profile,
    load_space,
    parse_budget,
    parse_share,
)
from tilesearch.nn import discover_se_blocks
from tilesearch.search._objective import Search
from tilesearch.search._run_folder import default_storage, read_run_file, run_document, save_run_file
from tilesearch.search._settings import STRATEGIES, RunSettings, default_study_name, make_sampler, scored_on
from tilesearch.search._storage import absolute_storage
from tilesearch.search._tasks import task_of
from tilesearch.zoo import describe_weights


def check_settings(settings: RunSettings) -> RunSettings:
    """Settings a user typed, refused with one line before any model or image is loaded or anything is
    written; returns them with the task's default metric."""
    task = task_of(settings.model)
    settings = task.with_defaults(settings)
    profile, grouping = load_profile(settings.profile), load_space(settings.space).grouping
    make_sampler(settings.sampler, settings.seed)
    task.check(settings)
    if settings.strategy is not None and settings.strategy not in STRATEGIES:
        raise UnknownNameError(f"unknown strategy {settings.strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if settings.strategy == "surrogate" and (grouping != "per_block" or not task.supports_surrogate):
        raise TilesearchError("the surrogate strategy needs a classifier and a per_block space; use --strategy sampler")
    if settings.batch_size < 1:
        raise TilesearchError(f"invalid batch size {settings.batch_size}: expected a positive integer")
    if settings.val_subset is not None and settings.val_subset < 1:
        raise TilesearchError(f"invalid validation subset {settings.val_subset}: expected a positive number of images")
    if settings.budget is not None:  # its syntax and range; a share becomes elements once the model is known
        parse_share(settings.budget) if is_share(settings.budget) else parse_budget(settings.budget, profile)
    return settings


@dataclass(frozen=True)
class SearchPlan:
    """What a search will do, known before any weight or image is loaded: its model's blocks and buffers."""

    settings: RunSettings  # with the task's defaults
    input_size: tuple[int, int]
    blocks: list[SEBlock]
    se_buffer: int
    uniform_7xw_buffer: int  # the paper's uniform tile, beside the SE network
    budget: int | None
    weights: str  # how the model gets its weights (describe_weights)
    scored_on: str  # which images its scores come from


def plan_search(settings: RunSettings) -> SearchPlan:
    """Check the settings and measure the model's blocks on seeded random weights (no download, no image), so a
    run can say what it will do before it loads anything, and a budget below the space's floor fails first."""
    settings = check_settings(settings)
    model, preprocessing = task_of(settings.model).shapes(settings)
    blocks = discover_se_blocks(model, preprocessing.input_size)
    profile = load_profile(settings.profile)
    se_buffer = sum(block.se_buffer for block in blocks)
    budget = _budget(settings, blocks, profile)
    return SearchPlan(settings, preprocessing.input_size, blocks, se_buffer,
                      buffer_report(blocks, "7xW", profile).total, budget,
                      describe_weights(settings.model, settings.checkpoint, settings.random_weights),
                      scored_on(settings.to_dict()))


def _budget(settings: RunSettings, blocks: list[SEBlock], profile) -> int | None:
    """The budget in elements, refused when the search space cannot reach it."""
    if settings.budget is None:
        return None
    budget = parse_budget(settings.budget, profile, sum(b.se_buffer for b in blocks))
    space = load_space(settings.space)
    smallest = space.min_buffer(blocks, profile)
    if budget < smallest:
        raise TilesearchError(
            f"buffer budget {settings.budget!r} ({format_count(budget)} elements) is below the smallest buffer "
            f"search space {space.name!r} reaches on {settings.model} ({format_count(smallest)} elements)"
        )
    return budget


def prepare_search(
    settings: RunSettings,
    out_dir: str | Path = "runs",
    study_name: str | None = None,
    storage: str | None = None,
    run_dir: str | Path | None = None,
    parallel: bool = False,
    memory_check: bool = True,
) -> Search:
    """Check every setting and load the model and its blocks (images load lazily); write nothing.

    Storage: ``storage``, else the one the run folder already records, else a file in the run
    folder: SQLite, or a journal file when ``parallel`` workers will share it. ``memory_check`` refuses,
    before any image is decoded, an input size whose images and batch forward would not fit the device.
    """
    settings = check_settings(settings)
    task, space, profile = task_of(settings.model), load_space(settings.space), load_profile(settings.profile)
    name = study_name or default_study_name(settings)
    run_dir = Path(run_dir) if run_dir is not None else Path(out_dir) / name
    parts = task.build(settings, run_dir, memory_check)
    blocks = discover_se_blocks(parts.model, parts.preprocessing.input_size)
    budget = _budget(settings, blocks, profile)
    storage_url = absolute_storage(storage, Path.cwd()) if storage else default_storage(run_dir, parallel)
    return Search(settings, task, run_dir, name, storage_url, blocks, space, profile, budget, parts)


def prepare_resume(run_dir: str | Path) -> Search:
    """The search recorded in a run folder, ready to continue."""
    document = read_run_file(run_dir)
    settings = RunSettings.from_dict(document["settings"])
    # The run that made the folder was checked (or told to skip the check) already.
    return prepare_search(settings, study_name=document["study_name"], storage=document["storage"], run_dir=run_dir,
                          memory_check=False)


def save_run(search: Search) -> Path:
    """``run.yaml`` of a search: settings, study location and the model's SE blocks."""
    settings = search.settings
    document = run_document(search.study_name, search.storage_url, settings.to_dict(), search.preprocessing.to_dict(),
                            search.budget, search.blocks, search.run_dir,
                            describe_weights(settings.model, settings.checkpoint, settings.random_weights))
    return save_run_file(search.run_dir, document)
