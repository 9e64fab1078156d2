"""Zero-shot score of a tile config: the SE weights assigned unchanged.

Vosco et al. (section 4.3, Table 2, "TSE^aw") replace SE by TSE in a trained
network without retraining and measure the accuracy lost. A :class:`Scorer`
holds one model, tiled in place and re-tiled per config, and the decoded
validation images; each score is one pass over them. Besides top-1 accuracy it
reports label-free fidelity to the original SE model: the fraction of images
whose top-1 prediction agrees with SE's.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from tilesearch.core import GAP, DataError, TileChoice, TileConfig, TilesearchError, tile_config
from tilesearch.data import ImageSet, Preprocessing
from tilesearch.nn import apply_tiles, find_se_modules
from tilesearch.scoring._device import fastest_memory_format, inference_context, resolve_device, segments
from tilesearch.scoring._intervals import PerImage, mean_scores

PER_IMAGE_SCORES = mean_scores(("accuracy", "agreement", "kl", "fidelity"))


@dataclass(frozen=True)
class Score:
    """Accuracy of one config on one image set, and its fidelity to the SE model.

    ``agreement`` is the fraction of images whose top-1 prediction equals SE's and
    ``kl`` the mean KL(p_SE || p_tiled): both need no labels, and both vary less
    than accuracy on a small subset (a changed prediction counts even when SE
    was wrong too).
    """

    accuracy: float
    correct: int
    total: int
    agreement: float
    kl: float
    per_image: PerImage | None = field(default=None, repr=False, compare=False)  # for paired intervals

    @property
    def fidelity(self) -> float:
        """A classifier's output divergence from SE (the task-general ``fidelity``): its logits' KL."""
        return self.kl

    def to_dict(self) -> dict:
        fields = ("accuracy", "correct", "total", "agreement", "kl")
        return {**{name: getattr(self, name) for name in fields}, "fidelity": self.fidelity}


def kl_divergence(reference_logits: Tensor, logits: Tensor) -> Tensor:
    """Per-image KL(p_SE || p_tiled) in nats: how far the tiled model's prediction moved."""
    reference = torch.log_softmax(reference_logits.float(), dim=1)
    tiled = torch.log_softmax(logits.float(), dim=1)
    return (reference.exp() * (reference - tiled)).sum(dim=1)


def model_num_classes(model: nn.Module) -> int | None:
    """Output classes of a classifier's head, where the model says."""
    if isinstance(getattr(model, "num_classes", None), int):
        return model.num_classes
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return heads[-1].out_features if heads else None


class ClassifierTally:
    """A classifier's scan scores of one config: accuracy, agreement with SE and KL from SE (= fidelity)."""

    def __init__(self) -> None:
        self.correct, self.agree, self.kl, self.count = 0, 0, 0.0, 0

    def add(self, reference: Tensor, logits: Tensor, labels: Tensor) -> None:
        top1 = logits.argmax(1)
        self.correct += int((top1 == labels).sum())
        self.agree += int((top1 == reference.argmax(1)).sum())
        self.kl += float(kl_divergence(reference, logits).sum())
        self.count += len(top1)

    def values(self) -> dict[str, float]:
        kl = self.kl / self.count
        return {"accuracy": self.correct / self.count, "agreement": self.agree / self.count, "kl": kl, "fidelity": kl}


