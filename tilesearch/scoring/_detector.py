"""Zero-shot mAP of a detector's tile config.

The paper's Table 5 replaces SE by TSE in EfficientDet and reports COCO
mAP@[.5:.95]. A :class:`DetectionScorer` scores a tile config of an effdet
model the same way on images decoded once (:mod:`tilesearch.data`): detections
are mapped back to the original image and evaluated with pycocotools. Without annotations the SE
model's own confident detections serve as ground truth ("pseudo-mAP"), a
label-free measure of how far tiling moved the detector. ``fidelity`` needs no
confident detection at all: it compares the dense class and box maps themselves
(:func:`detection_divergence`), so it ranks configs on any images, synthesised ones included.
"""

from __future__ import annotations

import contextlib
import functools
import io
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tilesearch.core import GAP, TileChoice, TileConfig, tile_config
from tilesearch.data import DetectionImages, normalize
from tilesearch.nn import apply_tiles, find_se_modules
from tilesearch.scoring._device import resolve_device


def coco_map(ground_truth, detections: dict[int, np.ndarray], image_ids: list[int]) -> tuple[float, float]:
    """COCO mAP@[.5:.95] and mAP@.5 of ``detections`` (per image: rows x1, y1, x2, y2, score, category)."""
    from pycocotools.cocoeval import COCOeval

    results = [
        {"image_id": image_id, "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
         "score": float(score), "category_id": int(category)}
        for image_id in image_ids
        for x1, y1, x2, y2, score, category in detections.get(image_id, np.zeros((0, 6)))
    ]
    if not results or not ground_truth.getAnnIds(imgIds=image_ids):
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        found = ground_truth.loadRes(results)
        evaluation = COCOeval(ground_truth, found, "bbox")
        evaluation.params.imgIds = list(image_ids)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return max(float(evaluation.stats[0]), 0.0), max(float(evaluation.stats[1]), 0.0)


def pseudo_ground_truth(detections: dict[int, np.ndarray], images: DetectionImages, categories: list[int], threshold: float):
    """A COCO index whose annotations are the SE model's detections scoring at least ``threshold``."""
    from pycocotools.coco import COCO

    annotations = []
    for image_id, rows in detections.items():
        for x1, y1, x2, y2, score, category in rows:
            if score >= threshold:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(category),
                                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                                    "area": float((x2 - x1) * (y2 - y1)), "iscrowd": 0})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": [{"id": i, "width": int(w), "height": int(h)} for i, (w, h) in zip(images.image_ids, images.sizes.tolist())],
            "annotations": annotations,
            "categories": [{"id": c} for c in categories],
        }
        coco.createIndex()
    return coco


