"""Fine-tuning a tiled model: the paper's schedule, and each task's training data and loss.

Vosco et al. (sections 4.1 and 4.3, Table 2 "TSE^ft") regain what the zero-shot
swap lost with a short fine-tune from the SE weights: SGD with momentum 0.9,
weight decay 5e-5, a cosine learning rate, on 10% of the training data. A
:class:`Training` per task reads the training data and gives the loss of a batch;
:func:`train_epochs` runs the schedule for either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from tilesearch.core import CLASSIFIER, DETECTOR, SEGMENTER, DataError, TilesearchError
from tilesearch.data import (
    DetectionImages,
    decode_detection_images,
    decode_images,
    decode_segmentation,
    detection_targets,
    flip_boxes,
    flip_images,
    flip_masks,
    image_folder,
    load_coco,
    random_subset,
    segmentation_pairs,
    stratified_split,
)
from tilesearch.scoring import model_num_classes, segmentation_batch_size, segmentation_logits, segmenter_classes
from tilesearch.search import Search

FINETUNE_DEFAULTS = {"epochs": 5, "train_subset": 0.1, "lr": 0.01}
"""The paper's short schedule on 10% of the training data (its learning rate for our batch size)."""

LossOf = Callable[[Tensor, Tensor], Tensor]
"""``loss_of(index, flip)``: the loss of the training items ``index``, those with ``flip`` mirrored."""


def check_finetune_args(epochs: int, lr: float, batch_size: int, train_subset: float) -> None:
    """Fine-tuning settings a user typed, checked before any work is done."""
    if epochs < 1:
        raise TilesearchError(f"invalid number of epochs {epochs}: expected a positive integer")
    if not lr > 0:
        raise TilesearchError(f"invalid learning rate {lr}: expected a positive number")
    if batch_size < 1:
        raise TilesearchError(f"invalid batch size {batch_size}: expected a positive integer")
    if not train_subset > 0:
        raise TilesearchError(f"invalid training subset {train_subset}: a fraction in (0, 1] or a number of images")


def _subset_size(train_subset: float, total: int) -> int:
    if not 0 < train_subset <= total:
        raise TilesearchError(f"invalid training subset {train_subset}: a fraction in (0, 1] or a number of images")
    return max(1, round(train_subset * total) if train_subset <= 1 else int(train_subset))


class Training:
    """How one task fine-tunes; subclasses fill in the two methods."""

    labels_flag: str | None = None  # the option naming the training labels that are not in train_data itself

    def batch_size(self, search: Search, requested: int) -> int:
        """The training batch a forward and backward can hold."""
        return requested

    def check_data(self, search: Search, train_data: str | Path, train_labels: str | Path | None) -> None:
        """Training data of the wrong kind fails before a search or fine-tune starts.

        ``train_labels`` is a detector's COCO instances JSON or a segmenter's masks folder."""
        raise NotImplementedError

    def prepare(self, search: Search, model: nn.Module, train_data: str | Path, train_labels: str | Path | None,
                train_subset: float, seed: int, device: torch.device) -> tuple[int, LossOf]:
        """(number of training items, loss_of) on the decoded training subset."""
        raise NotImplementedError


class ClassifierTraining(Training):
    """Cross-entropy on an ImageFolder with the validation data's classes."""

    def check_data(self, search, train_data, train_labels) -> None:
        image_folder(train_data)

    def prepare(self, search, model, train_data, train_labels, train_subset, seed, device):
        dataset = image_folder(train_data)
        validation = search.settings.holdout or search.settings.data
        val_classes = image_folder(validation).classes if validation is not None else None
        if val_classes is not None and dataset.classes != val_classes:
            raise DataError(
                f"training folder {str(train_data)!r} has classes {dataset.classes[:4]}... but the validation data has "
                f"{val_classes[:4]}...: they must be the same classes"
            )
        outputs = model_num_classes(model)
        if val_classes is None and outputs is not None and outputs != len(dataset.classes):  # a search without --data
            raise DataError(f"training folder {str(train_data)!r} has {len(dataset.classes)} classes but the model's "
                            f"head has {outputs} outputs")
        labels = [label for _, label in dataset.samples]
        indices, _ = stratified_split(labels, max(_subset_size(train_subset, len(labels)), len(dataset.classes)), seed)
        images = decode_images(train_data, search.preprocessing, indices, cache_dir=search.run_dir / "cache",
                               description="decoding training images", strict=search.settings.strict_data)

        def loss_of(index: Tensor, flip: Tensor) -> Tensor:
            pixels = flip_images(images.pixels[index], flip)
            logits = model(search.preprocessing.normalize(pixels.to(device)))
            return nn.functional.cross_entropy(logits, images.labels[index].to(device))

        return len(images), loss_of


class DetectorTraining(Training):
    """effdet's training bench (anchor labels, focal and box loss) on COCO data, boxes mirrored with the flips."""

    labels_flag = "--train-annotations"

    def check_data(self, search, train_data, train_labels) -> None:
        if train_labels is None:
            raise TilesearchError(
                "a detector fine-tunes on COCO data: give --train-annotations instances.json with --train-data IMAGES_DIR"
            )
        load_coco(train_data, train_labels)

    def prepare(self, search, model, train_data, train_labels, train_subset, seed, device):
        coco = load_coco(train_data, train_labels)
        ids = random_subset(list(coco.imgs), _subset_size(train_subset, len(coco.imgs)), seed)
        classes = model.config.num_classes
        beyond = sorted({a["category_id"] for a in coco.dataset["annotations"] if not 1 <= a["category_id"] <= classes})
        if beyond:
            raise DataError(f"training annotations use category id {beyond[0]}, but the detector has classes 1..{classes}")
        images = decode_detection_images(train_data, coco, ids, search.preprocessing.input_size,
                                         search.preprocessing.mean, search.run_dir / "cache", "decoding training images",
                                         strict=search.settings.strict_data)
        boxes, labels = detection_targets(coco, images)
        return len(images), detection_loss(model, images, boxes, labels, search.preprocessing.normalize, device)


