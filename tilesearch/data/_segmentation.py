"""Semantic-segmentation data: images paired with PNG label maps, decoded once to uint8 and cached.

Images and masks pair by file stem; Cityscapes' own layout is read as it is
(``leftImg8bit/val`` with ``gtFine/val``: ``X_leftImg8bit.png`` pairs with
``X_gtFine_labelTrainIds.png``). Each image is resized whole (bilinear, no crop)
to the input size and its mask with nearest neighbour, so labels stay labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from tilesearch.core import DataError
from tilesearch.data._cache import cache_file, load_cache, save_cache
from tilesearch.data._decode import decode_all, refuse_skipped

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CITYSCAPES_IMAGE = "_leftImg8bit"
CITYSCAPES_MASK = "_gtFine_labelTrainIds"
CITYSCAPES_OTHER = "_gtFine_"  # _color, _instanceIds, _labelIds: not train-id label maps
SHOWN = 3  # stems named in an error


@dataclass
class SegmentationSet:
    """Decoded images (uint8, N x 3 x H x W) and their label maps (N x H x W; None when unlabelled)."""

    pixels: Tensor
    masks: Tensor | None
    names: list[str]  # image stems
    skipped: list[str] = field(default_factory=list)  # files that could not be read
    num_classes: int | None = None

    def __len__(self) -> int:
        return len(self.pixels)


def _image_stem(path: Path) -> str:
    return path.stem.removesuffix(CITYSCAPES_IMAGE)


def _folder(path: str | Path, what: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{what} folder {str(folder)!r} does not exist (expected a folder of {what})")
    return folder


def _find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _find_masks(folder: Path) -> dict[str, Path]:
    """Label maps by common stem: ``X.png`` or Cityscapes' ``X_gtFine_labelTrainIds.png``."""
    masks: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.png")):
        if CITYSCAPES_OTHER in path.stem and not path.stem.endswith(CITYSCAPES_MASK):
            continue
        stem = path.stem.removesuffix(CITYSCAPES_MASK)
        if stem in masks:
            raise DataError(f"masks {str(masks[stem])!r} and {str(path)!r} share the stem {stem!r}; "
                            f"expected one PNG label map per image stem")
        masks[stem] = path
    return masks


def segmentation_pairs(images: str | Path, masks: str | Path | None) -> list[tuple[Path, Path | None]]:
    """(image, mask) per image under ``images`` (jpg/jpeg/png/bmp/webp, recursive, sorted), paired by stem.

    Masks are PNG label maps under ``masks`` named after the image (``X.png``), or
    Cityscapes' ``X_gtFine_labelTrainIds.png`` for ``X_leftImg8bit.png``; other gtFine
    files are ignored. Without ``masks`` every image pairs with None (label-free scoring).
    """
    found = _find_images(_folder(images, "images"))
    if not found:
        raise DataError(f"image folder {str(images)!r} holds no images (expected {', '.join(IMAGE_SUFFIXES)})")
    if masks is None:
        return [(path, None) for path in found]
    by_stem = _find_masks(_folder(masks, "masks"))
    missing = [_image_stem(path) for path in found if _image_stem(path) not in by_stem]
    if missing:
        shown = ", ".join(repr(stem) for stem in missing[:SHOWN]) + (", ..." if len(missing) > SHOWN else "")
        raise DataError(f"{len(missing)} of {len(found)} images have no mask in {str(masks)!r} ({shown}); expected "
                        f"STEM.png or STEM{CITYSCAPES_MASK}.png for each image")
    return [(path, by_stem[_image_stem(path)]) for path in found]


class _Refused(Exception):
    """Carries a DataError past :func:`decode_all`, which treats ValueErrors (DataError is one) as unreadable files."""

    def __init__(self, error: DataError) -> None:
        super().__init__(str(error))
        self.error = error


def _read_image(path: Path, size: tuple[int, int]):
    """The image's original (width, height) and the image as RGB, resized: a uint8 tensor (3, H, W)."""
    from PIL import Image

    with Image.open(path) as image:
        original = image.size
        resized = image.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    return original, torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)


def _read_mask(path: Path, size: tuple[int, int], image_size: tuple[int, int]) -> Tensor:
    """The label map resized with nearest neighbour to (H, W); refuses one whose size differs from its image's."""
    from PIL import Image

    with Image.open(path) as mask:
        if mask.size != image_size:
            raise _Refused(DataError(f"mask {str(path)!r} is {mask.size[0]}x{mask.size[1]} but its image is "
                                     f"{image_size[0]}x{image_size[1]} (width x height); expected the same size"))
        if mask.mode not in ("1", "L", "P", "I", "I;16"):
            raise _Refused(DataError(f"mask {str(path)!r} has mode {mask.mode!r}; expected a one-channel "
                                     f"PNG label map (mode 1, L, P or I)"))
        labels = np.asarray(mask.resize((size[1], size[0]), Image.NEAREST))
    return torch.from_numpy(labels.astype(np.int64))


