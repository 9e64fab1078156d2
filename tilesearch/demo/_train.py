"""Rebuild the demo network's committed checkpoint: ``python -m tilesearch.demo --rebuild``.

Without ``--rebuild`` it prints the committed checkpoint's zero-shot accuracy per tile.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tilesearch.core import write_text_atomically
from tilesearch.data import flip_images
from tilesearch.demo._dataset import CLASSES, render_split, to_tensor
from tilesearch.deploy import save_weights
from tilesearch.nn import apply_tiles
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
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = demo_network()
    steps_per_epoch = len(y) // batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch, pct_start=0.15)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for step in range(steps_per_epoch):
            batch = order[step * batch_size : (step + 1) * batch_size]
            loss = F.cross_entropy(model(_augment(x[batch], generator)), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    save_weights(model, Path(out_path))
    return model


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
    result = {}
    for tile in tiles:
        apply_tiles(model, tile)
        result[tile] = accuracy(model, images, labels)
    apply_tiles(model, "GAP")
    return result


def _metadata(args: argparse.Namespace, accuracies: dict[str, float], train_seconds: float) -> dict:
    """What ``assets/demo_model.json`` records about a rebuilt checkpoint."""
    return {
        "model": DEMO_MODEL_NAME,
        "classes": list(CLASSES),
        "input_size": list(DEMO_INPUT_SIZE),
        "mean": list(MEAN),
        "std": list(STD),
        "seed": args.seed,
        "train": {"split": "train", "seed": args.seed, "images": TRAIN_PER_CLASS * len(CLASSES), "epochs": EPOCHS},
        "val": {"split": "val", "seed": args.val_seed, "images": args.val_per_class * len(CLASSES)},
        "zero_shot_top1": {tile: round(acc, 4) for tile, acc in accuracies.items()},
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "rebuild": REBUILD_COMMAND,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tilesearch.demo [--rebuild]``: retrain the committed checkpoint, then print accuracy per tile."""
    parser = argparse.ArgumentParser(prog="python -m tilesearch.demo", description=main.__doc__)
    parser.add_argument("--rebuild", action="store_true", help="retrain and overwrite the committed checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--val-seed", type=int, default=0, help="seed of the val split measured (default 0)")
    parser.add_argument("--val-per-class", type=int, default=125, help="val images per class (default 125)")
    args = parser.parse_args(argv)
    images, labels = render_split("val", args.val_per_class, args.val_seed)
    if args.rebuild:
        torch.set_num_threads(2)
        start = time.perf_counter()
        model = train_demo_model(CHECKPOINT, seed=args.seed)
        train_seconds = time.perf_counter() - start
    else:
        model = load_model(DEMO_MODEL_NAME)
    accuracies = tile_accuracies(model, images, labels)
    for tile, acc in accuracies.items():
        print(f"{tile:>4}  {100 * acc:5.1f}%")
    if args.rebuild:
        metadata = _metadata(args, accuracies, train_seconds)
        write_text_atomically(METADATA, json.dumps(metadata, indent=2) + "\n")
