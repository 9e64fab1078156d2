"""Offline demo: a synthetic colour-constancy task and a tiny SE RegNet trained on it.

``tilesearch run`` with no model and no data searches this pair, so the whole
pipeline runs without a download.

The task needs spatial context the way SE provides it. Each 64x64 image shows
one large disc or square on a Mondrian background (8-pixel patches of random
surface colours averaging mid-grey), and the whole scene is lit by a random
coloured illuminant and exposure. The class is the object's *surface* colour
(eight hues), which only the illuminant tells apart from its apparent colour,
and the illuminant is best estimated from the whole image (grey world): the
global average pool of an SE block does exactly that and rescales channels.
Tiles that cover much of the background (``7xW`` and larger) still see the
illuminant; small ones (``3x3``, ``1x1``) see mostly the object itself, so the
zero-shot accuracy of a tiled model falls with the tile.

Importing this module registers ``tilesearch_demo_net`` with timm, a 4-stage
RegNetY of about 71k parameters whose pretrained config points at the committed
checkpoint (``tilesearch/assets/demo_model.safetensors``). Rebuild it with
``python -m tilesearch.demo --rebuild``; without ``--rebuild`` the module
prints the committed checkpoint's zero-shot accuracy per tile.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.regnet import RegNet, RegNetCfg
from torch import Tensor, nn

from tilesearch.tiled_se import apply_tiles

DEMO_MODEL_NAME = "tilesearch_demo_net"
IMAGE_SIZE = 64
DEMO_INPUT_SIZE = (3, IMAGE_SIZE, IMAGE_SIZE)
# Surface colours (RGB reflectance) in alphabetical order, which is ImageFolder's class order.
CLASS_COLOURS: dict[str, tuple[float, float, float]] = {
    "blue": (0.20, 0.30, 0.85),
    "cyan": (0.20, 0.75, 0.80),
    "green": (0.25, 0.75, 0.25),
    "orange": (0.90, 0.55, 0.15),
    "pink": (0.90, 0.45, 0.70),
    "purple": (0.60, 0.25, 0.80),
    "red": (0.85, 0.20, 0.20),
    "yellow": (0.85, 0.85, 0.20),
}
CLASSES = tuple(CLASS_COLOURS)
SPLITS = ("train", "val")
# Per-channel statistics of the rendered images (``dataset_stats``), rounded.
MEAN = (0.42, 0.42, 0.42)
STD = (0.24, 0.24, 0.24)
EVAL_TILES = ("GAP", "9xW", "7xW", "3xW", "1xW", "7x7", "3x3", "1x1")

ASSETS = Path(__file__).resolve().with_name("assets")
CHECKPOINT = ASSETS / "demo_model.safetensors"
METADATA = ASSETS / "demo_model.json"
REBUILD_COMMAND = "python -m tilesearch.demo --rebuild"
TRAIN_PER_CLASS = 1000
EPOCHS = 15

CELL = 8  # Mondrian patch size in pixels
OBJECT_RADIUS = (8.0, 12.0)  # disc radius range in pixels (squares get about the same area)
ILLUMINANT_SIGMA = 0.35  # std of the log gain per channel
EXPOSURE = (0.6, 1.0)
OBJECT_JITTER = 0.03  # std of the object's reflectance around its class colour
PIXEL_NOISE = 0.03

DEMO_REGNET_CFG = RegNetCfg(w0=16, wa=10, wm=1.8, group_size=8, depth=7, se_ratio=0.25, stem_width=16)
"""Stages of width 16, 32, 48, 96 with 1, 2, 3, 1 blocks: seven SE blocks on 16x16 ... 2x2 tensors."""


# ---------------------------------------------------------------------------- dataset


def _split_rng(split: str, seed: int) -> np.random.Generator:
    """An independent random stream per (split, seed)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return np.random.default_rng([seed, SPLITS.index(split)])


def _mondrian(rng: np.random.Generator) -> np.ndarray:
    """Background reflectance: square patches of random colour at a random offset, (H, W, 3)."""
    cells = IMAGE_SIZE // CELL + 1
    patches = rng.uniform(0.15, 0.85, (cells, cells, 3))
    full = patches.repeat(CELL, axis=0).repeat(CELL, axis=1)
    dy, dx = rng.integers(0, CELL, 2)
    return full[dy : dy + IMAGE_SIZE, dx : dx + IMAGE_SIZE]


def _object_mask(rng: np.random.Generator) -> np.ndarray:
    """A disc or a square of random size at a random position inside the image, (H, W) bool."""
    radius = rng.uniform(*OBJECT_RADIUS)
    cy, cx = rng.uniform(radius + 1, IMAGE_SIZE - radius - 1, 2)
    yy, xx = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
    if rng.random() < 0.5:
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    half = 0.85 * radius  # about the disc's area
    return (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)


