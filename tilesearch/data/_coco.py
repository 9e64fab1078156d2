"""COCO-format detection data: annotations checked against their images, effdet's preprocessing.

Images are resized and padded as effdet expects (``ResizePad``, filled with the
mean colour), decoded once to uint8 and cached like classifier images; boxes are
mapped to and from the resized input with each image's scale.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from tilesearch.core import DataError
from tilesearch.data._cache import cache_file, load_cache, save_cache
from tilesearch.data._decode import decode_all, refuse_skipped


def load_coco(images_dir: str | Path, annotations: str | Path):
    """A pycocotools COCO index of ``annotations``, checked against the files in ``images_dir``."""
    from pycocotools.coco import COCO

    images_dir, annotations = Path(images_dir), Path(annotations)
    if not annotations.is_file():
        raise DataError(f"annotations file {str(annotations)!r} does not exist (expected COCO instances JSON)")
    if not images_dir.is_dir():
        raise DataError(f"image folder {str(images_dir)!r} does not exist")
    try:
        data = json.loads(annotations.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"annotations file {str(annotations)!r} is not JSON: {error}") from error
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
        raise DataError(f"annotations file {str(annotations)!r} is not COCO instances JSON (needs images, annotations, categories)")
    missing = [image["file_name"] for image in data["images"] if not (images_dir / image["file_name"]).is_file()]
    if missing:
        raise DataError(
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
        raise DataError(f"image folder {str(images_dir)!r} does not exist")
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise DataError(f"image folder {str(images_dir)!r} holds no images")
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
    skipped: list[str] = field(default_factory=list)  # files that could not be read (not in image_ids)

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
    strict: bool = False,
) -> DetectionImages:
    """effdet's eval preprocessing (ResizePad, fill with the mean colour) applied once, cached in ``cache_dir``.

    An unreadable image is skipped with a warning (``DetectionImages.skipped``), or refused when ``strict``."""
    from effdet.data.transforms import transforms_coco_eval
    from PIL import Image

    paths = [(str(Path(images_dir) / coco.imgs[i]["file_name"]), i) for i in image_ids]
    recipe = {"detector": "ResizePad", "size": list(image_size), "mean": list(mean)}
    cached = None if cache_dir is None else cache_file(cache_dir, Path(images_dir), paths, recipe)
    tensors = load_cache(cached, ("pixels", "scales", "sizes"))
    if tensors is not None:
        refuse_skipped(tensors.get("skipped", []), strict)
        ids = tensors["image_ids"].tolist() if "image_ids" in tensors else list(image_ids)
        return DetectionImages(tensors["pixels"], ids, tensors["scales"], tensors["sizes"], tensors.get("skipped", []))
    transform = transforms_coco_eval(image_size, interpolation="bilinear", use_prefetcher=True, fill_color="mean", mean=mean)
    pixels = torch.empty((len(image_ids), 3, *image_size), dtype=torch.uint8)
    scales = []

    def decode_one(position: int, path: str) -> None:
        with Image.open(path) as image:
            array, anno = transform(image.convert("RGB"), {})
        pixels[position] = torch.as_tensor(array)
        scales.append(anno["img_scale"])

    kept, skipped = decode_all([path for path, _ in paths], decode_one, strict, description)
    ids = [image_ids[i] for i in kept]
    sizes = torch.tensor([(coco.imgs[i]["width"], coco.imgs[i]["height"]) for i in ids]).reshape(-1, 2)
    images = DetectionImages(pixels[: len(kept)], ids, torch.tensor(scales, dtype=torch.float32), sizes, skipped)
    save_cache(cached, {"pixels": images.pixels, "scales": images.scales, "sizes": images.sizes,
                        "image_ids": torch.tensor(ids, dtype=torch.long), "skipped": skipped})
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
