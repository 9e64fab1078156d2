"""Decoding many image files once: a progress bar, and an unreadable file skipped with a warning (or refused)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

from tilesearch.core import DataError, TilesearchWarning, first_line

# What PIL raises for a truncated file or one that is no image, and what a transform raises for a broken one.
UNREADABLE = (OSError, ValueError, SyntaxError)


def decode_all(paths: list[str], decode_one: Callable[[int, str], None], strict: bool,
               description: str) -> tuple[list[int], list[str]]:
    """Call ``decode_one(position, path)`` for each file, ``position`` counting only the readable ones so far.

    Returns (indices of the readable files, paths skipped). An unreadable file is skipped with a warning
    naming it, or, when ``strict``, refused with a one-line :class:`DataError`.
    """
    from rich.progress import track

    kept: list[int] = []
    skipped: list[str] = []
    for index, path in enumerate(track(paths, description=description, transient=True)):
        try:
            decode_one(len(kept), path)
        except UNREADABLE as error:
            reason = first_line(error)
            if strict:
                raise DataError(f"image {path!r} cannot be read ({reason}); remove it, or run without "
                                f"--strict-data to skip unreadable images") from error
            warnings.warn(f"skipped image {path!r}, which cannot be read ({reason})", TilesearchWarning, stacklevel=2)
            skipped.append(path)
        else:
            kept.append(index)
    return kept, skipped


def refuse_skipped(skipped: list[str], strict: bool) -> None:
    """A cache decoded without ``--strict-data`` that skipped images, opened with it."""
    if strict and skipped:
        raise DataError(f"image {skipped[0]!r} cannot be read; remove it, or run without --strict-data to skip it")
