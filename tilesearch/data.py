"""Validation images, decoded and preprocessed once per run.

Preprocessing is timm's resolved data config for the model (input size, crop,
interpolation, mean/std), overridable by the user. Images are decoded by timm's
own eval transform in its "prefetcher" form, which stops before normalisation
and yields uint8 pixels, so a run keeps them as one uint8 tensor (a quarter of
float32's memory, optionally saved in the run folder) and normalises each batch
on the fly with exactly the arithmetic of ``ToTensor`` + ``Normalize``. No trial
ever decodes an image.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from tilesearch.errors import TilesearchError

INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input (timm's data config)."""

    input_size: tuple[int, int]
    interpolation: str
    crop_pct: float
    crop_mode: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def normalize(self, pixels: Tensor) -> Tensor:
        """uint8 (N, 3, H, W) -> float32 model input, as ``ToTensor`` then ``Normalize`` compute it."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=pixels.device)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32, device=pixels.device)[:, None, None]
        return pixels.to(torch.float32).div(255).sub(mean).div(std)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_preprocessing(
    model: nn.Module,
    input_size: int | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
) -> Preprocessing:
    """timm's data config for ``model`` with the user's overrides applied."""
    from timm.data import resolve_data_config

    if interpolation is not None and interpolation not in INTERPOLATIONS:
        raise TilesearchError(f"invalid interpolation {interpolation!r}: expected one of {', '.join(INTERPOLATIONS)}")
    if crop_pct is not None and not 0 < crop_pct <= 1:
        raise TilesearchError(f"invalid crop fraction {crop_pct}: expected a number in (0, 1], e.g. 0.875")
    for label, value in (("mean", mean), ("std", std)):
        if value is not None and (len(value) != 3 or (label == "std" and min(value) <= 0)):
            raise TilesearchError(f"invalid {label} {value}: expected three numbers such as 0.485 0.456 0.406")
    overrides = {
        "input_size": None if input_size is None else (3, input_size, input_size),
        "crop_pct": crop_pct,
        "interpolation": interpolation,
        "mean": mean,
        "std": std,
    }
    config = resolve_data_config(args={k: v for k, v in overrides.items() if v is not None}, model=model)
    return Preprocessing(
        input_size=tuple(config["input_size"][-2:]),
        interpolation=config["interpolation"],
        crop_pct=float(config["crop_pct"]),
        crop_mode=config.get("crop_mode", "center"),
        mean=tuple(float(v) for v in config["mean"]),
        std=tuple(float(v) for v in config["std"]),
    )


@dataclass
class ImageSet:
    """Decoded images (uint8, N x 3 x H x W) and their labels."""

    pixels: Tensor
    labels: Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class FlatFolder:
    """Unlabeled images directly in a folder: ImageFolder's interface with no classes (label -1)."""

    samples: list[tuple[str, int]]
    classes: list[str]
    loader: object


def image_folder(root: str | Path):
    """A torchvision ImageFolder, a :class:`FlatFolder` of unlabeled images, or a one-line error."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader

    root = Path(root)
    if not root.is_dir():
        raise TilesearchError(f"data folder {str(root)!r} does not exist (expected ImageFolder layout: DIR/CLASS/IMAGE)")
    flat = sorted(str(p) for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if flat and not any(p.is_dir() for p in root.iterdir()):
        return FlatFolder([(path, -1) for path in flat], [], default_loader)
    try:
        return ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as error:
        raise TilesearchError(
            f"data folder {str(root)!r} has no images in class subfolders (expected DIR/CLASS/IMAGE) "
            f"nor images directly in it: {error}"
        ) from None


def stratified_split(labels: list[int], subset: int | None, seed: int) -> tuple[list[int], list[int]]:
    """A seeded subset of ``subset`` indices with every class in proportion, and the rest."""
    indices = np.arange(len(labels))
    if subset is None or subset >= len(labels):
        return indices.tolist(), []
    if subset < 1:
        raise TilesearchError(f"invalid validation subset {subset}: expected a positive number of images")
    rng = np.random.default_rng(seed)
    labels_array = np.asarray(labels)
    chosen = []
    classes, counts = np.unique(labels_array, return_counts=True)
    # Largest-remainder apportionment, so the subset has exactly `subset` images.
    quotas = counts * subset / len(labels)
    take = np.floor(quotas).astype(int)
    for position in np.argsort(-(quotas - take), kind="stable")[: subset - take.sum()]:
        take[position] += 1
    for cls, count in zip(classes, take):
        members = indices[labels_array == cls]
        chosen.extend(rng.choice(members, size=count, replace=False).tolist())
    chosen_set = set(chosen)
    return sorted(chosen), [i for i in indices.tolist() if i not in chosen_set]


def cache_file(cache_dir: Path, root: Path, samples: list[tuple[str, int]], recipe: dict) -> Path:
    """Where decoded pixels of ``samples`` under ``recipe`` are cached; changes when a file or the recipe does."""
    digest = hashlib.sha1()
    digest.update(json.dumps([str(Path(root).resolve()), recipe], sort_keys=True).encode())
    for path, label in samples:
        digest.update(f"{path}\0{label}\0{Path(path).stat().st_mtime_ns}\n".encode())
    return Path(cache_dir) / f"images-{digest.hexdigest()[:16]}.pt"


def save_cache(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write atomically, so an interrupted run never leaves a half-written cache behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(tensors, tmp)
    tmp.replace(path)


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
    if cached is not None and cached.is_file():
        tensors = torch.load(cached, weights_only=True)
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
    if cached is not None:
        save_cache(cached, {"pixels": pixels, "labels": labels})
    return ImageSet(pixels, labels, dataset.classes)
