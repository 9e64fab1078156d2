"""Validation images, decoded and preprocessed once per run.

Images are decoded by timm's own eval transform in its "prefetcher" form, which
stops before normalisation and yields uint8 pixels, so a run keeps them as one
uint8 tensor (a quarter of float32's memory, optionally cached in the run
folder) and normalises each batch on the fly (:func:`~tilesearch.data.normalize`).
No trial ever decodes an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from tilesearch.data._cache import cache_file, load_cache, save_cache
from tilesearch.data._folders import image_folder
from tilesearch.data._preprocessing import Preprocessing


@dataclass
class ImageSet:
    """Decoded images (uint8, N x 3 x H x W) and their labels."""

    pixels: Tensor
    labels: Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def decode_images(
    root: str | Path,
    preprocessing: Preprocessing,
    indices: list[int] | None = None,
    cache_dir: Path | None = None,
    description: str = "decoding images",
) -> ImageSet:
    """Decode (a subset of) an ImageFolder once into uint8 tensors, reusing ``cache_dir`` if given."""
    from rich.progress import track
    from timm.data import create_transform

    dataset = image_folder(root)
    samples = dataset.samples if indices is None else [dataset.samples[i] for i in indices]
    cached = None if cache_dir is None else cache_file(cache_dir, Path(root), samples, preprocessing.to_dict())
    tensors = load_cache(cached, ("pixels", "labels"))
    if tensors is not None:
        return ImageSet(tensors["pixels"], tensors["labels"], dataset.classes)
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
    for i, (path, _) in enumerate(track(samples, description=description, transient=True)):
        pixels[i] = torch.as_tensor(transform(dataset.loader(path)))  # uint8, numpy or tensor by timm version
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)
    save_cache(cached, {"pixels": pixels, "labels": labels})
    return ImageSet(pixels, labels, dataset.classes)
