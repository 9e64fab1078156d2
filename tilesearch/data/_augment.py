"""The one training augmentation: horizontal flips, of images and of their boxes or label maps."""

from __future__ import annotations

import torch
from torch import Tensor


def flip_images(pixels: Tensor, flip: Tensor, dim: int = -1) -> Tensor:
    """Mirror the images (N, C, H, W) whose ``flip`` (N,) is true: left-right, or top-bottom with ``dim=-2``."""
    return torch.where(flip.to(pixels.device)[:, None, None, None], pixels.flip(dim), pixels)


def flip_masks(masks: Tensor, flip: Tensor, dim: int = -1) -> Tensor:
    """Mirror the label maps (N, H, W) whose ``flip`` (N,) is true, as :func:`flip_images` mirrors their images."""
    return torch.where(flip.to(masks.device)[:, None, None], masks.flip(dim), masks)


def flip_boxes(boxes: Tensor, flip: Tensor, width: int) -> Tensor:
    """Mirror the (y1, x1, y2, x2) boxes (N, K, 4) of the images whose ``flip`` is true, in an image ``width`` wide."""
    mirrored = torch.stack([boxes[..., 0], width - boxes[..., 3], boxes[..., 2], width - boxes[..., 1]], -1)
    return torch.where(flip[:, None, None], mirrored, boxes)
