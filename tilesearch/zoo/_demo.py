"""The offline demo's network: a 4-stage SE RegNetY of about 71k parameters that ships with tilesearch.

Trained on the demo's synthetic colour-constancy images (:mod:`tilesearch.demo`),
its weights are package data (``tilesearch/zoo/assets/demo_model.safetensors``),
so its pretrained weights need no download. It is built from timm's RegNet class with
its own pretrained config, without registering it in timm's model registry.
"""

from __future__ import annotations

from pathlib import Path

from timm.models import build_model_with_cfg
from timm.models.regnet import RegNet, RegNetCfg
from torch import nn

from tilesearch.zoo._checkpoint import load_checkpoint
from tilesearch.zoo._zoo import Zoo

DEMO_MODEL_NAME = "tilesearch_demo_net"
IMAGE_SIZE = 64
DEMO_INPUT_SIZE = (3, IMAGE_SIZE, IMAGE_SIZE)
NUM_CLASSES = 8
# Per-channel statistics of the demo's rendered images (tilesearch.demo.dataset_stats), rounded.
MEAN = (0.42, 0.42, 0.42)
STD = (0.24, 0.24, 0.24)
ASSETS = Path(__file__).resolve().with_name("assets")
CHECKPOINT = ASSETS / "demo_model.safetensors"
METADATA = ASSETS / "demo_model.json"

DEMO_REGNET_CFG = RegNetCfg(w0=16, wa=10, wm=1.8, group_size=8, depth=7, se_ratio=0.25, stem_width=16)
"""Stages of width 16, 32, 48, 96 with 1, 2, 3, 1 blocks: seven SE blocks on 16x16 ... 2x2 tensors."""

PRETRAINED_CFG = {
    "file": str(CHECKPOINT),
    "num_classes": NUM_CLASSES,
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


def demo_network(num_classes: int | None = None) -> RegNet:
    """The demo network, randomly initialised, with its data config (``model.pretrained_cfg``) as timm keeps it."""
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    return build_model_with_cfg(
        RegNet, DEMO_MODEL_NAME, False, pretrained_cfg=PRETRAINED_CFG, model_cfg=DEMO_REGNET_CFG, **kwargs
    )


class DemoZoo(Zoo):
    name = "tilesearch"
    se_families = (DEMO_MODEL_NAME,)

    def names(self) -> list[str]:
        return [DEMO_MODEL_NAME]

    def create(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        return demo_network(num_classes)

    def pretrained(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        model = load_checkpoint(demo_network(), CHECKPOINT)
        if num_classes is not None and num_classes != NUM_CLASSES:
            model.reset_classifier(num_classes)  # a new head on the trained backbone, as timm's pretrained loading does
        return model

    def default_input_size(self, name: str) -> tuple[int, int]:
        return IMAGE_SIZE, IMAGE_SIZE

    def weights_location(self, name: str) -> str:
        return str(CHECKPOINT)

    def pretrained_label(self, name: str) -> str:
        return "the demo network's trained weights (package data)"
