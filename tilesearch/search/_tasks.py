"""What a search needs to know about one kind of model: a classifier, a detector or a segmenter.

A :class:`Task` turns run settings into the model, its preprocessing and the
factories of its scorers (on the search's images and on held-out ones), and says
which metrics apply and which score reports quote. The search takes the task as
an object and never asks which kind of model it holds.

Without ``--data`` a task scores on images synthesised for the model
(:func:`tilesearch.data.synthetic_images`, cached in the run folder), label-free:
there is then no held-out accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from tilesearch.core import CLASSIFIER, DETECTOR, SEGMENTER, DataError, TilesearchError, get_metric
from tilesearch.data import (
    DEFAULT_SOURCE,
    DetectionImages,
    ImageSet,
    SegmentationSet,
    Preprocessing,
    decode_detection_images,
    decode_images,
    decode_segmentation,
    image_folder,
    image_listing,
    load_coco,
    random_subset,
    get_source,
    resolve_preprocessing,
    segmentation_pairs,
    seeded_order,
    stratified_split,
    synthetic_images,
)
from tilesearch.scoring import (
    DETECTOR_MEAN,
    DETECTOR_STD,
    DetectionScorer,
    Scorer,
    SegmentationScorer,
    check_memory,
    resolve_device,
    segmentation_batch_size,
    segmenter_classes,
    segmenter_normalisation,
)
from tilesearch.search._settings import RunSettings
from tilesearch.zoo import default_input_size, load_model, model_source

DETECTION_HOLDOUT = 500  # held-out images of a detector's or segmenter's report, at most
DATA_SUBSET = 1000  # images of --data a search scores on, by default


def _load(settings: RunSettings, input_size: tuple[int, int] | None = None) -> nn.Module:
    return load_model(settings.model, checkpoint=settings.checkpoint, random_weights=settings.random_weights,
                      num_classes=settings.num_classes, input_size=input_size)


def _synthesised(model: nn.Module, settings: RunSettings, preprocessing: Preprocessing, run_dir: Path) -> torch.Tensor:
    """The search's synthetic images (uint8), made once per model, weights, size, source and seed, then cached."""
    return synthetic_images(model, settings.model, settings.data_source, settings.val_subset, preprocessing.input_size,
                            preprocessing.mean, preprocessing.std, seed=settings.seed,
                            device=resolve_device(settings.device), cache_dir=run_dir / "cache")


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
    synthetic_count: int = 256  # images synthesised for a search without --data

    def default_metric(self, settings: RunSettings) -> str:
        """The metric of settings that name none: label-free ``fidelity`` without data."""
        return "fidelity"

    def with_defaults(self, settings: RunSettings) -> RunSettings:
        """The settings with the task's defaults filled in (metric, images, data source), the metric spelled canonically."""
        metric = settings.metric if settings.metric is not None else self.default_metric(settings)
        count = DATA_SUBSET if settings.data is not None else self.synthetic_count
        source = settings.data_source or (DEFAULT_SOURCE if settings.data is None else None)
        return replace(settings, metric=metric.replace("-", "_"), data_source=source,
                       val_subset=settings.val_subset if settings.val_subset is not None else count)

    def check(self, settings: RunSettings) -> None:
        """Refuse settings that make no sense for this task, before anything is loaded."""
        metric = get_metric(settings.metric, self.name)
        if settings.masks is not None and self.name != SEGMENTER:
            raise TilesearchError(f"--masks is for segmenters (lraspp_mobilenet_v3_large, ...), not the {self.name} "
                                  f"{settings.model!r}")
        if settings.data is not None:
            if settings.data_source is not None:
                raise TilesearchError(f"--data-source {settings.data_source} synthesises images when no --data is given; "
                                      f"drop one of them")
            return
        if metric.needs_labels:
            raise TilesearchError(f"--metric {metric.name} needs labelled --data; without data use --metric fidelity")
        for flag, value in (("--annotations", settings.annotations), ("--holdout", settings.holdout),
                            ("--masks", settings.masks)):
            if value is not None:
                raise TilesearchError(f"{flag} describes images of --data, and no --data is given")
        get_source(settings.data_source)

    def report_metric(self, settings: RunSettings) -> str:
        """The score quoted in held-out and fine-tuning reports."""
        raise NotImplementedError

    def model(self, settings: RunSettings) -> tuple[nn.Module, Preprocessing]:
        """The model with its weights, and how an image becomes its input."""
        raise NotImplementedError

    def shapes(self, settings: RunSettings) -> tuple[nn.Module, Preprocessing]:
        """The model with seeded random weights: its blocks and buffers without loading any weights."""
        return self.model(replace(settings, checkpoint=None, random_weights=True))

    def build(self, settings: RunSettings, run_dir: Path, memory_check: bool = True) -> ScoringParts:
        """The model and its scorers; ``memory_check`` refuses sizes that would not fit before any image is decoded."""
        raise NotImplementedError


