"""Rebuild the demo network's committed checkpoint: ``python -m tilesearch.demo --rebuild``.

Without ``--rebuild`` it prints the committed checkpoint's zero-shot accuracy per tile.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tilesearch.data import flip_images
from tilesearch.demo._dataset import CLASSES, render_split, to_tensor
from tilesearch.demo._rebuild import checkpoint_metadata, rebuild_or_measure, scores_per_tile, train_one_cycle
from tilesearch.zoo import DEMO_MODEL_NAME, demo_network, load_model
from tilesearch.zoo._demo import CHECKPOINT, DEMO_INPUT_SIZE, MEAN, METADATA, STD

EVAL_TILES = ("GAP", "9xW", "7xW", "3xW", "1xW", "7x7", "3x3", "1x1")
REBUILD_COMMAND = "python -m tilesearch.demo --rebuild"
TRAIN_PER_CLASS = 1000
EPOCHS = 15


def _augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random horizontal and vertical flips (neither changes a surface colour)."""
    flip_w = torch.rand(len(x), generator=generator) < 0.5
    flip_h = torch.rand(len(x), generator=generator) < 0.5
    return flip_images(flip_images(x, flip_w), flip_h, dim=-2)


def train_demo_model(
    out_path: Path,
    seed: int = 0,
    n_per_class: int = TRAIN_PER_CLASS,
    epochs: int = EPOCHS,
    batch_size: int = 128,
    lr: float = 4e-3,
) -> nn.Module:
    """Train the demo network on the train split (AdamW, one-cycle) and save its state dict as safetensors."""
    images, labels = render_split("train", n_per_class, seed)
    x, y = to_tensor(images), torch.from_numpy(labels)

    def batch_loss(model: nn.Module, batch: Tensor, generator: torch.Generator) -> Tensor:
        return F.cross_entropy(model(_augment(x[batch], generator)), y[batch])

    return train_one_cycle(demo_network, len(y), batch_loss, out_path, seed, epochs, batch_size, lr)


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` on uint8 images."""
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = model(to_tensor(images[start : start + batch_size]))
        correct += int((logits.argmax(1).numpy() == labels[start : start + batch_size]).sum())
    return correct / len(labels)


def tile_accuracies(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, tiles: Sequence[str] = EVAL_TILES
) -> dict[str, float]:
    """Zero-shot top-1 with every SE block on each tile; the model is left all-GAP."""
    return scores_per_tile(model, lambda tiled: accuracy(tiled, images, labels), tiles)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tilesearch.demo [--rebuild]``: retrain the committed checkpoint, then print accuracy per tile."""
    parser = argparse.ArgumentParser(prog="python -m tilesearch.demo", description=main.__doc__)
    parser.add_argument("--rebuild", action="store_true", help="retrain and overwrite the committed checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--val-seed", type=int, default=0, help="seed of the val split measured (default 0)")
    parser.add_argument("--val-per-class", type=int, default=125, help="val images per class (default 125)")
    args = parser.parse_args(argv)
    images, labels = render_split("val", args.val_per_class, args.val_seed)
    rebuild_or_measure(
        args.rebuild, lambda: train_demo_model(CHECKPOINT, seed=args.seed), lambda: load_model(DEMO_MODEL_NAME),
        lambda model: accuracy(model, images, labels), EVAL_TILES, "",
        lambda scores, seconds: checkpoint_metadata(
            DEMO_MODEL_NAME, CLASSES, DEMO_INPUT_SIZE, MEAN, STD, args.seed,
            {"split": "train", "seed": args.seed, "images": TRAIN_PER_CLASS * len(CLASSES), "epochs": EPOCHS},
            {"split": "val", "seed": args.val_seed, "images": args.val_per_class * len(CLASSES)},
            "zero_shot_top1", scores, seconds, REBUILD_COMMAND),
        METADATA,
    )
