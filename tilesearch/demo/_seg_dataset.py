"""The segmentation demo's data set: colour constancy per pixel, where global context matters.

Each 64x96 (height x width) scene is a Mondrian background (8-pixel patches of
random surface colours averaging mid-grey) with one to three objects (discs,
ellipses, rectangles) painted on it, the later ones over the earlier, all lit
by one random coloured illuminant and exposure. A pixel's label is the
*surface* colour class of the object it shows (seven hues), or background
(class 0). An object's apparent colour is its surface colour times the
illuminant, so labelling its pixels needs the illuminant, which is best
estimated from the whole image (grey world): the global average pool of an SE
block (and LR-ASPP's ``scale`` branch) does exactly that. Small tiles see
mostly the object itself, so a tiled model's zero-shot mIoU falls with the tile.

A scene is drawn from a :class:`Scene` (background, objects, illuminant,
noise), so it can be mirrored (:func:`mirror_scene`) and redrawn exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from tilesearch.data import normalize
from tilesearch.zoo._demo_segmenter import IMAGE_SIZE, MEAN, NUM_CLASSES, STD

BACKGROUND = 0
IGNORE_INDEX = 255  # a mask value no class has; the training loss and mIoU skip it
# Surface colours (RGB reflectance) of classes 1..7; class 0 is the background.
SURFACE_COLOURS: dict[str, tuple[float, float, float]] = {
    "blue": (0.20, 0.30, 0.85),
    "cyan": (0.20, 0.75, 0.80),
    "green": (0.25, 0.75, 0.25),
    "orange": (0.90, 0.55, 0.15),
    "purple": (0.60, 0.25, 0.80),
    "red": (0.85, 0.20, 0.20),
    "yellow": (0.85, 0.85, 0.20),
}
SEG_CLASSES = ("background", *SURFACE_COLOURS)
SPLITS = ("train", "val")
assert len(SEG_CLASSES) == NUM_CLASSES

HEIGHT, WIDTH = IMAGE_SIZE
CELL = 8  # Mondrian patch size in pixels
OBJECTS = (1, 3)  # objects per scene, inclusive
OBJECT_RADIUS = (9.0, 15.0)  # radius range in pixels; rectangles get about a disc's area
SHAPES = ("disc", "ellipse", "rect")
ILLUMINANT_SIGMA = 0.35  # std of the log gain per channel
EXPOSURE = (0.6, 1.0)
OBJECT_JITTER = 0.03  # std of an object's reflectance around its class colour
PIXEL_NOISE = 0.03


@dataclass(frozen=True)
class SceneObject:
    """One object: its shape, centre and radii in pixels (y, x), class and surface reflectance."""

    shape: str
    centre: tuple[float, float]
    radii: tuple[float, float]
    label: int
    reflectance: tuple[float, float, float]

    def mask(self, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
        """The pixels (H, W) bool whose centres lie inside the object."""
        yy, xx = np.mgrid[:height, :width]
        dy, dx = (yy - self.centre[0]) / self.radii[0], (xx - self.centre[1]) / self.radii[1]
        if self.shape == "rect":
            return (np.abs(dy) <= 1) & (np.abs(dx) <= 1)
        return dy**2 + dx**2 <= 1


@dataclass(frozen=True)
class Scene:
    """Everything one image and its mask are drawn from."""

    background: np.ndarray  # (H, W, 3) surface reflectance
    objects: tuple[SceneObject, ...]  # painted in order, later over earlier
    light: np.ndarray  # (3,) illuminant gain times exposure
    noise: np.ndarray  # (H, W, 3) additive sensor noise


def _split_rng(split: str, seed: int) -> np.random.Generator:
    """An independent random stream per (split, seed), apart from the classifier demo's."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return np.random.default_rng([seed, SPLITS.index(split), 0x5E6])


