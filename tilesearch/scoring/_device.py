"""Where scoring runs (the user's device, else the GPU when there is one), whether it fits there, and how it
runs fast: the faster memory format, inference mode, bf16 on a GPU, images in looks for early stopping."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

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


def segments(looks: Sequence[int], total: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) image ranges that end at each look inside (0, total) and at ``total``."""
    bounds = [0, *sorted({look for look in looks if 0 < look < total}), total]
    return list(zip(bounds[:-1], bounds[1:]))


def _forward_seconds(model: nn.Module, sample: Tensor, repeats: int) -> float:
    """The fastest of ``repeats`` timed forwards of ``sample`` (after one untimed warm-up)."""
    times = []
    for index in range(repeats + 1):
        if sample.device.type == "cuda":
            torch.cuda.synchronize(sample.device)
        start = time.perf_counter()
        model(sample)
        if sample.device.type == "cuda":
            torch.cuda.synchronize(sample.device)
        if index:
            times.append(time.perf_counter() - start)
    return min(times)


def fastest_memory_format(model: nn.Module, sample: Tensor, repeats: int = 2, margin: float = 0.05) -> torch.memory_format:
    """``torch.channels_last`` when it makes the forward of ``sample`` at least ``margin`` faster on its device,
    else ``torch.contiguous_format``; the model is left in the format returned.

    Measured, not assumed: channels_last speeds convolution networks up on many CPUs and on GPUs with tensor
    cores, and slows down others (and networks whose attention reshapes the map). Predictions agree within
    float rounding (tested against the plain model), not bit for bit."""
    timings = {}
    for memory_format in (torch.contiguous_format, torch.channels_last):
        with torch.inference_mode(False):  # even when called in inference mode: the weights stay trainable
            model.to(memory_format=memory_format)
        with inference_context(sample.device):
            timings[memory_format] = _forward_seconds(model, sample.contiguous(memory_format=memory_format), repeats)
    chosen = torch.channels_last if timings[torch.channels_last] < (1 - margin) * timings[torch.contiguous_format] \
        else torch.contiguous_format
    with torch.inference_mode(False):
        model.to(memory_format=chosen)
    return chosen


@contextlib.contextmanager
def inference_context(device: torch.device) -> Iterator[None]:
    """How every scoring forward runs: ``torch.inference_mode``, and bf16 autocast on a GPU (tensor cores; scores
    move by bf16 rounding only, SE and tiled configs alike)."""
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        yield
