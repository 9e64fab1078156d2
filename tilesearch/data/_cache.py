"""The decoded-image cache: uint8 tensors in the run folder, keyed by the files and the recipe."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch

from tilesearch.core import TilesearchWarning, atomic_path, first_line


def cache_file(cache_dir: Path, root: Path, samples: list[tuple[str, int]], recipe: dict) -> Path:
    """Where decoded pixels of ``samples`` under ``recipe`` are cached; changes when a file or the recipe does."""
    digest = hashlib.sha1()
    digest.update(json.dumps([str(Path(root).resolve()), recipe], sort_keys=True).encode())
    for path, label in samples:
        digest.update(f"{path}\0{label}\0{Path(path).stat().st_mtime_ns}\n".encode())
    return Path(cache_dir) / f"images-{digest.hexdigest()[:16]}.pt"


def load_cache(path: Path | None, keys: tuple[str, ...]) -> dict[str, torch.Tensor] | None:
    """The cached tensors, or None when there is no cache or it is unreadable (then it is decoded again)."""
    if path is None or not path.is_file():
        return None
    try:
        tensors = torch.load(path, weights_only=True)
    except Exception as error:  # a damaged pickle fails in the unpickler's own ways (IndexError, KeyError, ...)
        reason = first_line(error).split(". ")[0]
        warnings.warn(f"image cache {str(path)!r} cannot be read ({reason}); decoding the images again",
                      TilesearchWarning, stacklevel=2)
        return None  # truncated or corrupt: a miss, rewritten by save_cache
    return tensors if isinstance(tensors, dict) and all(key in tensors for key in keys) else None


def save_cache(path: Path | None, tensors: dict[str, torch.Tensor]) -> None:
    """Write atomically, so an interrupted run never leaves a half-written cache behind."""
    if path is None:
        return
    with atomic_path(path) as tmp:
        torch.save(tensors, tmp)
