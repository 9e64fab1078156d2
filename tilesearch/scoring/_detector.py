"""Zero-shot mAP of a detector's tile config.

The paper's Table 5 replaces SE by TSE in EfficientDet and reports COCO
mAP@[.5:.95]. A :class:`DetectionScorer` scores a tile config of an effdet
model the same way on images decoded once (:mod:`tilesearch.data`): detections
are mapped back to the original image and evaluated with pycocotools. Without annotations the SE
model's own confident detections serve as ground truth ("pseudo-mAP"), a
label-free measure of how far tiling moved the detector.
"""

from __future__ import annotations

import contextlib
import functools
import io
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from tilesearch.core import GAP, TileChoice, TileConfig
from tilesearch.data import DetectionImages, normalize
from tilesearch.nn import apply_tiles
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


@dataclass(frozen=True)
class DetectionScore:
    """mAP of one config against the annotations (if any) and against the SE model's detections."""

    map: float | None
    map50: float | None
    pseudo_map: float
    total: int

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

    @functools.cached_property
    def se_detections(self) -> dict[int, np.ndarray]:
        """The original SE model's detections (computed on first use)."""
        return self.detections(GAP)

    @functools.cached_property
    def pseudo(self):
        """Ground truth for pseudo-mAP: the SE model's confident detections."""
        return pseudo_ground_truth(self.se_detections, self.images, self.categories, self.pseudo_threshold)

    @torch.inference_mode()
    def detections(self, tiles: TileChoice | TileConfig) -> dict[int, np.ndarray]:
        """Detections per image id in original image coordinates under ``tiles``."""
        apply_tiles(self.model, tiles)
        self.model.eval()
        found = {}
        for start in range(0, len(self.images), self.batch_size):
            stop = start + self.batch_size
            inputs = normalize(self.images.pixels[start:stop].to(self.device), self.mean, self.std)
            info = {"img_scale": self.images.scales[start:stop].to(self.device),
                    "img_size": self.images.sizes[start:stop].to(self.device)}
            rows = self.bench(inputs, img_info=info).cpu().numpy()
            for image_id, detections in zip(self.images.image_ids[start:stop], rows):
                found[image_id] = detections[detections[:, 4] > 0]
        return found

    def score(self, tiles: TileChoice | TileConfig) -> DetectionScore:
        found = self.detections(tiles)
        ids = self.images.image_ids
        map_, map50 = coco_map(self.ground_truth, found, ids) if self.ground_truth is not None else (None, None)
        return DetectionScore(map=map_, map50=map50, pseudo_map=coco_map(self.pseudo, found, ids)[0], total=len(ids))