class ClassifierTask(Task):
    name = CLASSIFIER
    supports_surrogate = True

    def default_metric(self, settings: RunSettings) -> str:
        return "accuracy" if settings.data is not None else super().default_metric(settings)

    def check(self, settings: RunSettings) -> None:
        if settings.annotations is not None:
            raise TilesearchError(
                f"--annotations is for detectors (effdet models such as efficientdet_d0), not {settings.model!r}"
            )
        super().check(settings)

    def report_metric(self, settings: RunSettings) -> str:
        return "accuracy" if get_metric(settings.metric).needs_labels else "agreement"

    def build(self, settings: RunSettings, run_dir: Path, memory_check: bool = True) -> ScoringParts:
        if settings.data is None:
            return self._build_data_free(settings, run_dir, memory_check)
        dataset = image_folder(settings.data)
        if not dataset.classes and get_metric(settings.metric).needs_labels:
            raise DataError(f"{settings.data!r} holds unlabeled images: use --metric agreement, kl or fidelity")
        holdout = image_folder(settings.holdout) if settings.holdout is not None else None  # checked before loading
        model, preprocessing = self.model(settings)
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
            model, preprocessing, lambda: scorer_on(settings.data, seeded_order(search_indices, settings.seed),
                                                    "decoding images"), holdout_factory
        )

    def model(self, settings: RunSettings) -> tuple[nn.Module, Preprocessing]:
        """The classifier and timm's data config for it, overridden by the settings."""
        model = _load(settings)
        return model, resolve_preprocessing(model, settings.input_size, settings.crop_pct, settings.interpolation,
                                            settings.mean, settings.std)

    def _build_data_free(self, settings: RunSettings, run_dir: Path, memory_check: bool) -> ScoringParts:
        model, preprocessing = self.model(settings)
        get_source(settings.data_source).check(model)
        if memory_check:
            check_memory(model, preprocessing.input_size, settings.batch_size, settings.val_subset, settings.device)

        def scorer() -> Scorer:
            pixels = _synthesised(model, settings, preprocessing, run_dir)
            images = ImageSet(pixels, torch.full((len(pixels),), -1, dtype=torch.long), [])
            return Scorer(model, images, preprocessing, batch_size=settings.batch_size, device=settings.device)

        return ScoringParts(model, preprocessing, scorer, lambda: None)