def flatten_maps(class_out: list[torch.Tensor], box_out: list[torch.Tensor], num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """effdet's per-level maps as (B, anchors, classes) logits and (B, anchors, 4) box offsets, as effdet orders them."""
    batch = class_out[0].shape[0]
    classes = torch.cat([level.permute(0, 2, 3, 1).reshape(batch, -1, num_classes) for level in class_out], 1)
    boxes = torch.cat([level.permute(0, 2, 3, 1).reshape(batch, -1, 4) for level in box_out], 1)
    return classes, boxes


def detection_divergence(reference: tuple[torch.Tensor, torch.Tensor], output: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Per image: how far a detector's dense outputs moved from the reference's.

    Class maps: the Bernoulli KL(p_SE || p_tiled) of every (anchor, class) sigmoid, summed over classes and averaged
    over anchors (nats per anchor). Box maps: the L1 distance of the box offsets, averaged over anchors weighted by
    the reference's confidence (its highest class probability), so the boxes of anchors that detect count and
    background anchors do not. The divergence is their sum; zero when the outputs are equal.
    """
    (ref_classes, ref_boxes), (classes, boxes) = [(c.float(), b.float()) for c, b in (reference, output)]
    p = torch.sigmoid(ref_classes)
    kl = p * (F.logsigmoid(ref_classes) - F.logsigmoid(classes)) + (1 - p) * (F.logsigmoid(-ref_classes) - F.logsigmoid(-classes))
    class_term = kl.sum(dim=2).mean(dim=1)
    weight = p.amax(dim=2)
    box_term = (weight * (ref_boxes - boxes).abs().sum(dim=2)).sum(dim=1) / weight.sum(dim=1).clamp_min(1e-12)
    return class_term + box_term


@dataclass(frozen=True)
class DetectionScore:
    """mAP of one config against the annotations (if any) and against the SE model's detections, and the
    divergence of its dense outputs from SE's (when the scorer keeps them)."""

    map: float | None
    map50: float | None
    pseudo_map: float
    total: int
    fidelity: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class DetectionScorer:
    """Scores tile configs of one effdet model on decoded COCO images."""

    def __init__(
        self,
        model: nn.Module,
        images: DetectionImages,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        ground_truth=None,
        categories: list[int] | None = None,
        pseudo_threshold: float = 0.3,
        batch_size: int = 8,
        device: torch.device | str | None = None,
        keep_outputs: bool = False,
    ) -> None:
        from effdet import DetBenchPredict

        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.bench = DetBenchPredict(self.model).to(self.device).eval()
        self.images, self.ground_truth, self.batch_size = images, ground_truth, batch_size
        self.mean, self.std = mean, std
        if categories is None:
            categories = sorted(ground_truth.cats) if ground_truth is not None else list(range(1, model.config.num_classes + 1))
        self.categories, self.pseudo_threshold = categories, pseudo_threshold
        self.block_names = [name for name, _ in find_se_modules(model)]
        self.keep_outputs = keep_outputs  # keep SE's dense maps (float16, CPU; ~2 MB per image at 256 px) for fidelity

    @functools.cached_property
    def _se_pass(self) -> tuple[dict[int, np.ndarray], list[tuple[torch.Tensor, torch.Tensor]]]:
        return self._pass(GAP)

    @property
    def se_detections(self) -> dict[int, np.ndarray]:
        """The original SE model's detections (computed on first use)."""
        return self._se_pass[0]

    @functools.cached_property
    def pseudo(self):
        """Ground truth for pseudo-mAP: the SE model's confident detections."""
        return pseudo_ground_truth(self.se_detections, self.images, self.categories, self.pseudo_threshold)

    def detections(self, tiles: TileChoice | TileConfig) -> dict[int, np.ndarray]:
        """Detections per image id in original image coordinates under ``tiles``."""
        return self._pass(tiles)[0]

    @torch.inference_mode()
    def _pass(self, tiles: TileChoice | TileConfig) -> tuple[dict[int, np.ndarray], list[tuple[torch.Tensor, torch.Tensor]]]:
        """Detections per image id under ``tiles`` and, with ``keep_outputs``, the dense maps of each batch."""
        apply_tiles(self.model, tiles)
        self.model.eval()
        found, maps = {}, []
        hook = self.model.register_forward_hook(lambda _m, _i, out: maps.append(out)) if self.keep_outputs else None
        try:
            for start in range(0, len(self.images), self.batch_size):
                stop = start + self.batch_size
                inputs = normalize(self.images.pixels[start:stop].to(self.device), self.mean, self.std)
                info = {"img_scale": self.images.scales[start:stop].to(self.device),
                        "img_size": self.images.sizes[start:stop].to(self.device)}
                rows = self.bench(inputs, img_info=info).cpu().numpy()
                for image_id, detections in zip(self.images.image_ids[start:stop], rows):
                    found[image_id] = detections[detections[:, 4] > 0]
                if maps:  # float16 on both sides, so SE against its own record is exactly zero
                    classes, boxes = flatten_maps(*maps.pop(), self.model.config.num_classes)
                    maps.append((classes.to(torch.float16).cpu(), boxes.to(torch.float16).cpu()))
        finally:
            if hook is not None:
                hook.remove()
        return found, maps

    def score(self, tiles: TileChoice | TileConfig) -> DetectionScore:
        config = tile_config(self.block_names, tiles)
        found, maps = self._se_pass if all(tile.is_gap for tile in config.values()) else self._pass(config)
        ids = self.images.image_ids
        map_, map50 = coco_map(self.ground_truth, found, ids) if self.ground_truth is not None else (None, None)
        fidelity = None
        if self.keep_outputs:
            fidelity = float(torch.cat([detection_divergence(se, out) for se, out in zip(self._se_pass[1], maps)]).mean())
        return DetectionScore(map=map_, map50=map50, pseudo_map=coco_map(self.pseudo, found, ids)[0], total=len(ids),
                              fidelity=fidelity)
