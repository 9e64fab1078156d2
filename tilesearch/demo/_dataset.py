"""The offline demo's data set: a synthetic colour-constancy task where spatial context matters.

The task needs spatial context the way SE provides it. Each 64x64 image shows
one large disc or square on a Mondrian background (8-pixel patches of random
surface colours averaging mid-grey), and the whole scene is lit by a random
coloured illuminant and exposure. The class is the object's *surface* colour
(eight hues), which only the illuminant tells apart from its apparent colour,
and the illuminant is best estimated from the whole image (grey world): the
global average pool of an SE block does exactly that and rescales channels.
Tiles that cover much of the background (``7xW`` and larger) still see the
illuminant; small ones (``3x3``, ``1x1``) see mostly the object itself, so the
zero-shot accuracy of a tiled model falls with the tile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from tilesearch.data import normalize
from tilesearch.zoo._demo import IMAGE_SIZE, MEAN, STD

# Surface colours (RGB reflectance) in alphabetical order, which is ImageFolder's class order.
CLASS_COLOURS: dict[str, tuple[float, float, float]] = {
    "blue": (0.20, 0.30, 0.85),
    "cyan": (0.20, 0.75, 0.80),
    "green": (0.25, 0.75, 0.25),
    "orange": (0.90, 0.55, 0.15),
    "pink": (0.90, 0.45, 0.70),
    "purple": (0.60, 0.25, 0.80),
    "red": (0.85, 0.20, 0.20),
    "yellow": (0.85, 0.85, 0.20),
}
CLASSES = tuple(CLASS_COLOURS)
SPLITS = ("train", "val")

CELL = 8  # Mondrian patch size in pixels
OBJECT_RADIUS = (8.0, 12.0)  # disc radius range in pixels (squares get about the same area)
ILLUMINANT_SIGMA = 0.35  # std of the log gain per channel
EXPOSURE = (0.6, 1.0)
OBJECT_JITTER = 0.03  # std of the object's reflectance around its class colour
PIXEL_NOISE = 0.03


def _split_rng(split: str, seed: int) -> np.random.Generator:
    """An independent random stream per (split, seed)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return np.random.default_rng([seed, SPLITS.index(split)])


def _mondrian(rng: np.random.Generator) -> np.ndarray:
    """Background reflectance: square patches of random colour at a random offset, (H, W, 3)."""
    cells = IMAGE_SIZE // CELL + 1
    patches = rng.uniform(0.15, 0.85, (cells, cells, 3))
    full = patches.repeat(CELL, axis=0).repeat(CELL, axis=1)
    dy, dx = rng.integers(0, CELL, 2)
    return full[dy : dy + IMAGE_SIZE, dx : dx + IMAGE_SIZE]


def _object_mask(rng: np.random.Generator) -> np.ndarray:
    """A disc or a square of random size at a random position inside the image, (H, W) bool."""
    radius = rng.uniform(*OBJECT_RADIUS)
    cy, cx = rng.uniform(radius + 1, IMAGE_SIZE - radius - 1, 2)
    yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
    if rng.random() < 0.5:
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    half = 0.85 * radius  # about the disc's area
    return (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)


def render_image(rng: np.random.Generator, label: int) -> np.ndarray:
    """One scene of class ``label`` as uint8 (H, W, 3)."""
    reflectance = _mondrian(rng)
    colour = np.asarray(CLASS_COLOURS[CLASSES[label]]) + rng.normal(0, OBJECT_JITTER, 3)
    reflectance[_object_mask(rng)] = np.clip(colour, 0, 1)
    light = np.exp(rng.normal(0, ILLUMINANT_SIGMA, 3)) * rng.uniform(*EXPOSURE)
    radiance = reflectance * light + rng.normal(0, PIXEL_NOISE, reflectance.shape)
    return np.round(np.clip(radiance, 0, 1) * 255).astype(np.uint8)


def render_split(split: str, n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` images of every class: uint8 (N, H, W, 3) and int64 labels (N,)."""
    rng = _split_rng(split, seed)
    labels = np.repeat(np.arange(len(CLASSES)), n_per_class)
    images = np.stack([render_image(rng, int(label)) for label in labels])
    return images, labels


def write_demo_dataset(root: Path, split: str, n_per_class: int, seed: int) -> Path:
    """Render a split as PNGs in torchvision ImageFolder layout, ``root/split/<class>/*.png``; return its folder."""
    images, labels = render_split(split, n_per_class, seed)
    folder = Path(root) / split
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(folder / CLASSES[label] / f"{index:05d}.png")
    return folder


def to_tensor(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), as timm's eval transform gives it."""
    return normalize(torch.from_numpy(images).permute(0, 3, 1, 2), MEAN, STD)


def dataset_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images in [0, 1] (how MEAN and STD were chosen)."""
    x = images.reshape(-1, 3) / 255.0
    return x.mean(0).tolist(), x.std(0).tolist()
