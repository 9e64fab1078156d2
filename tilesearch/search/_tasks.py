"""What a search needs to know about one kind of model: a classifier or a detector.

A :class:`Task` turns run settings into the model, its preprocessing and the
factories of its scorers (on the search's images and on held-out ones), and says
which metrics apply and which score reports quote. The search takes the task as
an object and never asks which kind of model it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from tilesearch.core import CLASSIFIER, DETECTOR, DataError, TilesearchError, get_metric
from tilesearch.data import (
    Preprocessing,
    decode_detection_images,
    decode_images,
    image_folder,
    image_listing,
    load_coco,
    random_subset,
    resolve_preprocessing,
    stratified_split,
)
from tilesearch.scoring import DETECTOR_MEAN, DETECTOR_STD, DetectionScorer, Scorer, check_memory
from tilesearch.search._settings import RunSettings
from tilesearch.zoo import default_input_size, load_model, model_source

DETECTION_HOLDOUT = 500  # held-out images of a detector's report, at most


@dataclass
class ScoringParts:
    """A loaded model, its preprocessing and how to make its scorers (images are decoded on first use)."""

    model: nn.Module
    preprocessing: Preprocessing
    scorer_factory: Callable[[], object]
    holdout_factory: Callable[[], object | None]  # a scorer on images the search never sees, if any are left


class Task:
    """One kind of model; subclasses fill in the methods below."""

    name: str = ""
    supports_surrogate: bool = False

    def with_default_metric(self, settings: RunSettings) -> RunSettings:
        """The settings with their metric spelled canonically, the task's default where it has one."""
        return replace(settings, metric=settings.metric.replace("-", "_"))

    def check(self, settings: RunSettings) -> None:
        """Refuse settings that make no sense for this task, before anything is loaded."""
        get_metric(settings.metric, self.name)

    def report_metric(self, settings: RunSettings) -> str:
        """The score quoted in held-out and fine-tuning reports."""
        raise NotImplementedError

    def build(self, settings: RunSettings, run_dir: Path, memory_check: bool = True) -> ScoringParts:
        """The model and its scorers; ``memory_check`` refuses sizes that would not fit before any image is decoded."""
        raise NotImplementedError


class ClassifierTask(Task):
    name = CLASSIFIER
    supports_surrogate = True

    def check(self, settings: RunSettings) -> None:
        super().check(settings)
        if settings.annotations is not None:
            raise TilesearchError(
                f"--annotations is for detectors (effdet models such as efficientdet_d0), not {settings.model!r}"
            )

    def report_metric(self, settings: RunSettings) -> str:
        return "accuracy" if get_metric(settings.metric).needs_labels else "agreement"

    def build(self, settings: RunSettings, run_dir: Path, memory_check: bool = True) -> ScoringParts:
        dataset = image_folder(settings.data)
        if not dataset.classes and get_metric(settings.metric).needs_labels:
            raise DataError(f"{settings.data!r} holds unlabeled images: use --metric agreement or --metric kl")
        holdout = image_folder(settings.holdout) if settings.holdout is not None else None  # checked before loading
        model = load_model(
            settings.model, pretrained=settings.pretrained, checkpoint=settings.checkpoint, num_classes=settings.num_classes
        )
        preprocessing = resolve_preprocessing(
            model, settings.input_size, settings.crop_pct, settings.interpolation, settings.mean, settings.std
        )
        labels = [label for _, label in dataset.samples]
        search_indices, rest = stratified_split(labels, settings.val_subset, settings.seed)
        if memory_check:
            held_out = len(holdout.samples) if holdout is not None else len(rest)
            check_memory(model, preprocessing.input_size, settings.batch_size, len(search_indices) + held_out,
                         settings.device)

        def scorer_on(root: str, indices: list[int] | None, description: str) -> Scorer:
            images = decode_images(root, preprocessing, indices, cache_dir=run_dir / "cache", description=description,
                                   strict=settings.strict_data)
            return Scorer(model, images, preprocessing, batch_size=settings.batch_size, device=settings.device)

        def holdout_factory() -> Scorer | None:
            if settings.holdout is not None:
                return scorer_on(settings.holdout, None, "decoding held-out images")
            return scorer_on(settings.data, rest, "decoding held-out images") if rest else None

        return ScoringParts(
            model, preprocessing, lambda: scorer_on(settings.data, search_indices, "decoding images"), holdout_factory
        )


class DetectorTask(Task):
    name = DETECTOR

    def with_default_metric(self, settings: RunSettings) -> RunSettings:
        """Detectors score by mAP: against annotations, else against the SE model's detections."""
        settings = super().with_default_metric(settings)
        if settings.metric == "accuracy":  # the settings' default, which means "the task's default"
            settings = replace(settings, metric="map" if settings.annotations else "pseudo_map")
        return settings

    def check(self, settings: RunSettings) -> None:
        super().check(settings)
        if settings.metric == "map" and settings.annotations is None:
            raise TilesearchError("--metric map needs --annotations instances.json; without labels use --metric pseudo-map")
        if settings.holdout is not None:
            raise TilesearchError(
                "--holdout is for classifiers; a detector is reported on the --data images outside --val-subset"
            )

    def report_metric(self, settings: RunSettings) -> str:
        return "map" if settings.annotations else "pseudo_map"

    def build(self, settings: RunSettings, run_dir: Path, memory_check: bool = True) -> ScoringParts:
        coco = load_coco(settings.data, settings.annotations) if settings.annotations else image_listing(settings.data)
        size = (settings.input_size,) * 2 if settings.input_size else default_input_size(settings.model)
        model = load_model(settings.model, pretrained=settings.pretrained, checkpoint=settings.checkpoint,
                           num_classes=settings.num_classes, input_size=size)
        mean, std = tuple(settings.mean or DETECTOR_MEAN), tuple(settings.std or DETECTOR_STD)
        preprocessing = Preprocessing(size, "bilinear", 1.0, "resize-pad", mean, std)
        ids = random_subset(list(coco.imgs), settings.val_subset, settings.seed)
        # Two passes at 768 px over all of COCO val would dwarf the search: the report takes a sample.
        rest = random_subset(sorted(set(coco.imgs) - set(ids)), DETECTION_HOLDOUT, settings.seed + 1)
        if memory_check:
            check_memory(model, size, min(settings.batch_size, 8), len(ids) + len(rest), settings.device)

        def scorer_on(image_ids: list[int], description: str) -> DetectionScorer:
            images = decode_detection_images(settings.data, coco, image_ids, size, mean, run_dir / "cache", description,
                                             strict=settings.strict_data)
            return DetectionScorer(model, images, mean, std, ground_truth=coco if settings.annotations else None,
                                   batch_size=min(settings.batch_size, 8), device=settings.device)

        return ScoringParts(
            model, preprocessing, lambda: scorer_on(ids, "decoding images"),
            lambda: scorer_on(rest, "decoding held-out images") if rest else None,
        )


TASKS: dict[str, Task] = {task.name: task for task in (ClassifierTask(), DetectorTask())}


def task_of(model: str) -> Task:
    """The task of a model name, from the zoo that builds it."""
    return TASKS[model_source(model).task]
