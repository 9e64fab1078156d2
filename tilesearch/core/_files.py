"""Atomic writes: every file tilesearch leaves behind is either whole or absent.

A result is written under a temporary name beside its final path and renamed
over it, so an interrupted run, a full disk or a second process writing the same
file never leaves half a file. Temporary names are unique per process and call,
so two commands writing the same output cannot collide.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _temporary_name(path: Path) -> Path:
    # Keep the suffix: some writers (matplotlib, torch.onnx) choose the format by it.
    return path.with_name(f".{path.stem}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")


def _default_mode() -> int:
    """The mode a new file gets from ``open()`` under the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; it replaces ``path`` when the block succeeds.

    The temporary file or folder is removed if the block fails. Works for a file or a whole folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        yield tmp
        if tmp.is_file():
            tmp.chmod(_default_mode())  # some writers create their file private (safetensors: 0600)
        if tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)  # a folder cannot be renamed over a non-empty one
        tmp.replace(path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


@contextmanager
def staged_files(folder: str | os.PathLike, last: str | None = None) -> Iterator[Path]:
    """Yield an empty staging folder beside ``folder``; when the block succeeds, its files move into ``folder``
    (``last``, a manifest, after the others). A failed block leaves ``folder`` as it was: all or nothing."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = _temporary_name(folder)
    staging.mkdir()
    try:
        yield staging
        for file in sorted(staging.iterdir(), key=lambda path: path.name == last):
            file.chmod(_default_mode())
            file.replace(folder / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