def _check_labels(path: Path, labels: Tensor, num_classes: int | None, ignore_index: int) -> None:
    if num_classes is None or labels.numel() == 0 or int(labels.max()) < num_classes:
        return
    values = labels.unique()
    bad = values[(values >= num_classes) & (values != ignore_index)]
    if len(bad):
        raise _Refused(DataError(f"mask {str(path)!r} holds label {int(bad[0])}, but there are {num_classes} "
                                 f"classes; expected labels 0..{num_classes - 1} or the ignore index {ignore_index}"))


def decode_segmentation(
    pairs: list[tuple[Path, Path | None]],
    input_size: tuple[int, int],
    *,
    cache_dir: Path | None = None,
    description: str = "decoding images",
    ignore_index: int = 255,
    num_classes: int | None = None,
    strict: bool = False,
) -> SegmentationSet:
    """Decode each image once to uint8 at (height, width) ``input_size`` and its mask alike, cached in ``cache_dir``.

    Images are resized whole (bilinear, no crop), masks with nearest neighbour; masks
    stay uint8 while every label is below 256. A mask whose size differs from its
    image's, or (with ``num_classes``) that holds a label that is neither a class nor
    ``ignore_index``, is refused with a :class:`DataError`. An unreadable file is
    skipped with a warning (``SegmentationSet.skipped``), or refused when ``strict``.
    """
    if not pairs:
        raise DataError("no images to decode (expected at least one image, mask pair)")
    labelled = pairs[0][1] is not None
    if any((mask is not None) != labelled for _, mask in pairs):
        raise DataError("some images have masks and some have none; expected a mask for every image or for none")
    size = (int(input_size[0]), int(input_size[1]))
    cached = _cache_path(pairs, size, cache_dir, ignore_index, num_classes)
    tensors = load_cache(cached, ("pixels", "masks") if labelled else ("pixels",))
    if tensors is not None:
        refuse_skipped(tensors.get("skipped", []), strict)
        return SegmentationSet(tensors["pixels"], tensors.get("masks"), list(tensors["names"]),
                               tensors.get("skipped", []), num_classes)
    images = _decode(pairs, size, labelled, description, ignore_index, num_classes, strict)
    save_cache(cached, {"pixels": images.pixels, "names": images.names, "skipped": images.skipped,
                        **({"masks": images.masks} if labelled else {})})
    return images


def _cache_path(pairs, size, cache_dir, ignore_index, num_classes) -> Path | None:
    """Keyed by every image and mask file and by the recipe (the label checks included)."""
    if cache_dir is None:
        return None
    files = [(str(image), 0) for image, _ in pairs] + [(str(mask), 1) for _, mask in pairs if mask is not None]
    root = Path(os.path.commonpath([str(Path(image).resolve().parent) for image, _ in pairs]))
    recipe = {"segmentation": "bilinear+nearest", "size": list(size), "ignore_index": ignore_index,
              "num_classes": num_classes}
    return cache_file(cache_dir, root, files, recipe)


def _decode(pairs, size, labelled, description, ignore_index, num_classes, strict) -> SegmentationSet:
    pixels = torch.empty((len(pairs), 3, *size), dtype=torch.uint8)
    masks = [torch.empty((len(pairs), *size), dtype=torch.uint8)] if labelled else None  # widened to int64 if needed
    mask_of = {str(image): mask for image, mask in pairs}

    def decode_one(position: int, path: str) -> None:
        original, image = _read_image(Path(path), size)
        pixels[position] = image
        if masks is None:
            return
        labels = _read_mask(mask_of[path], size, original)
        _check_labels(mask_of[path], labels, num_classes, ignore_index)
        if masks[0].dtype == torch.uint8 and labels.numel() and (int(labels.max()) > 255 or int(labels.min()) < 0):
            masks[0] = masks[0].long()
        masks[0][position] = labels

    try:
        kept, skipped = decode_all([str(image) for image, _ in pairs], decode_one, strict, description)
    except _Refused as refused:
        raise refused.error from None
    names = [_image_stem(Path(pairs[i][0])) for i in kept]
    return SegmentationSet(pixels[: len(kept)], None if masks is None else masks[0][: len(kept)], names,
                           skipped, num_classes)
