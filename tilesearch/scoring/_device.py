"""Where scoring runs (the user's device, else the GPU when there is one) and whether it fits there."""

from __future__ import annotations

import torch
from torch import nn

from tilesearch.core import TilesearchError
from tilesearch.nn import largest_activation


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` as a torch device (``cpu``, ``cuda``, ``cuda:1``...); None means cuda if available."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise TilesearchError(f"invalid device {str(device)!r}: expected cpu, cuda or cuda:N") from error


def available_memory(device: torch.device) -> int | None:
    """Bytes free for tensors on ``device`` (a GPU's free memory, the host's available memory), if known."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_estimate(model: nn.Module, input_size: tuple[int, int], batch_size: int, images: int) -> int:
    """Bytes one scoring pass holds at its peak, roughly: the largest layer output three times over (the
    layer's input, its output and a residual) for a batch, the decoded uint8 images and the weights."""
    element = next(model.parameters()).element_size() if any(True for _ in model.parameters()) else 4
    per_image = 3 * largest_activation(model, input_size) * element
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return batch_size * per_image + images * 3 * input_size[0] * input_size[1] + weights


def check_memory(model: nn.Module, input_size: tuple[int, int], batch_size: int, images: int,
                 device: torch.device | str | None = None) -> None:
    """Refuse, before any image is decoded or any forward runs, a size that would not fit the device's memory."""
    device = resolve_device(device)
    needed, free = memory_estimate(model, input_size, batch_size, images), available_memory(device)
    if free is not None and needed > free:
        size = f"{input_size[0]}x{input_size[1]}"
        raise TilesearchError(
            f"input size {size} with batch size {batch_size} and {images} images needs about {needed / 2**30:.1f} GiB, "
            f"more than the {free / 2**30:.1f} GiB free on {device}: lower --input-size, --batch-size or the number "
            f"of images, or pass --skip-memory-check to try anyway"
        )
