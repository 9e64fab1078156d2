"""What the demo networks' rebuild commands share: zero-shot scores per tile, retraining, the metadata file."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from tilesearch.core import write_text_atomically
from tilesearch.deploy import save_weights
from tilesearch.nn import apply_tiles


def scores_per_tile(model: nn.Module, score: Callable[[nn.Module], float], tiles: Sequence[str]) -> dict[str, float]:
    """``score(model)`` with every block on each tile in turn; the model is left all-GAP."""
    result = {}
    for tile in tiles:
        apply_tiles(model, tile)
        result[tile] = score(model)
    apply_tiles(model, "GAP")
    return result


def checkpoint_metadata(model_name: str, classes: Sequence[str], input_size: Sequence[int], mean: Sequence[float],
                        std: Sequence[float], seed: int, train: dict, val: dict, scores_key: str,
                        scores: dict[str, float], train_seconds: float, command: str) -> dict:
    """What a demo network's ``assets/*.json`` records about its rebuilt checkpoint."""
    return {
        "model": model_name,
        "classes": list(classes),
        "input_size": list(input_size),
        "mean": list(mean),
        "std": list(std),
        "seed": seed,
        "train": train,
        "val": val,
        scores_key: {tile: round(value, 4) for tile, value in scores.items()},
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "rebuild": command,
    }


def rebuild_or_measure(rebuild: bool, train: Callable[[], nn.Module], load: Callable[[], nn.Module],
                       score: Callable[[nn.Module], float], tiles: Sequence[str], unit: str,
                       metadata: Callable[[dict[str, float], float], dict], metadata_path: Path) -> dict[str, float]:
    """Retrain (``rebuild``, on 2 threads, as the committed checkpoints were) or load the network, print its
    score per tile, and with ``rebuild`` write ``metadata(scores, train_seconds)`` to ``metadata_path``."""
    if rebuild:
        torch.set_num_threads(2)
        started = time.perf_counter()
        model = train()
        train_seconds = time.perf_counter() - started
    else:
        model = load()
    scores = scores_per_tile(model, score, tiles)
    for tile, value in scores.items():
        print(f"{tile:>5}  {100 * value:5.1f}%{unit}")
    if rebuild:
        write_text_atomically(metadata_path, json.dumps(metadata(scores, train_seconds), indent=2) + "\n")
    return scores


def train_one_cycle(build: Callable[[], nn.Module], count: int, batch_loss: Callable[[nn.Module, Tensor, torch.Generator], Tensor],
                    out_path: Path, seed: int, epochs: int, batch_size: int, lr: float) -> nn.Module:
    """Build a network after seeding and train it on ``count`` items (AdamW, weight decay 0.05, one-cycle),
    ``batch_loss(model, indices, generator)`` giving each shuffled batch's loss; save its state dict."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build()
    steps_per_epoch = count // batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch, pct_start=0.15)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(count, generator=generator)
        for step in range(steps_per_epoch):
            loss = batch_loss(model, order[step * batch_size : (step + 1) * batch_size], generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    save_weights(model, Path(out_path))
    return model
