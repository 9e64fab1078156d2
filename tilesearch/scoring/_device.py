"""Where scoring runs: the user's device, else the GPU when there is one."""

from __future__ import annotations

import torch

from tilesearch.core import TilesearchError


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` as a torch device (``cpu``, ``cuda``, ``cuda:1``...); None means cuda if available."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise TilesearchError(f"invalid device {str(device)!r}: expected cpu, cuda or cuda:N") from error
