"""Detectors: COCO-format data, effdet's preprocessing, and mAP scores.

The paper's Table 5 replaces SE by TSE in EfficientDet and reports COCO
mAP@[.5:.95]. A :class:`DetectionScorer` scores a tile config of an effdet
model the same way: images are resized and padded as effdet expects
(``ResizePad``, uint8, decoded once), detections are mapped back to the
original image and evaluated with pycocotools. Without annotations the SE
model's own confident detections serve as ground truth ("pseudo-mAP"), a
label-free measure of how far tiling moved the detector.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from tilesearch.errors import TilesearchError
from tilesearch.tiled_se import apply_tiles
from tilesearch.tiles import GAP, TileChoice, TileConfig


def load_coco(images_dir: str | Path, annotations: str | Path):
    """A pycocotools COCO index of ``annotations``, checked against the files in ``images_dir``."""
    from pycocotools.coco import COCO

    images_dir, annotations = Path(images_dir), Path(annotations)
    if not annotations.is_file():
        raise TilesearchError(f"annotations file {str(annotations)!r} does not exist (expected COCO instances JSON)")
    if not images_dir.is_dir():
        raise TilesearchError(f"image folder {str(images_dir)!r} does not exist")
    try:
        data = json.loads(annotations.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise TilesearchError(f"annotations file {str(annotations)!r} is not JSON: {error}") from None
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise TilesearchError(f"annotations file {str(annotations)!r} is not COCO instances JSON (needs images, annotations, categories)")
    missing = [image["file_name"] for image in data["images"] if not (images_dir / image["file_name"]).is_file()]
    if missing:
        raise TilesearchError(
            f"annotations {str(annotations)!r} do not match the images in {str(images_dir)!r}: "
            f"{len(missing)} listed images are missing, e.g. {missing[0]!r}"
        )
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


def image_listing(images_dir: str | Path):
    """A COCO index of the images in a folder, without annotations (for label-free scoring)."""
    from PIL import Image
    from pycocotools.coco import COCO
    from torchvision.datasets.folder import IMG_EXTENSIONS

    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise TilesearchError(f"image folder {str(images_dir)!r} does not exist")
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise TilesearchError(f"image folder {str(images_dir)!r} holds no images")
    images = []
    for image_id, path in enumerate(files, start=1):
        with Image.open(path) as image:
            images.append({"id": image_id, "file_name": path.name, "width": image.width, "height": image.height})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": [], "categories": []}
        coco.createIndex()
    return coco


@dataclass
class DetectionImages:
    """Images resized and padded for the detector (uint8), and how to map boxes back."""

    pixels: Tensor  # (N, 3, S, S) uint8
    image_ids: list[int]
    scales: Tensor  # (N,) original / resized
    sizes: Tensor  # (N, 2) original (width, height)

    def __len__(self) -> int:
        return len(self.image_ids)


def decode_detection_images(
    images_dir: str | Path,
    coco,
    image_ids: list[int],
    image_size: tuple[int, int],
    mean: tuple[float, float, float],
    cache_dir: Path | None = None,
    description: str = "decoding images",
) -> DetectionImages:
    """effdet's eval preprocessing (ResizePad, fill with the mean colour) applied once, cached in ``cache_dir``."""
    from effdet.data.transforms import transforms_coco_eval
    from PIL import Image
    from rich.progress import track

    from tilesearch.data import cache_file, save_cache

    paths = [(str(Path(images_dir) / coco.imgs[i]["file_name"]), i) for i in image_ids]
    recipe = {"detector": "ResizePad", "size": list(image_size), "mean": list(mean)}
    cached = None if cache_dir is None else cache_file(cache_dir, Path(images_dir), paths, recipe)
    if cached is not None and cached.is_file():
        tensors = torch.load(cached, weights_only=True)
        return DetectionImages(tensors["pixels"], list(image_ids), tensors["scales"], tensors["sizes"])
    transform = transforms_coco_eval(image_size, interpolation="bilinear", use_prefetcher=True, fill_color="mean", mean=mean)
    pixels = torch.empty((len(image_ids), 3, *image_size), dtype=torch.uint8)
    scales, sizes = [], []
    for i, (path, image_id) in enumerate(track(paths, description=description, transient=True)):
        info = coco.imgs[image_id]
        with Image.open(path) as image:
            array, anno = transform(image.convert("RGB"), {})
        pixels[i] = torch.as_tensor(array)
        scales.append(anno["img_scale"])
        sizes.append((info["width"], info["height"]))
    images = DetectionImages(pixels, list(image_ids), torch.tensor(scales, dtype=torch.float32), torch.tensor(sizes))
    if cached is not None:
        save_cache(cached, {"pixels": images.pixels, "scales": images.scales, "sizes": images.sizes})
    return images