def detection_loss(model: nn.Module, images: DetectionImages, boxes: Tensor, classes: Tensor,
                   normalize: Callable[[Tensor], Tensor], device: torch.device) -> LossOf:
    """effdet's focal + box loss of a batch (anchor labels from effdet's bench), flips mirrored in the boxes."""
    from effdet import DetBenchTrain

    bench = DetBenchTrain(model).to(device)  # a new module is in training mode; the model keeps its own mode
    width = images.pixels.shape[-1]

    def loss_of(index: Tensor, flip: Tensor) -> Tensor:
        pixels = flip_images(images.pixels[index], flip)
        target = {"bbox": flip_boxes(boxes[index], flip, width).to(device), "cls": classes[index].to(device)}
        return bench(normalize(pixels.to(device)), target)["loss"]

    return loss_of


class SegmenterTraining(Training):
    """Per-pixel cross-entropy (the ignore index skipped) on images and masks, each mask flipped with its image."""

    labels_flag = "--train-masks"

    def batch_size(self, search: Search, requested: int) -> int:
        """Capped like scoring's, by input pixels: one image per step at 1024x2048."""
        return segmentation_batch_size(requested, search.preprocessing.input_size)

    def check_data(self, search, train_data, train_labels) -> None:
        if train_labels is None:
            raise TilesearchError("a segmenter fine-tunes on images and their masks: give --train-masks MASKS_DIR "
                                  "with --train-data IMAGES_DIR")
        segmentation_pairs(train_data, train_labels)

    def prepare(self, search, model, train_data, train_labels, train_subset, seed, device):
        pairs = segmentation_pairs(train_data, train_labels)
        ids = random_subset(list(range(len(pairs))), _subset_size(train_subset, len(pairs)), seed)
        settings = search.settings
        images = decode_segmentation([pairs[i] for i in ids], search.preprocessing.input_size,
                                     cache_dir=search.run_dir / "cache", description="decoding training images",
                                     ignore_index=settings.ignore_index,
                                     num_classes=segmenter_classes(model, search.preprocessing.input_size),
                                     strict=settings.strict_data)
        return len(images), segmentation_loss(model, images.pixels, images.masks, search.preprocessing.normalize,
                                              settings.ignore_index, device)


def segmentation_loss(model: nn.Module, pixels: Tensor, masks: Tensor, normalize: Callable[[Tensor], Tensor],
                      ignore_index: int, device: torch.device) -> LossOf:
    """Cross-entropy of the logits (upsampled to the masks' size if smaller) against the masks, flips applied to both."""

    def loss_of(index: Tensor, flip: Tensor) -> Tensor:
        logits = segmentation_logits(model(normalize(flip_images(pixels[index], flip).to(device))))
        target = flip_masks(masks[index], flip).to(device).long()
        if logits.shape[-2:] != target.shape[-2:]:
            logits = nn.functional.interpolate(logits, size=tuple(target.shape[-2:]), mode="bilinear", align_corners=False)
        return nn.functional.cross_entropy(logits, target, ignore_index=ignore_index)

    return loss_of


TRAININGS: dict[str, Training] = {
    CLASSIFIER: ClassifierTraining(), DETECTOR: DetectorTraining(), SEGMENTER: SegmenterTraining()
}


def training_for(search: Search) -> Training:
    return TRAININGS[search.task.name]


def train_labels(search: Search, train_annotations: str | Path | None = None,
                 train_masks: str | Path | None = None) -> str | Path | None:
    """The training labels the run's task takes (a detector's annotations, a segmenter's masks); the other task's
    option is refused in one line."""
    wanted = training_for(search).labels_flag
    for flag, value in (("--train-annotations", train_annotations), ("--train-masks", train_masks)):
        if value is not None and flag != wanted:
            kind = "detectors (effdet models)" if flag == "--train-annotations" else "segmenters"
            raise TilesearchError(f"{flag} is for {kind}, not the {search.task.name} {search.settings.model!r}")
    return train_annotations if wanted == "--train-annotations" else train_masks


def check_train_data(search: Search, train_data: str | Path, train_labels: str | Path | None = None) -> None:
    """Training data of the wrong kind for the run's model fails before a search or fine-tune starts."""
    training_for(search).check_data(search, train_data, train_labels)


def _freeze_norm_statistics(model: nn.Module) -> None:
    # A short schedule on a small subset would only add noise to the running statistics.
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def train_epochs(model: nn.Module, count: int, loss_of: LossOf, epochs: int, lr: float, batch_size: int, seed: int) -> list[float]:
    """SGD (momentum 0.9, weight decay 5e-5) with a per-step cosine schedule over ``count`` items,
    half of each batch flipped. Returns each epoch's mean loss."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-count // batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-5)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    losses = []
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}")]
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("fine-tuning", total=epochs * steps_per_epoch, status="")
        for epoch in range(epochs):
            model.train()
            _freeze_norm_statistics(model)
            order = torch.randperm(count, generator=generator)
            total, seen, started = 0.0, 0, time.perf_counter()
            for start in range(0, count, batch_size):
                index = order[start : start + batch_size]
                loss = loss_of(index, torch.rand(len(index), generator=generator) < 0.5)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item() * len(index)
                seen += len(index)
                rate = seen / max(time.perf_counter() - started, 1e-9)
                progress.update(task, advance=1, status=f"epoch {epoch + 1}/{epochs} loss {total / seen:.3f} {rate:.0f} img/s")
            losses.append(total / seen)
    model.eval()
    return losses
