"""``tilesearch run`` with no model and no data: a demo network on freshly drawn images, searched and fine-tuned.

Two demos ship, each a network trained by the project's own code on a drawn data set
where spatial context matters: ``classifier`` (the default) and ``segmentation`` (an
LR-ASPP segmenter whose head's global-pool branch is searched with its SE blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from tilesearch.core import UnknownNameError
from tilesearch.demo._dataset import write_demo_dataset
from tilesearch.demo._seg_dataset import write_segmentation_folder
from tilesearch.search import RunSettings
from tilesearch.zoo import DEMO_MODEL_NAME, DEMO_SEGMENTER_NAME

DEMO_VAL_PER_CLASS = 150  # 1200 images: 400 for the search, 800 held out for the final report
DEMO_VAL_SUBSET = 400
DEMO_BUDGET = "50%"
DEMO_TRAIN_PER_CLASS = 100  # the short fine-tune's training split
DEMO_FINETUNE = {"epochs": 10, "train_subset": 1.0, "lr": 0.01}


@dataclass(frozen=True)
class DemoData:
    """A drawn split on disk: the images folder, and the masks folder of a segmentation demo."""

    images: Path
    masks: Path | None = None


@dataclass(frozen=True)
class Demo:
    """One offline demo: its network, how its splits are drawn, and its search and fine-tune settings."""

    name: str
    model: str
    folder: str  # under the --out folder
    split_sizes: dict[str, int]  # what ``write`` is given per split: images per class, or images
    write: Callable[[Path, str, int, int], object]  # write(split_folder, split, size, seed) draws a split
    layout: Callable[[Path], DemoData]  # where a drawn split's images (and masks) are
    val_subset: int
    finetune: dict = field(default_factory=lambda: dict(DEMO_FINETUNE))
    budget: str = DEMO_BUDGET

    def data_dir(self, out_dir: Path, split: str = "val") -> Path:
        return Path(out_dir) / self.folder / split

    def data(self, out_dir: Path, split: str = "val", seed: int = 0) -> DemoData:
        """A split of the demo's data set under ``out_dir``, drawn once and reused."""
        folder = self.data_dir(out_dir, split)
        complete = folder / ".complete"
        if not complete.is_file():
            self.write(folder, split, self.split_sizes[split], seed)
            complete.write_text(f"{self.split_sizes[split]} ({split}), seed {seed}\n")
        return self.layout(folder)

    def settings(self, out_dir: Path, **overrides) -> RunSettings:
        """Search settings of the demo on images drawn under ``out_dir`` (by :meth:`data`); ``overrides``
        are other :class:`RunSettings` values (a budget, a space...)."""
        val = self.layout(self.data_dir(out_dir))
        settings = RunSettings(model=self.model, data=str(val.images), masks=None if val.masks is None else str(val.masks),
                               val_subset=self.val_subset, budget=self.budget)
        return replace(settings, **overrides)


DEMOS: dict[str, Demo] = {
    demo.name: demo
    for demo in (
        Demo("classifier", DEMO_MODEL_NAME, "demo-data", {"val": DEMO_VAL_PER_CLASS, "train": DEMO_TRAIN_PER_CLASS},
             lambda folder, split, size, seed: write_demo_dataset(folder.parent, split, size, seed), DemoData,
             DEMO_VAL_SUBSET),
        # 600 drawn scenes: 200 for the search, 400 held out; 300 to fine-tune on. A budget of a fifth of SE's
        # buffer leaves uniform 7xW (83%) out, so the search must choose which blocks keep their context.
        Demo("segmentation", DEMO_SEGMENTER_NAME, "demo-segmentation-data", {"val": 600, "train": 300},
             write_segmentation_folder, lambda folder: DemoData(folder / "images", folder / "masks"), 200,
             {"epochs": 5, "train_subset": 1.0, "lr": 0.01}, budget="20%"),
    )
}
DEFAULT_DEMO = "classifier"


def get_demo(name: str) -> Demo:
    """The demo called ``name`` (classifier, segmentation)."""
    if name not in DEMOS:
        raise UnknownNameError(f"unknown demo {name!r}: expected one of {', '.join(DEMOS)}")
    return DEMOS[name]


def demo_data_dir(out_dir: Path, split: str = "val") -> Path:
    """Where a split of the classifier demo's data set lives under ``out_dir`` (drawn by :func:`demo_data`)."""
    return DEMOS[DEFAULT_DEMO].data_dir(out_dir, split)


def demo_data(out_dir: Path, split: str = "val", seed: int = 0) -> Path:
    """A split of the classifier demo's data set under ``out_dir``, drawn once and reused."""
    return DEMOS[DEFAULT_DEMO].data(out_dir, split, seed).images


def demo_settings(out_dir: Path, **overrides) -> RunSettings:
    """Search settings of the classifier demo (see :meth:`Demo.settings`)."""
    return DEMOS[DEFAULT_DEMO].settings(out_dir, **overrides)