def _mondrian(rng: np.random.Generator) -> np.ndarray:
    """Background reflectance: square patches of random colour at a random offset, (H, W, 3)."""
    patches = rng.uniform(0.15, 0.85, (HEIGHT // CELL + 1, WIDTH // CELL + 1, 3))
    full = patches.repeat(CELL, axis=0).repeat(CELL, axis=1)
    dy, dx = rng.integers(0, CELL, 2)
    return full[dy : dy + HEIGHT, dx : dx + WIDTH]


def _object(rng: np.random.Generator) -> SceneObject:
    shape = SHAPES[rng.integers(len(SHAPES))]
    radius = rng.uniform(*OBJECT_RADIUS)
    if shape == "disc":
        radii = (radius, radius)
    elif shape == "ellipse":
        aspect = np.exp(rng.uniform(-0.4, 0.4))
        radii = (radius * aspect, radius / aspect)
    else:
        aspect = np.exp(rng.uniform(-0.3, 0.3))
        radii = (0.85 * radius * aspect, 0.85 * radius / aspect)
    centre = (rng.uniform(radii[0] + 1, HEIGHT - radii[0] - 2), rng.uniform(radii[1] + 1, WIDTH - radii[1] - 2))
    label = int(rng.integers(1, NUM_CLASSES))
    colour = np.clip(np.asarray(SURFACE_COLOURS[SEG_CLASSES[label]]) + rng.normal(0, OBJECT_JITTER, 3), 0, 1)
    return SceneObject(
        shape, (float(centre[0]), float(centre[1])), (float(radii[0]), float(radii[1])), label, tuple(colour.tolist())
    )


def sample_scene(rng: np.random.Generator) -> Scene:
    """A random scene: background, 1-3 objects, illuminant and noise."""
    background = _mondrian(rng)
    objects = tuple(_object(rng) for _ in range(rng.integers(OBJECTS[0], OBJECTS[1] + 1)))
    light = np.exp(rng.normal(0, ILLUMINANT_SIGMA, 3)) * rng.uniform(*EXPOSURE)
    noise = rng.normal(0, PIXEL_NOISE, (HEIGHT, WIDTH, 3))
    return Scene(background, objects, light, noise)


def draw_scene(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """The scene's image, uint8 (H, W, 3), and its label mask, uint8 (H, W)."""
    reflectance = scene.background.copy()
    mask = np.full(reflectance.shape[:2], BACKGROUND, dtype=np.uint8)
    height, width = mask.shape
    for obj in scene.objects:
        inside = obj.mask(height, width)
        reflectance[inside] = obj.reflectance
        mask[inside] = obj.label
    radiance = reflectance * scene.light + scene.noise
    return np.round(np.clip(radiance, 0, 1) * 255).astype(np.uint8), mask


def mirror_scene(scene: Scene) -> Scene:
    """The scene mirrored left-right: drawing it gives the mirrored image and mask."""
    width = scene.background.shape[1]
    objects = tuple(replace(obj, centre=(obj.centre[0], width - 1 - obj.centre[1])) for obj in scene.objects)
    return Scene(scene.background[:, ::-1], objects, scene.light, scene.noise[:, ::-1])


def render_segmentation_split(split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scenes of ``split``, the same for the same (split, n, seed): uint8 images (N, H, W, 3), masks (N, H, W)."""
    rng = _split_rng(split, seed)
    pairs = [draw_scene(sample_scene(rng)) for _ in range(n)]
    if not pairs:
        return np.zeros((0, HEIGHT, WIDTH, 3), np.uint8), np.zeros((0, HEIGHT, WIDTH), np.uint8)
    images, masks = zip(*pairs)
    return np.stack(images), np.stack(masks)


def write_segmentation_folder(root: Path, split: str, n: int, seed: int) -> Path:
    """Render a split as ``root/images/NNNNN.png`` and ``root/masks/NNNNN.png`` (8-bit label maps); return ``root``."""
    images, masks = render_segmentation_split(split, n, seed)
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for index, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(image).save(root / "images" / f"{index:05d}.png")
        Image.fromarray(mask, mode="L").save(root / "masks" / f"{index:05d}.png")
    return root


def to_seg_tensor(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W) with the segmenter's mean and std."""
    return normalize(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2), MEAN, STD)


def seg_dataset_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images in [0, 1] (how MEAN and STD were chosen)."""
    x = images.reshape(-1, 3) / 255.0
    return x.mean(0).tolist(), x.std(0).tolist()
