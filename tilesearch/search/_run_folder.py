"""The run folder: ``run.yaml`` records a search's settings, its study's place and the model's SE blocks.

``tilesearch resume``, ``pareto``, ``worker``, ``finetune`` and ``export`` read a
run back from its folder alone; the study itself lives in an Optuna storage,
by default a file in the folder. A storage file inside the folder is recorded
relative to it, so a run folder can be copied, moved or mounted elsewhere and
still opens its own study, never another folder's.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml

from tilesearch.core import SEBlock, StudyError, read_yaml, write_text_atomically
from tilesearch.search._settings import run_caveats, scored_on
from tilesearch.search._storage import load_existing_study, storage_file, with_file, without_password

RUN_FILE = "run.yaml"


def recorded_storage(url: str, run_dir: Path) -> str:
    """How ``run.yaml`` records a storage: a file in the run folder relative to it, anything else absolute and
    without its password."""
    file = storage_file(url)
    if file is None:
        return without_password(url)[0]
    try:
        return with_file(url, file.resolve().relative_to(Path(run_dir).resolve()))
    except ValueError:  # outside the run folder: shared on purpose, stays where it is
        return with_file(url, file.resolve())


def resolve_storage(recorded: str, run_dir: Path) -> str:
    """The storage a run folder's ``run.yaml`` means, checked to be this folder's own.

    A relative file is the folder's. An absolute one (``--storage``, or a folder written before paths were
    recorded relative) that lies in another run folder is refused: this folder was copied from there and would
    write into that study. One that no longer exists is this folder's own copy when the folder holds a file of
    that name (the folder was moved).
    """
    run_dir, file = Path(run_dir), storage_file(recorded)
    if file is None:
        return recorded
    if not file.is_absolute():
        return with_file(recorded, (run_dir / file).resolve())
    owner = file.parent
    if file.is_file() and owner != run_dir.resolve() and (owner / RUN_FILE).is_file():
        raise StudyError(
            f"run folder {str(run_dir)!r} records the study of run folder {str(owner)!r} ({file}): was it copied from "
            f"there? Continue that folder, or set 'storage: {with_file(recorded, Path(file.name))}' in "
            f"{str(run_dir / RUN_FILE)!r} to use this folder's copy"
        )
    if not file.is_file():
        if (run_dir / file.name).is_file():
            return with_file(recorded, (run_dir / file.name).resolve())
        raise StudyError(f"run folder {str(run_dir)!r} records storage {recorded!r}, which does not exist "
                         f"(was the folder moved?): set its new place as 'storage:' in {str(run_dir / RUN_FILE)!r}")
    return recorded


def run_document(study_name: str, storage_url: str, settings: dict, preprocessing: dict, budget: int | None,
                 blocks: list[SEBlock], run_dir: Path, weights: str) -> dict:
    """The content of ``run.yaml`` (never a password: the storage URL is recorded without it)."""
    return {
        "study_name": study_name,
        "storage": recorded_storage(storage_url, run_dir),
        "weights": weights,
        "scored_on": scored_on(settings),
        "caveats": run_caveats(settings),
        "settings": settings,
        "preprocessing": {**preprocessing, "input_size": list(preprocessing["input_size"])},
        "budget_elements": budget,
        "se_buffer": sum(block.se_buffer for block in blocks),
        "blocks": [block.to_dict() for block in blocks],
    }


def save_run_file(run_dir: Path, document: dict) -> Path:
    return write_text_atomically(Path(run_dir) / RUN_FILE, yaml.safe_dump(document, sort_keys=False))


def read_run_file(run_dir: str | Path) -> dict:
    """``run.yaml`` of a run folder, its storage resolved (:func:`resolve_storage`); one line when it is not one."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise StudyError(f"{str(run_dir)!r} is not a tilesearch run folder (no {RUN_FILE} in it)")
    document = read_yaml(path, "run file")
    missing = [key for key in ("study_name", "storage", "settings", "preprocessing", "blocks")
               if not isinstance(document, dict) or key not in document]
    if missing:
        raise StudyError(f"run file {str(path)!r} is not a tilesearch run file: it has no {missing[0]!r}")
    return {**document, "storage": resolve_storage(document["storage"], Path(run_dir))}


def blocks_from_run(document: dict) -> list[SEBlock]:
    return [SEBlock(**block) for block in document["blocks"]]


def load_study_of_run(document: dict) -> optuna.Study:
    """The study a run folder's ``run.yaml`` points to."""
    return load_existing_study(document["storage"], document["study_name"])


def default_storage(run_dir: Path, parallel: bool) -> str:
    """The storage a run folder already records, else a file in it: SQLite, or a journal file for workers."""
    if (run_dir / RUN_FILE).is_file():
        return read_run_file(run_dir)["storage"]
    return str(run_dir.resolve() / "study.log") if parallel else f"sqlite:///{run_dir.resolve() / 'study.db'}"