class DetectorTask(Task):
    name = DETECTOR

    synthetic_count = 32  # a detector's forward at 512-768 px costs 20-60 classifier forwards

    def default_metric(self, settings: RunSettings) -> str:
        """Detectors score by mAP: against annotations, else against the SE model's detections; without data, fidelity."""
        if settings.data is None:
            return super().default_metric(settings)
        return "map" if settings.annotations else "pseudo_map"

    def check(self, settings: RunSettings) -> None:
        if settings.holdout is not None:
            raise TilesearchError(
                "--holdout is for classifiers; a detector is reported on the --data images outside --val-subset"
            )
        super().check(settings)
        if settings.metric == "map" and settings.annotations is None:
            raise TilesearchError("--metric map needs --annotations instances.json; without labels use --metric "
                                  "pseudo-map or fidelity")

    def report_metric(self, settings: RunSettings) -> str:
        if settings.metric == "fidelity":
            return "fidelity"
        return "map" if settings.annotations else "pseudo_map"

    def build(self, settings: RunSettings, run_dir: Path, memory_check: bool = True) -> ScoringParts:
        if settings.data is None:
            return self._build_data_free(settings, run_dir, memory_check)
        coco = load_coco(settings.data, settings.annotations) if settings.annotations else image_listing(settings.data)
        model, preprocessing = self.model(settings)
        size, mean = preprocessing.input_size, preprocessing.mean
        ids = random_subset(list(coco.imgs), settings.val_subset, settings.seed)
        # Two passes at 768 px over all of COCO val would dwarf the search: the report takes a sample.
        rest = random_subset(sorted(set(coco.imgs) - set(ids)), DETECTION_HOLDOUT, settings.seed + 1)
        if memory_check:
            check_memory(model, size, min(settings.batch_size, 8), len(ids) + len(rest), settings.device)

        def scorer_on(image_ids: list[int], description: str) -> DetectionScorer:
            images = decode_detection_images(settings.data, coco, image_ids, size, mean, run_dir / "cache", description,
                                             strict=settings.strict_data)
            return self._scorer(model, images, preprocessing, settings, ground_truth=coco if settings.annotations else None)

        return ScoringParts(
            model, preprocessing, lambda: scorer_on(ids, "decoding images"),
            lambda: scorer_on(rest, "decoding held-out images") if rest else None,
        )

    def model(self, settings: RunSettings) -> tuple[nn.Module, Preprocessing]:
        """The detector, built for its input size, and effdet's preprocessing (resize and pad)."""
        size = settings.input_size or default_input_size(settings.model)
        model = _load(settings, input_size=size)
        mean, std = tuple(settings.mean or DETECTOR_MEAN), tuple(settings.std or DETECTOR_STD)
        return model, Preprocessing(size, "bilinear", 1.0, "resize-pad", mean, std)

    @staticmethod
    def _scorer(model: nn.Module, images: DetectionImages, preprocessing: Preprocessing, settings: RunSettings,
                ground_truth=None) -> DetectionScorer:
        scorer = DetectionScorer(model, images, preprocessing.mean, preprocessing.std,
                                 ground_truth=ground_truth, batch_size=min(settings.batch_size, 8), device=settings.device,
                                 keep_outputs=settings.metric == "fidelity")
        if settings.metric == "pseudo_map" and not scorer.pseudo.getAnnIds():
            raise DataError(
                f"the SE model detects nothing scoring {scorer.pseudo_threshold} or more on these {len(images)} images, "
                f"so pseudo-mAP cannot tell configs apart: use --metric fidelity (or pretrained weights, not random)"
            )
        return scorer

    def _build_data_free(self, settings: RunSettings, run_dir: Path, memory_check: bool) -> ScoringParts:
        model, preprocessing = self.model(settings)
        get_source(settings.data_source).check(model)
        height, width = preprocessing.input_size
        if memory_check:
            check_memory(model, (height, width), min(settings.batch_size, 8), settings.val_subset, settings.device)

        def scorer() -> DetectionScorer:
            pixels = _synthesised(model, settings, preprocessing, run_dir)
            count = len(pixels)
            images = DetectionImages(pixels, list(range(1, count + 1)), torch.ones(count),
                                     torch.tensor([[width, height]] * count))
            return self._scorer(model, images, preprocessing, settings)

        return ScoringParts(model, preprocessing, scorer, lambda: None)