def detection_targets(coco, images: DetectionImages) -> tuple[Tensor, Tensor]:
    """Boxes (y1, x1, y2, x2 in the resized input's pixels) and classes per image, padded with class -1.

    effdet's convention: the class is the COCO category id, the anchor labeler drops classes below 0.
    """
    annotations = [coco.imgToAnns.get(image_id, []) for image_id in images.image_ids]
    most = max([1, *(len(found) for found in annotations)])
    boxes = torch.zeros((len(images), most, 4))
    classes = torch.full((len(images), most), -1, dtype=torch.long)
    for i, (found, scale) in enumerate(zip(annotations, images.scales.tolist())):
        for j, annotation in enumerate(a for a in found if not a.get("iscrowd") and min(a["bbox"][2:]) >= 1):
            x, y, w, h = annotation["bbox"]  # crowd and sub-pixel boxes are skipped, as effdet's CocoParser does
            boxes[i, j] = torch.tensor([y, x, y + h, x + w]) / scale
            classes[i, j] = annotation["category_id"]
    return boxes, classes


def detection_loss(
    model: nn.Module, images: DetectionImages, boxes: Tensor, classes: Tensor, normalize, device: torch.device
):
    """A ``loss_of(index, flip)`` for fine-tuning: effdet's focal + box loss on a batch, flips mirrored in the boxes."""
    from effdet import DetBenchTrain

    bench = DetBenchTrain(model).to(device)  # a new module is in training mode; the model keeps its own mode
    width = images.pixels.shape[-1]

    def loss_of(index: Tensor, flip: Tensor) -> Tensor:
        pixels = images.pixels[index]
        pixels = torch.where(flip[:, None, None, None], pixels.flip(-1), pixels)
        batch_boxes = boxes[index].clone()
        mirrored = batch_boxes[flip]
        batch_boxes[flip] = torch.stack([mirrored[..., 0], width - mirrored[..., 3], mirrored[..., 2], width - mirrored[..., 1]], -1)
        target = {"bbox": batch_boxes.to(device), "cls": classes[index].to(device)}
        return bench(normalize(pixels.to(device)), target)["loss"]

    return loss_of


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

        from tilesearch.score import default_device

        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.bench = DetBenchPredict(self.model).to(self.device).eval()
        self.images, self.ground_truth, self.batch_size = images, ground_truth, batch_size
        self.mean = torch.tensor(mean, device=self.device)[:, None, None]
        self.std = torch.tensor(std, device=self.device)[:, None, None]
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
            pixels = self.images.pixels[start:stop].to(self.device)
            inputs = pixels.float().div(255).sub(self.mean).div(self.std)
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


def write_coco_fixture(root: str | Path, n_images: int = 8, seed: int = 0, size: tuple[int, int] = (160, 128)) -> tuple[Path, Path]:
    """A small COCO-format data set drawn here: coloured boxes and discs (two categories) on noise.

    Returns (images folder, annotations JSON path); the same seed draws the same files.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    root = Path(root)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    width, height = size
    images, annotations = [], []
    for image_id in range(1, n_images + 1):
        canvas = Image.fromarray(rng.integers(60, 140, (height, width, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(1, 4))):
            w, h = (int(v) for v in rng.integers(16, 48, 2))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            category = int(rng.integers(1, 3))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.rectangle if category == 1 else draw.ellipse)([x, y, x + w - 1, y + h - 1], fill=colour)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        name = f"{image_id:06d}.png"
        canvas.save(images_dir / name)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "box"}, {"id": 2, "name": "disc"}]}))
    return images_dir, path


def evaluate_detection(
    model_name: str,
    images_dir: str | Path,
    tiles: TileChoice | TileConfig,
    annotations: str | Path | None = None,
    *,
    pretrained: bool = False,
    checkpoint: str | None = None,
    num_classes: int | None = None,
    input_size: int | None = None,
    limit: int | None = None,
    pseudo_threshold: float = 0.3,
    profile: str = "ideal",
    batch_size: int = 8,
    device: str | None = None,
) -> dict:
    """Score one config of an effdet detector: mAP against ``annotations`` and pseudo-mAP against SE."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from tilesearch.cost import buffer_report
    from tilesearch.discover import discover_se_blocks
    from tilesearch.models import default_input_size, load_model, model_source
    from tilesearch.tiled_se import find_se_modules
    from tilesearch.tiles import tile_config

    if model_source(model_name).zoo != "effdet":
        raise TilesearchError(f"--annotations is for detectors (effdet models such as efficientdet_d0), not {model_name!r}")
    if annotations is None:
        raise TilesearchError("give --annotations instances.json (COCO format) with a detector's --data IMAGES_DIR")
    coco = load_coco(images_dir, annotations)
    size = (input_size, input_size) if input_size else default_input_size(model_name)
    model = load_model(model_name, pretrained=pretrained, checkpoint=checkpoint, num_classes=num_classes, input_size=size)
    config = tile_config([name for name, _ in find_se_modules(model)], tiles)
    report = buffer_report(discover_se_blocks(model, size), config, profile)
    image_ids = sorted(coco.imgs)[:limit] if limit else sorted(coco.imgs)
    images = decode_detection_images(images_dir, coco, image_ids, size, IMAGENET_DEFAULT_MEAN)
    scorer = DetectionScorer(model, images, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ground_truth=coco,
                             pseudo_threshold=pseudo_threshold, batch_size=batch_size, device=device)
    se = scorer.score(GAP)
    return {
        **scorer.score(config).to_dict(),
        "se_map": se.map,
        "buffer": report.total,
        "se_buffer": report.se_total,
        "tiles": {name: str(tile) for name, tile in config.items()},
    }
