"""The offline segmentation demo's network: a small LR-ASPP on a MobileNetV3-style SE backbone, shipped trained.

Built the way torchvision builds ``lraspp_mobilenet_v3_large``, from torchvision's
own classes: ``InvertedResidual`` blocks (with ``SqueezeExcitation`` where
``use_se``), the last stage dilated instead of strided, an
``IntermediateLayerGetter`` that returns a stride-4 ``low`` and a stride-8
``high`` feature map, and ``LRASPPHead``, whose ``scale`` branch is a global
average pool, a 1x1 conv and a sigmoid. The model returns torchvision's
``{"out": logits}`` at the input's resolution.

Trained on the segmentation demo's colour-constancy scenes
(:mod:`tilesearch.demo._seg_dataset`); its weights are package data
(``tilesearch/zoo/assets/demo_segmenter.safetensors``), so they need no download.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig
from torchvision.models.segmentation.lraspp import LRASPP
from torchvision.ops.misc import Conv2dNormActivation

from tilesearch.core import SEGMENTER
from tilesearch.zoo._checkpoint import load_checkpoint
from tilesearch.zoo._zoo import Zoo

DEMO_SEGMENTER_NAME = "tilesearch_demo_segmenter"
IMAGE_SIZE = (64, 96)  # (height, width): not square, so non-square inputs are exercised
DEMO_SEGMENTER_INPUT_SIZE = (3, *IMAGE_SIZE)
NUM_CLASSES = 8  # background and seven surface colours
# Per-channel statistics of the rendered scenes (tilesearch.demo._seg_dataset.dataset_stats), rounded.
MEAN = (0.42, 0.42, 0.42)
STD = (0.24, 0.24, 0.24)
ASSETS = Path(__file__).resolve().with_name("assets")
CHECKPOINT = ASSETS / "demo_segmenter.safetensors"
METADATA = ASSETS / "demo_segmenter.json"

LOW = 1  # features[1]: the stride-4 "low" features
LOW_CHANNELS = 16
HIGH_CHANNELS = 128
INTER_CHANNELS = 48

# (input, kernel, expanded, output, use_se, activation, stride, dilation), as torchvision's
# _mobilenet_v3_conf lists them.
BLOCKS = (
    (16, 3, 16, 16, True, "RE", 2, 1),  # 16x24: MobileNetV3-small's first block; the "low" features
    (16, 3, 48, 24, False, "RE", 2, 1),  # 8x12
    (24, 3, 72, 24, False, "RE", 1, 1),
    (24, 5, 72, 40, True, "HS", 1, 1),
    (40, 5, 96, 40, True, "HS", 1, 1),
    (40, 5, 96, 48, True, "HS", 1, 1),
    (48, 5, 144, 64, True, "HS", 1, 2),  # the last stage dilated, not strided (torchvision's dilated=True)
    (64, 5, 160, 64, True, "HS", 1, 2),
)
"""Eight inverted residuals, six with SE: one on 16x24 maps, five on 8x12 maps (for a 64x96 input)."""

PRETRAINED_CFG = {
    "file": str(CHECKPOINT),
    "num_classes": NUM_CLASSES,
    "input_size": DEMO_SEGMENTER_INPUT_SIZE,
    "crop_pct": 1.0,
    "interpolation": "bilinear",
    "mean": MEAN,
    "std": STD,
    "first_conv": "backbone.0.0",
    "classifier": "classifier.low_classifier",
    "license": "apache-2.0",
}


def _features() -> nn.Sequential:
    """The backbone's layers: stem, inverted residuals, last 1x1 conv (MobileNetV3's ``features``)."""
    norm_layer = partial(nn.BatchNorm2d, eps=0.001)  # torchvision's momentum 0.01 is too slow for a short training
    conv = partial(Conv2dNormActivation, norm_layer=norm_layer, activation_layer=nn.Hardswish)
    layers: list[nn.Module] = [conv(3, BLOCKS[0][0], kernel_size=3, stride=2)]
    for block in BLOCKS:
        layers.append(InvertedResidual(InvertedResidualConfig(*block, width_mult=1.0), norm_layer))
    layers.append(conv(BLOCKS[-1][3], HIGH_CHANNELS, kernel_size=1))
    return nn.Sequential(*layers)


def demo_segmenter(num_classes: int | None = None) -> LRASPP:
    """The demo segmenter, randomly initialised; ``model.pretrained_cfg`` is its data config as timm reads it."""
    features = _features()
    backbone = IntermediateLayerGetter(features, return_layers={str(LOW): "low", str(len(features) - 1): "high"})
    model = LRASPP(backbone, LOW_CHANNELS, HIGH_CHANNELS, num_classes or NUM_CLASSES, INTER_CHANNELS)
    _init_weights(model)
    model.pretrained_cfg = dict(PRETRAINED_CFG, num_classes=num_classes or NUM_CLASSES)
    return model


def _init_weights(model: nn.Module) -> None:
    """MobileNetV3's initialisation (torchvision leaves the LR-ASPP head at PyTorch's defaults)."""
    for module in model.backbone.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def reset_segmenter_classes(model: LRASPP, num_classes: int) -> LRASPP:
    """New, untrained class convs (``low_classifier``, ``high_classifier``) for ``num_classes`` on the trained rest."""
    head = model.classifier
    head.low_classifier = nn.Conv2d(head.low_classifier.in_channels, num_classes, 1)
    head.high_classifier = nn.Conv2d(head.high_classifier.in_channels, num_classes, 1)
    model.pretrained_cfg = dict(model.pretrained_cfg, num_classes=num_classes)
    return model


class DemoSegmenterZoo(Zoo):
    name = "tilesearch"
    task = SEGMENTER
    se_families = (DEMO_SEGMENTER_NAME,)

    def names(self) -> list[str]:
        return [DEMO_SEGMENTER_NAME]

    def create(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        return demo_segmenter(num_classes)

    def pretrained(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        model = load_checkpoint(demo_segmenter(), CHECKPOINT)
        if num_classes is not None and num_classes != NUM_CLASSES:
            reset_segmenter_classes(model, num_classes)
        return model

    def default_input_size(self, name: str) -> tuple[int, int]:
        return IMAGE_SIZE

    def weights_location(self, name: str) -> str:
        return str(CHECKPOINT)

    def pretrained_label(self, name: str) -> str:
        return "the demo segmenter's trained weights (package data)"