class SegmenterTask(Task):
    """Semantic segmenters: mIoU against ``--masks``, else pseudo-mIoU against the SE model's own argmax."""

    name = SEGMENTER
    supports_surrogate = True
    synthetic_count = 32  # like a detector, a segmenter runs at hundreds of pixels a side

    def default_metric(self, settings: RunSettings) -> str:
        if settings.data is None:
            return super().default_metric(settings)
        return "miou" if settings.masks else "pseudo_miou"

    def check(self, settings: RunSettings) -> None:
        for flag, value in (("--annotations", settings.annotations), ("--holdout", settings.holdout)):
            if value is not None:
                raise TilesearchError(f"{flag} is not for segmenters: give --masks MASKS_DIR with --data IMAGES_DIR; "
                                      f"the report uses the --data images outside --val-subset")
        super().check(settings)
        if get_metric(settings.metric).needs_labels and settings.data is not None and settings.masks is None:
            raise TilesearchError(f"--metric {settings.metric.replace('_', '-')} needs --masks MASKS_DIR; without "
                                  f"labels use --metric pseudo-miou or fidelity")

    def report_metric(self, settings: RunSettings) -> str:
        if settings.metric == "fidelity":
            return "fidelity"
        return "miou" if settings.masks else "pseudo_miou"

    def model(self, settings: RunSettings) -> tuple[nn.Module, Preprocessing]:
        """The segmenter and its preprocessing: the whole image resized to the input size, no crop."""
        size = settings.input_size or default_input_size(settings.model)
        model = _load(settings, input_size=size)
        mean, std = segmenter_normalisation(model, settings.mean, settings.std)
        return model, Preprocessing(size, "bilinear", 1.0, "resize", mean, std)

    def build(self, settings: RunSettings, run_dir: Path, memory_check: bool = True) -> ScoringParts:
        if settings.data is None:
            return self._build_data_free(settings, run_dir, memory_check)
        pairs = segmentation_pairs(settings.data, settings.masks)  # checked before the model loads
        model, preprocessing = self.model(settings)
        classes = segmenter_classes(model, preprocessing.input_size)  # masks are checked against it as they decode
        ids = random_subset(list(range(len(pairs))), settings.val_subset, settings.seed)
        rest = random_subset(sorted(set(range(len(pairs))) - set(ids)), DETECTION_HOLDOUT, settings.seed + 1)
        if memory_check:
            batch = segmentation_batch_size(settings.batch_size, preprocessing.input_size)
            check_memory(model, preprocessing.input_size, batch, len(ids) + len(rest), settings.device)

        def scorer_on(indices: list[int], description: str) -> SegmentationScorer:
            images = decode_segmentation([pairs[i] for i in indices], preprocessing.input_size,
                                         cache_dir=run_dir / "cache", description=description,
                                         ignore_index=settings.ignore_index, num_classes=classes,
                                         strict=settings.strict_data)
            return self._scorer(model, images, preprocessing, settings)

        return ScoringParts(model, preprocessing, lambda: scorer_on(seeded_order(ids, settings.seed), "decoding images"),
                            lambda: scorer_on(rest, "decoding held-out images") if rest else None)

    @staticmethod
    def _scorer(model: nn.Module, images: SegmentationSet, preprocessing: Preprocessing,
                settings: RunSettings) -> SegmentationScorer:
        return SegmentationScorer(model, images, preprocessing.mean, preprocessing.std,
                                  batch_size=segmentation_batch_size(settings.batch_size, preprocessing.input_size),
                                  device=settings.device,
                                  num_classes=images.num_classes, ignore_index=settings.ignore_index)

    def _build_data_free(self, settings: RunSettings, run_dir: Path, memory_check: bool) -> ScoringParts:
        model, preprocessing = self.model(settings)
        get_source(settings.data_source).check(model)
        if memory_check:
            batch = segmentation_batch_size(settings.batch_size, preprocessing.input_size)
            check_memory(model, preprocessing.input_size, batch, settings.val_subset, settings.device)

        def scorer() -> SegmentationScorer:
            pixels = _synthesised(model, settings, preprocessing, run_dir)
            images = SegmentationSet(pixels, None, [f"synthetic-{i}" for i in range(len(pixels))])
            return self._scorer(model, images, preprocessing, settings)

        return ScoringParts(model, preprocessing, scorer, lambda: None)


TASKS: dict[str, Task] = {task.name: task for task in (ClassifierTask(), DetectorTask(), SegmenterTask())}


def task_of(model: str) -> Task:
    """The task of a model name, from the zoo that builds it."""
    return TASKS[model_source(model).task]
