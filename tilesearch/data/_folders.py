"""Image folders (ImageFolder layout or a flat folder of unlabeled images) and seeded subsets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tilesearch.core import DataError, TilesearchError


class FlatFolder:
    """Unlabeled images directly in a folder: ImageFolder's interface with no classes (label -1)."""

    def __init__(self, paths: list[str]) -> None:
        from torchvision.datasets.folder import default_loader

        self.samples = [(path, -1) for path in paths]
        self.classes: list[str] = []
        self.loader = default_loader


def image_folder(root: str | Path):
    """A torchvision ImageFolder, a :class:`FlatFolder` of unlabeled images, or a one-line error."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} does not exist (expected ImageFolder layout: DIR/CLASS/IMAGE)")
    flat = sorted(str(p) for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if flat and not any(p.is_dir() for p in root.iterdir()):
        return FlatFolder(flat)
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    empty = [p.name for p in classes if not any(f.suffix.lower() in IMG_EXTENSIONS for f in p.rglob("*") if f.is_file())]
    if classes and len(empty) < len(classes) and empty:
        raise DataError(f"class folder {str(root / empty[0])!r} holds no images (ImageFolder needs at least one per class; "
                        f"remove the folder or add images)")
    try:
        return ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as error:
        raise DataError(
            f"data folder {str(root)!r} has no images in class subfolders (expected DIR/CLASS/IMAGE) "
            f"nor images directly in it: {error}"
        ) from error


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


def seeded_order(ids: list[int], seed: int) -> list[int]:
    """``ids`` in a seeded random order: every prefix is then a random sample of them (a folder lists its images
    class by class and a data set city by city, so its first images are not), which early stopping relies on."""
    return [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]


def random_subset(ids: list[int], size: int | None, seed: int) -> list[int]:
    """A seeded, sorted subset of ``size`` of ``ids`` (all of them when ``size`` is None or larger)."""
    if size is None or size >= len(ids):
        return sorted(ids)
    return sorted(np.random.default_rng(seed).choice(sorted(ids), size, replace=False).tolist())
