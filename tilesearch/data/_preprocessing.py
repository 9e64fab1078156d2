"""How an image becomes a model input: timm's data config, and the one normalisation.

Images are kept as uint8 pixels once decoded and normalised per batch on the
fly, with exactly the arithmetic of ``ToTensor`` + ``Normalize``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from tilesearch.core import TilesearchError, parse_input_size

INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")

Triple = tuple[float, float, float]


def normalize(pixels: Tensor, mean: Triple, std: Triple) -> Tensor:
    """uint8 (N, 3, H, W) -> float32 model input, as ``ToTensor`` then ``Normalize`` compute it."""
    mean_ = torch.tensor(mean, dtype=torch.float32, device=pixels.device)[:, None, None]
    std_ = torch.tensor(std, dtype=torch.float32, device=pixels.device)[:, None, None]
    return pixels.to(torch.float32).div(255).sub(mean_).div(std_)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input (timm's data config; ``resize-pad`` for detectors)."""

    input_size: tuple[int, int]
    interpolation: str
    crop_pct: float
    crop_mode: str
    mean: Triple
    std: Triple

    def normalize(self, pixels: Tensor) -> Tensor:
        return normalize(pixels, self.mean, self.std)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_preprocessing(
    model: nn.Module,
    input_size: int | tuple[int, int] | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    mean: Triple | None = None,
    std: Triple | None = None,
) -> Preprocessing:
    """timm's data config for ``model`` with the user's overrides applied."""
    from timm.data import resolve_data_config

    if interpolation is not None and interpolation not in INTERPOLATIONS:
        raise TilesearchError(f"invalid interpolation {interpolation!r}: expected one of {', '.join(INTERPOLATIONS)}")
    if crop_pct is not None and not 0 < crop_pct <= 1:
        raise TilesearchError(f"invalid crop fraction {crop_pct}: expected a number in (0, 1], e.g. 0.875")
    for label, value in (("mean", mean), ("std", std)):
        if value is not None and (len(value) != 3 or (label == "std" and min(value) <= 0)):
            raise TilesearchError(f"invalid {label} {value}: expected three numbers such as 0.485 0.456 0.406")
    overrides = {
        "input_size": None if input_size is None else (3, *parse_input_size(input_size)),
        "crop_pct": crop_pct,
        "interpolation": interpolation,
        "mean": mean,
        "std": std,
    }
    config = resolve_data_config(args={k: v for k, v in overrides.items() if v is not None}, model=model)
    return Preprocessing(
        input_size=tuple(config["input_size"][-2:]),
        interpolation=config["interpolation"],
        crop_pct=float(config["crop_pct"]),
        crop_mode=config.get("crop_mode", "center"),
        mean=tuple(float(v) for v in config["mean"]),
        std=tuple(float(v) for v in config["std"]),
    )
