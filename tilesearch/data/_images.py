"""Validation images, decoded and preprocessed once per run.

Images are decoded by timm's own eval transform in its "prefetcher" form, which
stops before normalisation and yields uint8 pixels, so a run keeps them as one
uint8 tensor (a quarter of float32's memory, optionally cached in the run
folder) and normalises each batch on the fly (:func:`~tilesearch.data.normalize`).
No trial ever decodes an image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from tilesearch.data._cache import cache_file, load_cache, save_cache
from tilesearch.data._decode import decode_all, refuse_skipped
from tilesearch.data._folders import image_folder
from tilesearch.data._preprocessing import Preprocessing


@dataclass
class ImageSet:
    """Decoded images (uint8, N x 3 x H x W) and their labels."""

    pixels: Tensor
    labels: Tensor
    classes: list[str]
    skipped: list[str] = field(default_factory=list)  # files that could not be read

    def __len__(self) -> int:
        return len(self.labels)


def decode_images(
    root: str | Path,
    preprocessing: Preprocessing,
    indices: list[int] | None = None,
    cache_dir: Path | None = None,
    description: str = "decoding images",
    strict: bool = False,
) -> ImageSet:
    """Decode (a subset of) an ImageFolder once into uint8 tensors, reusing ``cache_dir`` if given.

    An unreadable image is skipped with a warning (``ImageSet.skipped``), or refused when ``strict``."""
    from timm.data import create_transform

    dataset = image_folder(root)
    samples = dataset.samples if indices is None else [dataset.samples[i] for i in indices]
    cached = None if cache_dir is None else cache_file(cache_dir, Path(root), samples, preprocessing.to_dict())
    tensors = load_cache(cached, ("pixels", "labels"))
    if tensors is not None:
        refuse_skipped(tensors.get("skipped", []), strict)
        return ImageSet(tensors["pixels"], tensors["labels"], dataset.classes, tensors.get("skipped", []))
    transform = create_transform(
        input_size=(3, *preprocessing.input_size),
        interpolation=preprocessing.interpolation,
        crop_pct=preprocessing.crop_pct,
        crop_mode=preprocessing.crop_mode,
        mean=preprocessing.mean,
        std=preprocessing.std,
        use_prefetcher=True,  # stop at uint8 pixels; normalise per batch later
    )
    pixels = torch.empty((len(samples), 3, *preprocessing.input_size), dtype=torch.uint8)

    def decode_one(position: int, path: str) -> None:
        pixels[position] = torch.as_tensor(transform(dataset.loader(path)))  # uint8, numpy or tensor by timm version

    kept, skipped = decode_all([path for path, _ in samples], decode_one, strict, description)
    pixels = pixels[: len(kept)]  # a view: no copy when nothing was skipped
    labels = torch.tensor([samples[i][1] for i in kept], dtype=torch.long)
    save_cache(cached, {"pixels": pixels, "labels": labels, "skipped": skipped})
    return ImageSet(pixels, labels, dataset.classes, skipped)
