"""The run folder: ``run.yaml`` records a search's settings, its study's place and the model's SE blocks.

``tilesearch resume``, ``pareto``, ``worker``, ``finetune`` and ``export`` read a
run back from its folder alone; the study itself lives in an Optuna storage,
by default a file in the folder.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml

from tilesearch.core import SEBlock, StudyError, write_text_atomically
from tilesearch.search._storage import is_journal, load_existing_study, without_password


def run_document(study_name: str, storage_url: str, settings: dict, preprocessing: dict, budget: int | None,
                 blocks: list[SEBlock]) -> dict:
    """The content of ``run.yaml`` (never a password: the storage URL is recorded without it)."""
    return {
        "study_name": study_name,
        "storage": without_password(storage_url)[0],
        "settings": settings,
        "preprocessing": {**preprocessing, "input_size": list(preprocessing["input_size"])},
        "budget_elements": budget,
        "se_buffer": sum(block.se_buffer for block in blocks),
        "blocks": [block.to_dict() for block in blocks],
    }


def save_run_file(run_dir: Path, document: dict) -> Path:
    return write_text_atomically(Path(run_dir) / "run.yaml", yaml.safe_dump(document, sort_keys=False))


def read_run_file(run_dir: str | Path) -> dict:
    """``run.yaml`` of a run folder, or a one-line error when the folder is not one."""
    path = Path(run_dir) / "run.yaml"
    if not path.is_file():
        raise StudyError(f"{str(run_dir)!r} is not a tilesearch run folder (no run.yaml in it)")
    return yaml.safe_load(path.read_text())


def blocks_from_run(document: dict) -> list[SEBlock]:
    return [SEBlock(**block) for block in document["blocks"]]


def load_study_of_run(document: dict) -> optuna.Study:
    """The study a run folder's ``run.yaml`` points to."""
    return load_existing_study(document["storage"], document["study_name"])


def default_storage(run_dir: Path, parallel: bool) -> str:
    """The storage a run folder already records, else a file in it: SQLite, or a journal file for workers."""
    if (run_dir / "run.yaml").is_file():
        recorded = read_run_file(run_dir)["storage"]
        file = recorded.removeprefix("sqlite:///").removeprefix("journal:")
        if (recorded.startswith("sqlite:///") or is_journal(recorded)) and not Path(file).is_file():
            raise StudyError(f"run folder {str(run_dir)!r} records storage {recorded!r}, which does not exist "
                             f"(was the folder moved?): pass --storage with its new place")
        return recorded
    return str(run_dir.resolve() / "study.log") if parallel else f"sqlite:///{run_dir.resolve() / 'study.db'}"
