"""Zero-shot mIoU of a segmentation network's tile config.

A :class:`SegmentationScorer` scores tile configs of one segmentation model the
way :class:`~tilesearch.scoring.Scorer` scores a classifier's: one model re-tiled
in place per config, images decoded once (:func:`~tilesearch.data.decode_segmentation`).
Each config accumulates one confusion matrix against the masks (mIoU, pixel
accuracy) and one against the SE model's own argmax (pseudo-mIoU, label-free),
and the KL divergence of its per-pixel class distributions from SE's (fidelity).
"""

from __future__ import annotations

import collections
import copy
import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor, nn

from tilesearch.core import GAP, DataError, TileChoice, TileConfig, TilesearchError, tile_config
from tilesearch.data import SegmentationSet, normalize
from tilesearch.nn import apply_tiles, find_se_modules
from tilesearch.scoring._device import fastest_memory_format, inference_context, resolve_device, segments
from tilesearch.scoring._intervals import PerImage

Triple = tuple[float, float, float]
BATCH_PIXELS = 8 * 512 * 512  # input pixels per forward: 8 images at torchvision's size, one at 1024x2048
POOLED = (128, 256)  # at most this many (rows, columns) of SE's log-probabilities kept per image for fidelity


def confusion_matrix(predictions: Tensor, targets: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """Pixel counts (int64, K x K): rows are the target class, columns the predicted one.

    Pixels whose target is ``ignore_index`` are skipped; any other target outside 0..K-1 is refused."""
    if predictions.shape != targets.shape:
        raise TilesearchError(f"predictions of shape {tuple(predictions.shape)} do not match targets of shape "
                              f"{tuple(targets.shape)}; expected the same shape")
    targets, predictions = targets.reshape(-1).long(), predictions.reshape(-1).long()
    keep = targets != ignore_index
    targets, predictions = targets[keep], predictions[keep]
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        bad = int(targets[(targets < 0) | (targets >= num_classes)][0])
        raise DataError(f"target label {bad} is not a class of {num_classes}; expected 0..{num_classes - 1} "
                        f"or the ignore index {ignore_index}")
    counts = torch.bincount(targets * num_classes + predictions, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def batched_miou(confusions: np.ndarray) -> np.ndarray:
    """Mean IoU = TP / (TP + FP + FN) of each (K, K) confusion matrix of ``confusions`` (..., K, K), over the
    classes present in target or prediction (union > 0).

    A class absent from both has no IoU and is left out of the mean, not counted as 0 or 1;
    with no pixels at all the mIoU is NaN."""
    confusions = np.asarray(confusions, dtype=np.float64)
    true_positives = np.diagonal(confusions, axis1=-2, axis2=-1)
    union = confusions.sum(-2) + confusions.sum(-1) - true_positives
    present = union > 0
    ious = np.divide(true_positives, union, out=np.zeros_like(union), where=present)
    counted = present.sum(-1)
    return np.divide(ious.sum(-1), counted, out=np.full(counted.shape, np.nan), where=counted > 0)


def batched_pixel_accuracy(confusions: np.ndarray) -> np.ndarray:
    """The fraction of counted pixels predicted right, per (K, K) matrix (NaN with no pixels)."""
    confusions = np.asarray(confusions, dtype=np.float64)
    total = confusions.sum((-2, -1))
    right = np.diagonal(confusions, axis1=-2, axis2=-1).sum(-1)
    return np.divide(right, total, out=np.full(total.shape, np.nan), where=total > 0)


def miou(confusion: Tensor) -> float:
    """The mean IoU of one confusion matrix (see :func:`batched_miou`)."""
    return float(batched_miou(confusion.cpu().numpy()))


def pixel_accuracy(confusion: Tensor) -> float:
    """The fraction of counted pixels predicted right (NaN with no pixels)."""
    return float(batched_pixel_accuracy(confusion.cpu().numpy()))


def per_image_confusion(predictions: Tensor, targets: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """One flattened confusion matrix per image of (B, H, W) predictions and targets: (B, K * K)."""
    return torch.stack([confusion_matrix(found, target, num_classes, ignore_index).reshape(-1)
                        for found, target in zip(predictions, targets)])


def segmentation_logits(output) -> Tensor:
    """A segmentation model's output as (N, K, H, W) logits: a tensor as is, torchvision's dict by its ``"out"``.

    A single channel is a binary segmenter's logit (smp's default): it becomes the two-class logits
    (0, z), whose softmax is the sigmoid, so argmax, mIoU, KL and cross-entropy treat it as two classes."""
    if isinstance(output, Mapping) and "out" in output:
        output = output["out"]
    if isinstance(output, Tensor):
        return torch.cat([torch.zeros_like(output), output], dim=1) if output.shape[1] == 1 else output
    raise TilesearchError(f"the model returned {type(output).__name__}; expected a (N, K, H, W) logits tensor "
                          f"or a dict with 'out' (torchvision's segmentation models)")


@dataclass(frozen=True)
class SegmentationScore:
    """mIoU and pixel accuracy of one config against the masks (NaN without masks), and its fidelity to SE.

    ``pseudo_miou`` is the mIoU of this config's argmax against the SE model's own argmax
    (label-free); ``fidelity`` the mean per-pixel KL(p_SE || p_tiled) over classes in nats,
    on the average-pooled outputs (see :class:`SegmentationScorer`).
    """

    miou: float
    pixel_accuracy: float
    pseudo_miou: float
    fidelity: float
    total: int
    per_image: PerImage | None = field(default=None, repr=False, compare=False)  # for paired intervals

    def to_dict(self) -> dict:
        """The scores, None for those without masks (JSON has no NaN)."""
        fields = ("miou", "pixel_accuracy", "pseudo_miou", "fidelity", "total")
        return {name: None if getattr(self, name) != getattr(self, name) else getattr(self, name) for name in fields}


class _PerImageRows:
    """One pass's per-image statistics: confusion against the masks and against SE's argmax, and KL sums."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.masks: list[Tensor] = []
        self.pseudo: list[Tensor] = []
        self.kl: list[Tensor] = []
        self.positions: list[int] = []

    def add(self, found: Tensor, masks: Tensor | None, reference: Tensor, kl: Tensor, ignore_index: int) -> None:
        if masks is not None:
            self.masks.append(per_image_confusion(found, masks, self.num_classes, ignore_index).cpu())
        self.pseudo.append(per_image_confusion(found, reference.long(), self.num_classes, ignore_index=-1).cpu())
        self.kl.append(kl.flatten(1).sum(1).double().cpu())
        self.positions += [kl[0].numel()] * len(kl)

    def __len__(self) -> int:
        return len(self.positions)

    def per_image(self) -> PerImage:
        labelled = bool(self.masks)
        columns = [torch.cat(self.masks).double()] if labelled else []
        columns += [torch.cat(self.pseudo).double(), torch.cat(self.kl)[:, None],
                    torch.tensor(self.positions, dtype=torch.float64)[:, None]]
        return PerImage(torch.cat(columns, 1).numpy(), functools.partial(_scores, self.num_classes, labelled))


def _scores(num_classes: int, labelled: bool, totals: np.ndarray) -> dict[str, np.ndarray]:
    """Every segmentation score from column totals (B, F) of :class:`_PerImageRows`: the one formula for a
    config's score (one row, all images once) and for its bootstrap resamples."""
    square = num_classes * num_classes
    offset = square if labelled else 0
    pseudo = totals[:, offset : offset + square].reshape(-1, num_classes, num_classes)
    scores = {"pseudo_miou": batched_miou(pseudo), "fidelity": totals[:, offset + square] / totals[:, offset + square + 1]}
    if labelled:
        confusion = totals[:, :square].reshape(-1, num_classes, num_classes)
        scores.update(miou=batched_miou(confusion), pixel_accuracy=batched_pixel_accuracy(confusion))
    else:
        scores.update(miou=np.full(len(totals), np.nan), pixel_accuracy=np.full(len(totals), np.nan))
    return scores


def pooled_log_probs(logits: Tensor) -> Tensor:
    """Per-position log-probabilities, average-pooled to at most ``POOLED`` positions and renormalised (float16)."""
    height, width = logits.shape[-2:]
    kernel = (math.ceil(height / POOLED[0]), math.ceil(width / POOLED[1]))
    log_probs = torch.log_softmax(logits.float(), dim=1)
    if kernel != (1, 1):
        log_probs = torch.log_softmax(F.avg_pool2d(log_probs, kernel, ceil_mode=True), dim=1)
    return log_probs.to(torch.float16)


def pixel_kl(reference: Tensor, log_probs: Tensor) -> Tensor:
    """KL(p_ref || p) over classes (dim 1) at each position, in nats, from log-probabilities."""
    reference, log_probs = reference.float(), log_probs.float()
    return (reference.exp() * (reference - log_probs)).sum(dim=1).clamp_min(0.0)  # no rounding below zero


def segmentation_batch_size(batch_size: int, input_size: tuple[int, int]) -> int:
    """``batch_size`` capped so a forward sees at most :data:`BATCH_PIXELS` input pixels (at least one image):
    memory stays bounded on 2048-wide inputs and small ones still run in full batches."""
    return max(1, min(batch_size, BATCH_PIXELS // (input_size[0] * input_size[1])))


@torch.no_grad()
def segmenter_classes(model: nn.Module, input_size: tuple[int, int]) -> int:
    """The number of classes a segmenter's logits have, from one forward on the meta device (no compute)."""
    try:
        meta = copy.deepcopy(model).to("meta").eval()
        return segmentation_logits(meta(torch.zeros(1, 3, *input_size, device="meta"))).shape[1]
    except (NotImplementedError, RuntimeError, TypeError):  # an op without a meta kernel: a small real forward
        was_training = model.training
        parameter = next(model.parameters())
        try:
            return segmentation_logits(model.eval()(torch.zeros(1, 3, 64, 64, device=parameter.device))).shape[1]
        finally:
            model.train(was_training)


def segmenter_normalisation(model: nn.Module, mean: Triple | None = None,
                            std: Triple | None = None) -> tuple[Triple, Triple]:
    """The mean and std a segmenter's inputs are normalised with: given, else the model's own data config
    (``pretrained_cfg``, as timm keeps it), else ImageNet's (torchvision's segmentation weights)."""
    own = getattr(model, "pretrained_cfg", None) or {}
    return (tuple(mean or own.get("mean") or IMAGENET_DEFAULT_MEAN), tuple(std or own.get("std") or IMAGENET_DEFAULT_STD))


class SegmentationScorer:
    """Scores tile configs of one segmentation model on one decoded :class:`~tilesearch.data.SegmentationSet`.

    The SE reference, computed once on first use, is kept memory-bounded: SE's argmax
    as uint8 at the masks' (input) resolution, and its log-probabilities as float16,
    average-pooled so each image keeps at most 128 x 256 positions. A config's output is
    pooled the same way before the KL, so fidelity compares pooled class distributions.
    Logits smaller than the masks are upsampled bilinearly before the argmax.
    """

    def __init__(
        self,
        model: nn.Module,
        images: SegmentationSet,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        batch_size: int = 8,
        device: torch.device | str | None = None,
        num_classes: int | None = None,
        ignore_index: int = 255,
        progress: bool = False,
    ) -> None:
        if len(images) == 0:
            raise TilesearchError("no images to score on")
        if batch_size < 1:
            raise TilesearchError(f"invalid batch size {batch_size}: expected a positive integer")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.images = images  # kept on the CPU: at 1024 x 2048 a batch at a time is what fits
        self.mean, self.std = mean, std
        self.batch_size = batch_size
        self.num_classes = num_classes if num_classes is not None else images.num_classes
        self.ignore_index = ignore_index
        self.block_names = [name for name, _ in find_se_modules(model)]
        self.progress = progress  # a bar per pass (off inside a search, whose own bar is live)

    @functools.cached_property
    def memory_format(self) -> torch.memory_format:
        """channels_last where it makes this model's forward faster on this device (measured once, on one image)."""
        sample = normalize(self.images.pixels[:1].to(self.device), self.mean, self.std)
        return fastest_memory_format(self.model, sample)

    def batches(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[Tensor, Tensor | None]]:
        """(normalised inputs on the device in the faster memory format, masks on the device, or None without
        masks) per batch of images ``start:stop`` (all by default)."""
        memory_format = self.memory_format
        stop = len(self.images) if stop is None else stop
        for begin in range(start, stop, self.batch_size):
            end = min(begin + self.batch_size, stop)
            pixels = self.images.pixels[begin:end].to(self.device, non_blocking=True)
            masks = self.images.masks
            yield (normalize(pixels, self.mean, self.std).contiguous(memory_format=memory_format),
                   None if masks is None else masks[begin:end].to(self.device))

    def _shown(self, description: str, start: int = 0, stop: int | None = None) -> Iterator[tuple[Tensor, Tensor | None]]:
        """:meth:`batches`, behind a transient progress bar when the scorer shows one."""
        if not self.progress:
            return self.batches(start, stop)
        from rich.progress import track

        stop = len(self.images) if stop is None else stop
        return track(self.batches(start, stop), total=-(-(stop - start) // self.batch_size), description=description,
                     transient=True)

    def _logits(self, inputs: Tensor) -> Tensor:
        return self._logits_checked(segmentation_logits(self.model(inputs)))

    def _logits_checked(self, logits: Tensor) -> Tensor:
        """The logits, once their class count is known to match the data's."""
        if self.num_classes is None:
            self.num_classes = logits.shape[1]
        elif logits.shape[1] != self.num_classes:
            raise DataError(f"the model outputs {logits.shape[1]} classes but the data has {self.num_classes}; "
                            f"expected a model trained on these {self.num_classes} classes")
        return logits

    def _predictions(self, logits: Tensor) -> Tensor:
        size = self.images.pixels.shape[-2:] if self.images.masks is None else self.images.masks.shape[-2:]
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits.float(), size=tuple(size), mode="bilinear", align_corners=False)
        return logits.argmax(dim=1)

    @functools.cached_property
    def _se_pass(self) -> tuple[Tensor, Tensor, SegmentationScore]:
        """SE's argmax (uint8 while K <= 256) and pooled log-probabilities of every image, on the CPU, and SE's score."""
        apply_tiles(self.model, GAP)
        self.model.eval()
        predictions, log_probs, rows = [], [], None
        with inference_context(self.device):
            for inputs, masks in self._shown("scoring SE"):
                logits = self._logits(inputs)
                found = self._predictions(logits)
                dtype = torch.uint8 if self.num_classes <= 256 else torch.int64
                predictions.append(found.to(dtype).cpu())
                pooled = pooled_log_probs(logits)
                log_probs.append(pooled.cpu())
                rows = rows or _PerImageRows(self.num_classes)
                rows.add(found, masks, found, pixel_kl(pooled, pooled), self.ignore_index)  # SE against itself
        return torch.cat(predictions), torch.cat(log_probs), self._score(rows.per_image())

    def _score(self, per_image: PerImage) -> SegmentationScore:
        scores = {name: float(value[0]) for name, value in per_image.scores(per_image.values.sum(0)[None]).items()}
        return SegmentationScore(**scores, total=len(per_image), per_image=per_image)

    def tally(self) -> SegmentationTally:
        """What the sensitivity scan accumulates per config, on this scorer's classes and masks."""
        return SegmentationTally(self)

    def score(self, tiles: TileChoice | TileConfig) -> SegmentationScore:
        """mIoU, pixel accuracy, pseudo-mIoU and fidelity of ``tiles`` on every image (the model is re-tiled in place)."""
        return collections.deque(self.score_stages(tiles), maxlen=1)[0]

    def score_stages(self, tiles: TileChoice | TileConfig, looks: Sequence[int] = ()) -> Iterator[SegmentationScore]:
        """The score on the first ``looks[0]`` images, then on the first ``looks[1]``, ..., and finally on every
        image, each one yielded only if the caller asks for it and no image forwarded twice."""
        config = tile_config(self.block_names, tiles)
        se_predictions, se_log_probs, se_score = self._se_pass
        if all(tile.is_gap for tile in config.values()):
            yield se_score
            return
        rows = _PerImageRows(self.num_classes)
        for start, stop in segments(looks, len(self.images)):
            if start:
                yield self._score(rows.per_image())
            apply_tiles(self.model, config)  # again after each look: the caller may have scored something else
            self.model.eval()
            for inputs, masks in self._shown("scoring", start, stop):
                reference = se_predictions[start : start + len(inputs)]
                with inference_context(self.device):
                    logits = self._logits(inputs)
                    kl = pixel_kl(se_log_probs[start : start + len(inputs)].to(self.device), pooled_log_probs(logits))
                    rows.add(self._predictions(logits), masks, reference.to(self.device), kl, self.ignore_index)
                start += len(inputs)
        yield self._score(rows.per_image())


class SegmentationTally:
    """A segmenter's scan scores of one config: mIoU and pixel accuracy (with masks), pseudo-mIoU and fidelity,
    accumulated per image and scored by the same formula as :meth:`SegmentationScorer.score`."""

    def __init__(self, scorer: SegmentationScorer) -> None:
        self.scorer = scorer
        self.rows: _PerImageRows | None = None

    def add(self, reference, output, masks: Tensor | None) -> None:
        scorer = self.scorer
        reference_logits, logits = segmentation_logits(reference), scorer._logits_checked(segmentation_logits(output))
        kl = pixel_kl(pooled_log_probs(reference_logits), pooled_log_probs(logits))
        self.rows = self.rows or _PerImageRows(scorer.num_classes)
        self.rows.add(scorer._predictions(logits), masks, scorer._predictions(reference_logits), kl, scorer.ignore_index)

    def values(self) -> dict[str, float]:
        """The scores, the headline first: mIoU with masks, pseudo-mIoU without."""
        per_image = self.rows.per_image()
        scores = {name: float(value[0]) for name, value in per_image.scores(per_image.values.sum(0)[None]).items()}
        order = ("miou", "pixel_accuracy", "pseudo_miou", "fidelity") if self.rows.masks else ("pseudo_miou", "fidelity")
        return {name: scores[name] for name in order}
