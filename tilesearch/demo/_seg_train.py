"""Rebuild the demo segmenter's committed checkpoint: ``python -m tilesearch.demo._seg_train --rebuild``.

Without ``--rebuild`` it prints the committed checkpoint's zero-shot mIoU per tile.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tilesearch.data import flip_images, flip_masks
from tilesearch.demo._seg_dataset import IGNORE_INDEX, SEG_CLASSES, render_segmentation_split, to_seg_tensor
from tilesearch.demo._rebuild import checkpoint_metadata, rebuild_or_measure, scores_per_tile, train_one_cycle
from tilesearch.scoring import confusion_matrix, miou
from tilesearch.zoo._checkpoint import load_checkpoint
from tilesearch.zoo._demo_segmenter import (
    CHECKPOINT,
    DEMO_SEGMENTER_INPUT_SIZE,
    DEMO_SEGMENTER_NAME,
    MEAN,
    METADATA,
    NUM_CLASSES,
    STD,
    demo_segmenter,
)

SEG_EVAL_TILES = ("GAP", "7xW", "3xW", "1xW", "7x7", "3x3", "1x1")
SEG_REBUILD_COMMAND = "python -m tilesearch.demo._seg_train --rebuild"
TRAIN_IMAGES = 2000
EPOCHS = 8
BATCH_SIZE = 50
LR = 6e-3
VAL_IMAGES = 500


def _augment(x: Tensor, masks: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The same random horizontal and vertical flips for images (N, 3, H, W) and their masks (N, H, W)."""
    flips = [(dim, torch.rand(len(x), generator=generator) < 0.5) for dim in (-1, -2)]
    for dim, flip in flips:
        x = flip_images(x, flip, dim=dim)
        masks = flip_masks(masks, flip, dim=dim)
    return x, masks


def train_demo_segmenter(
    out_path: Path,
    seed: int = 0,
    n_train: int = TRAIN_IMAGES,
    epochs: int = EPOCHS,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
) -> nn.Module:
    """Train the demo segmenter, all-GAP, on the train split (cross-entropy, AdamW, one-cycle); save its state dict."""
    images, masks = render_segmentation_split("train", n_train, seed)
    x, y = to_seg_tensor(images), torch.from_numpy(masks).long()

    def batch_loss(model: nn.Module, batch: Tensor, generator: torch.Generator) -> Tensor:
        inputs, targets = _augment(x[batch], y[batch], generator)
        return F.cross_entropy(model(inputs)["out"], targets, ignore_index=IGNORE_INDEX)

    return train_one_cycle(demo_segmenter, len(y), batch_loss, out_path, seed, epochs, batch_size, lr)


@torch.no_grad()
def mean_iou(model: nn.Module, images: np.ndarray, masks: np.ndarray, batch_size: int = 250) -> float:
    """Mean IoU of ``model`` on uint8 images (N, H, W, 3) against label masks (N, H, W)."""
    model.eval()
    confusion = torch.zeros((NUM_CLASSES, NUM_CLASSES), dtype=torch.int64)
    for start in range(0, len(masks), batch_size):
        logits = model(to_seg_tensor(images[start : start + batch_size]))["out"]
        target = torch.from_numpy(masks[start : start + batch_size]).long()
        confusion += confusion_matrix(logits.argmax(1), target, NUM_CLASSES, IGNORE_INDEX)
    return miou(confusion)


def evaluate_tiles(
    model: nn.Module, images: np.ndarray, masks: np.ndarray, tiles: Sequence[str] = SEG_EVAL_TILES
) -> dict[str, float]:
    """Zero-shot mIoU with every block on each tile; the model is left all-GAP."""
    return scores_per_tile(model, lambda tiled: mean_iou(tiled, images, masks), tiles)


def main(argv: Sequence[str] | None = None) -> None:
    """Retrain the demo segmenter's committed checkpoint (``--rebuild``), then print its mIoU per tile."""
    parser = argparse.ArgumentParser(prog="python -m tilesearch.demo._seg_train", description=main.__doc__)
    parser.add_argument("--rebuild", action="store_true", help="retrain and overwrite the committed checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--val-seed", type=int, default=0, help="seed of the val split measured (default 0)")
    parser.add_argument("--val-images", type=int, default=VAL_IMAGES, help=f"val images (default {VAL_IMAGES})")
    args = parser.parse_args(argv)
    images, masks = render_segmentation_split("val", args.val_images, args.val_seed)
    rebuild_or_measure(
        args.rebuild, lambda: train_demo_segmenter(CHECKPOINT, seed=args.seed),
        lambda: load_checkpoint(demo_segmenter(), CHECKPOINT), lambda model: mean_iou(model, images, masks),
        SEG_EVAL_TILES, " mIoU",
        lambda scores, seconds: checkpoint_metadata(
            DEMO_SEGMENTER_NAME, SEG_CLASSES, DEMO_SEGMENTER_INPUT_SIZE, MEAN, STD, args.seed,
            {"split": "train", "seed": args.seed, "images": TRAIN_IMAGES, "epochs": EPOCHS},
            {"split": "val", "seed": args.val_seed, "images": args.val_images},
            "zero_shot_miou", scores, seconds, SEG_REBUILD_COMMAND),
        METADATA,
    )


if __name__ == "__main__":
    main()