class Scorer:
    """Scores tile configs of one classifier on one decoded image set."""

    def __init__(
        self,
        model: nn.Module,
        images: ImageSet,
        preprocessing: Preprocessing,
        batch_size: int = 256,
        device: torch.device | str | None = None,
    ) -> None:
        if len(images) == 0:
            raise TilesearchError("no images to score on")
        if batch_size < 1:
            raise TilesearchError(f"invalid batch size {batch_size}: expected a positive integer")
        classes = model_num_classes(model)
        if images.classes and classes is not None and classes != len(images.classes):
            raise DataError(
                f"the data has {len(images.classes)} classes but the model's head has {classes} outputs; "
                f"pass --num-classes {len(images.classes)} with a checkpoint trained on these classes"
            )
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cuda":  # uint8 images are small: keep them on the GPU, no copy per trial
            images = ImageSet(images.pixels.to(self.device), images.labels, images.classes)
        self.images = images
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.block_names = [name for name, _ in find_se_modules(model)]

    @functools.cached_property
    def se_logits(self) -> Tensor:
        """The original SE model's logits, the reference of agreement and KL (computed on first use)."""
        return self.logits(GAP)

    @functools.cached_property
    def se_predictions(self) -> Tensor:
        return self.se_logits.argmax(dim=1)

    @functools.cached_property
    def memory_format(self) -> torch.memory_format:
        """channels_last where it makes this model's forward faster on this device (measured once, on a few images)."""
        sample = self.preprocessing.normalize(self.images.pixels[: min(self.batch_size, 32)].to(self.device))
        return fastest_memory_format(self.model, sample)

    def batches(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """(normalised inputs on the device, in the faster memory format, labels) per batch of images
        ``start:stop`` (all by default), from the cached uint8 images."""
        memory_format = self.memory_format
        stop = len(self.images) if stop is None else stop
        for begin in range(start, stop, self.batch_size):
            end = min(begin + self.batch_size, stop)
            pixels = self.images.pixels[begin:end].to(self.device, non_blocking=True)
            inputs = self.preprocessing.normalize(pixels).contiguous(memory_format=memory_format)
            yield inputs, self.images.labels[begin:end].to(self.device)

    def _logit_batches(self, tiles: TileChoice | TileConfig, start: int = 0, stop: int | None = None) -> Iterator[Tensor]:
        """Logits (float, on the CPU) batch by batch of images ``start:stop`` under ``tiles`` (re-tiled in place)."""
        apply_tiles(self.model, tiles)
        for inputs, _ in self.batches(start, stop):
            with inference_context(self.device):
                logits = self.model(inputs)
            yield logits.float().cpu()

    def logits(self, tiles: TileChoice | TileConfig) -> Tensor:
        """Logits of every image under ``tiles`` (the model is re-tiled in place)."""
        return torch.cat(list(self._logit_batches(tiles)))

    def predictions(self, tiles: TileChoice | TileConfig) -> Tensor:
        return self.logits(tiles).argmax(dim=1)

    tally = ClassifierTally  # what the sensitivity scan accumulates per config

    def score(self, tiles: TileChoice | TileConfig) -> Score:
        """Accuracy, agreement and KL of ``tiles`` on every image."""
        return collections.deque(self.score_stages(tiles), maxlen=1)[0]

    def score_stages(self, tiles: TileChoice | TileConfig, looks: Sequence[int] = ()) -> Iterator[Score]:
        """The score on the first ``looks[0]`` images, then on the first ``looks[1]``, ..., and finally on every
        image, each one yielded only if the caller asks for it and no image forwarded twice. Early stopping
        (:mod:`tilesearch.search`) reads the looks and may stop after any of them."""
        config = tile_config(self.block_names, tiles)
        se_logits = self.se_logits  # before the model is re-tiled for ``config``: SE's pass re-tiles it to GAP
        if all(tile.is_gap for tile in config.values()):
            yield self._score(se_logits)
            return
        parts: list[Tensor] = []
        for start, stop in segments(looks, len(self.images)):
            if start:
                yield self._score(torch.cat(parts))
            parts.extend(self._logit_batches(config, start, stop))
        yield self._score(torch.cat(parts))

    def _score(self, logits: Tensor) -> Score:
        """The score of the logits of the first ``len(logits)`` images."""
        total = len(logits)
        predictions = logits.argmax(dim=1)
        right = (predictions == self.images.labels[:total]).double()
        agrees = (predictions == self.se_predictions[:total]).double()
        divergence = kl_divergence(self.se_logits[:total], logits).double()
        correct, agree = int(right.sum()), int(agrees.sum())
        per_image = PerImage(torch.stack([right, agrees, divergence, divergence, torch.ones(total, dtype=torch.float64)],
                                         1).numpy(), PER_IMAGE_SCORES)
        return Score(accuracy=correct / total, correct=correct, total=total, agreement=agree / total,
                     kl=float(divergence.mean()), per_image=per_image)

