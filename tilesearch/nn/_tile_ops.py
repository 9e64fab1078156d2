"""Tensor operations on a grid of non-overlapping tiles, shared by every tiled block.

Vosco et al., section 3.1: a tiled block pools each tile of its input, runs its
unchanged excite on every tile descriptor and scales each tile by its own gate.
Partial tiles at the bottom and right edges use only their valid elements.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def tiled_pool(x: Tensor, tile_h: int, tile_w: int, mode: str = "avg") -> Tensor:
    """Pool ``x`` (B, C, H, W) over non-overlapping tiles; edge tiles use only their valid elements."""
    kernel = (tile_h, tile_w)
    if kernel == (1, 1):  # every element is its own tile
        return x
    if mode == "max":
        return F.max_pool2d(x, kernel, stride=kernel, ceil_mode=True)
    # Without padding, ceil_mode's partial windows divide by the number of valid elements.
    return F.avg_pool2d(x, kernel, stride=kernel, ceil_mode=True)


def expand_tiles(values: Tensor, tile_h: int, tile_w: int, height: int, width: int) -> Tensor:
    """One value per tile (..., nh, nw) to the (..., height, width) map where each tile holds its value."""
    # Gather each row's and column's tile: exact, and exported to ONNX as two Gathers (repeat_interleave
    # exports shapes that onnxruntime's shape inference rejects behind some layers).
    rows = torch.arange(height, device=values.device) // tile_h
    columns = torch.arange(width, device=values.device) // tile_w
    return values.index_select(values.dim() - 2, rows).index_select(values.dim() - 1, columns)


def scale_by_tile(x: Tensor, gate: Tensor, tile_h: int, tile_w: int) -> Tensor:
    """Multiply each tile of ``x`` by its gate: gate[..., i, j] scales tile (i, j) exactly."""
    b, c, h, w = x.shape
    nh, nw = gate.shape[-2:]
    if h % tile_h == 0 and w % tile_w == 0:
        # A broadcast view: no gate tensor of the input's size is materialized.
        tiles = x.reshape(b, c, nh, tile_h, nw, tile_w)
        return (tiles * gate.reshape(b, c, nh, 1, nw, 1)).reshape(b, c, h, w)
    return x * expand_tiles(gate, tile_h, tile_w, h, w)


def tile_positions(x: Tensor, tile_h: int, tile_w: int, fill: float = 0.0) -> Tensor:
    """``x`` (B, C, H, W) as (B, C, nh, nw, tile_h * tile_w): each tile's elements on the last axis.

    Edge tiles are padded with ``fill`` (``-inf`` makes a softmax ignore the padding).
    """
    b, c, h, w = x.shape
    nh, nw = (h + tile_h - 1) // tile_h, (w + tile_w - 1) // tile_w  # not -(-h // t): ONNX divides toward zero
    padded = F.pad(x, (0, nw * tile_w - w, 0, nh * tile_h - h), value=fill)
    tiles = padded.reshape(b, c, nh, tile_h, nw, tile_w).permute(0, 1, 2, 4, 3, 5)
    return tiles.reshape(b, c, nh, nw, tile_h * tile_w)


def tiled_attention_pool(x: Tensor, logits: Tensor, tile_h: int, tile_w: int) -> Tensor:
    """Attention pooling per tile: each tile's softmax over its own positions weights its elements.

    ``logits`` (B, 1, H, W) scores every position; the result is (B, C, nh, nw).
    """
    weights = torch.softmax(tile_positions(logits, tile_h, tile_w, fill=float("-inf")), dim=-1)
    return (tile_positions(x, tile_h, tile_w) * weights).sum(-1)


def fold_tiles(descriptors: Tensor) -> Tensor:
    """(B, C, nh, nw) tile descriptors as a batch of B*nh*nw one-pixel tensors (B*nh*nw, C, 1, 1)."""
    b, c = descriptors.shape[:2]
    return descriptors.permute(0, 2, 3, 1).reshape(-1, c, 1, 1)


def unfold_tiles(values: Tensor, batch: int, grid: tuple[int, int]) -> Tensor:
    """The inverse of :func:`fold_tiles`: (B*nh*nw, ...) with K values each to (B, K, nh, nw)."""
    nh, nw = grid
    return values.reshape(batch, nh, nw, -1).permute(0, 3, 1, 2)
