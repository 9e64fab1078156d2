"""``tilesearch run`` with no model and no data: the demo network on freshly drawn images, searched and fine-tuned."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tilesearch.demo._dataset import write_demo_dataset
from tilesearch.search import RunSettings
from tilesearch.zoo import DEMO_MODEL_NAME

DEMO_VAL_PER_CLASS = 150  # 1200 images: 400 for the search, 800 held out for the final report
DEMO_VAL_SUBSET = 400
DEMO_BUDGET = "50%"
DEMO_TRAIN_PER_CLASS = 100  # the short fine-tune's training split
DEMO_FINETUNE = {"epochs": 10, "train_subset": 1.0, "lr": 0.01}


def demo_data_dir(out_dir: Path, split: str = "val") -> Path:
    """Where a split of the demo's data set lives under ``out_dir`` (drawn by :func:`demo_data`)."""
    return Path(out_dir) / "demo-data" / split


def demo_data(out_dir: Path, split: str = "val", seed: int = 0) -> Path:
    """A split of the demo's data set under ``out_dir``, drawn once and reused."""
    per_class = DEMO_VAL_PER_CLASS if split == "val" else DEMO_TRAIN_PER_CLASS
    folder = demo_data_dir(out_dir, split)
    complete = folder / ".complete"
    if not complete.is_file():
        write_demo_dataset(folder.parent, split, per_class, seed)
        complete.write_text(f"{per_class} per class, seed {seed}\n")
    return folder


def demo_settings(out_dir: Path, **overrides) -> RunSettings:
    """Search settings of the offline demo: the committed network on images drawn under ``out_dir``
    (by :func:`demo_data`); ``overrides`` are other :class:`RunSettings` values (a budget, a space...)."""
    settings = RunSettings(
        model=DEMO_MODEL_NAME, data=str(demo_data_dir(out_dir)), val_subset=DEMO_VAL_SUBSET,
        budget=DEMO_BUDGET,
    )
    return replace(settings, **overrides)