def render_image(rng: np.random.Generator, label: int) -> np.ndarray:
    """One scene of class ``label`` as uint8 (H, W, 3)."""
    reflectance = _mondrian(rng)
    colour = np.asarray(CLASS_COLOURS[CLASSES[label]]) + rng.normal(0, OBJECT_JITTER, 3)
    reflectance[_object_mask(rng)] = np.clip(colour, 0, 1)
    light = np.exp(rng.normal(0, ILLUMINANT_SIGMA, 3)) * rng.uniform(*EXPOSURE)
    radiance = reflectance * light + rng.normal(0, PIXEL_NOISE, reflectance.shape)
    return np.round(np.clip(radiance, 0, 1) * 255).astype(np.uint8)


def render_split(split: str, n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` images of every class: uint8 (N, H, W, 3) and int64 labels (N,)."""
    rng = _split_rng(split, seed)
    labels = np.repeat(np.arange(len(CLASSES)), n_per_class)
    images = np.stack([render_image(rng, int(label)) for label in labels])
    return images, labels


def write_demo_dataset(root: Path, split: str, n_per_class: int, seed: int) -> Path:
    """Render a split as PNGs in torchvision ImageFolder layout, ``root/split/<class>/*.png``; return its folder."""
    images, labels = render_split(split, n_per_class, seed)
    folder = Path(root) / split
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for index, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(folder / CLASSES[label] / f"{index:05d}.png")
    return folder


def to_tensor(images: np.ndarray) -> Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), as timm's eval transform gives it."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def dataset_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images in [0, 1] (how MEAN and STD were chosen)."""
    x = images.reshape(-1, 3) / 255.0
    return x.mean(0).tolist(), x.std(0).tolist()


# ---------------------------------------------------------------------------- model

default_cfgs = generate_default_cfgs(
    {
        DEMO_MODEL_NAME: {
            "file": str(CHECKPOINT),
            "num_classes": len(CLASSES),
            "input_size": DEMO_INPUT_SIZE,
            "pool_size": (IMAGE_SIZE // 32, IMAGE_SIZE // 32),
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "mean": MEAN,
            "std": STD,
            "first_conv": "stem.conv",
            "classifier": "head.fc",
            "license": "apache-2.0",
        }
    }
)


def tilesearch_demo_net(pretrained: bool = False, **kwargs) -> RegNet:
    """The demo SE RegNet; ``pretrained=True`` loads the committed checkpoint (no download)."""
    return build_model_with_cfg(RegNet, DEMO_MODEL_NAME, pretrained, model_cfg=DEMO_REGNET_CFG, **kwargs)


# Registered once per process, also when this file runs as __main__ beside an imported copy.
if not timm.is_model(DEMO_MODEL_NAME):
    register_model(tilesearch_demo_net)


def load_demo_model(path: Path = CHECKPOINT) -> nn.Module:
    """The demo network with the weights at ``path`` (strict), in eval mode."""
    model = timm.create_model(DEMO_MODEL_NAME, pretrained=False)
    model.load_state_dict(load_file(path), strict=True)
    return model.eval()


# ---------------------------------------------------------------------------- training and evaluation


def _augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random horizontal and vertical flips (neither changes a surface colour)."""
    flip_w = torch.rand(len(x), generator=generator) < 0.5
    flip_h = torch.rand(len(x), generator=generator) < 0.5
    x = torch.where(flip_w.view(-1, 1, 1, 1), x.flip(3), x)
    return torch.where(flip_h.view(-1, 1, 1, 1), x.flip(2), x)


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
    model = timm.create_model(DEMO_MODEL_NAME, pretrained=False)
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
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_path))
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
        model = load_demo_model()
    accuracies = tile_accuracies(model, images, labels)
    for tile, acc in accuracies.items():
        print(f"{tile:>4}  {100 * acc:5.1f}%")
    if args.rebuild:
        metadata = _metadata(args, accuracies, train_seconds)
        METADATA.write_text(json.dumps(metadata, indent=2) + "\n")


if __name__ == "__main__":
    main()


# ---------------------------------------------------------------------------- `tilesearch run` with no arguments

DEMO_TRIALS = 40
DEMO_VAL_PER_CLASS = 150  # 1200 images: 400 for the search, 800 held out for the final report
DEMO_BUDGET = "50%"


DEMO_TRAIN_PER_CLASS = 100  # the short fine-tune's training split
DEMO_FINETUNE = {"epochs": 10, "train_subset": 1.0, "lr": 0.01}


def demo_data(out_dir: Path, split: str = "val", seed: int = 0) -> Path:
    """A split of the demo's data set under ``out_dir``, drawn once and reused."""
    per_class = DEMO_VAL_PER_CLASS if split == "val" else DEMO_TRAIN_PER_CLASS
    folder = Path(out_dir) / "demo-data" / split
    complete = folder / ".complete"
    if not complete.is_file():
        write_demo_dataset(folder.parent, split, per_class, seed)
        complete.write_text(f"{per_class} per class, seed {seed}\n")
    return folder


def demo_settings(out_dir: Path):
    """Search settings of the offline demo: the committed network on freshly drawn images."""
    from tilesearch.search import RunSettings

    return RunSettings(
        model=DEMO_MODEL_NAME,
        data=str(demo_data(out_dir)),
        pretrained=True,
        val_subset=400,
        budget=DEMO_BUDGET,
    )
