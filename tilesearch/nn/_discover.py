"""Find a model's SE blocks and the tensor each one sees.

One traced forward at the model's input size records, for every supported
channel-attention block (see :mod:`tilesearch.nn`), the (C, H, W) of its
input: the tensor whose global average pool forces an SE block to buffer it
whole (Vosco et al., section 1 and 3.2).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from tilesearch.core import SEBlock, TilesearchError
from tilesearch.nn._convert import block_type, find_se_modules, flavour_of

# Module-path patterns that name a stage, first match wins. The numbering follows
# each family's own terminology (EfficientNet stages 1-7, RegNet s1-s4, ResNet layer1-4).
_STAGE_PATTERNS: list[tuple[re.Pattern[str], int]] = [
    (re.compile(r"(?:^|\.)blocks\.(\d+)\.\d+(?:\.|$)"), 1),  # timm EfficientNet/MobileNetV3, effdet backbone
    (re.compile(r"(?:^|\.)s(\d+)\.b\d+(?:\.|$)"), 0),  # timm RegNet
    (re.compile(r"(?:^|\.)stages\.(\d+)(?:\.|$)"), 1),  # timm stage-based nets
    (re.compile(r"(?:^|\.)layer(\d+)(?:\.|$)"), 0),  # ResNet family
    (re.compile(r"(?:^|\.)trunk_output\.block(\d+)(?:\.|$)"), 0),  # torchvision RegNet
    (re.compile(r"(?:^|\.)features\.(\d+)\.\d+\.block(?:\.|$)"), 0),  # torchvision EfficientNet
]


def stage_of(name: str) -> int | None:
    """The stage number encoded in a block's module path, or ``None`` for flat families."""
    for pattern, offset in _STAGE_PATTERNS:
        match = pattern.search(name)
        if match:
            return int(match.group(1)) + offset
    return None


def excite_macs(module: nn.Module, channels: int) -> int:
    """Multiply-accumulates (plus bias adds) of one excite, the pycls counting convention."""
    macs = 0
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            macs += kh * kw * layer.in_channels * layer.out_channels // layer.groups
            macs += layer.out_channels if layer.bias is not None else 0
        elif isinstance(layer, nn.Conv1d):  # ECA: a 1-D conv sliding over the channels
            per_position = layer.kernel_size[0] * layer.in_channels * layer.out_channels // layer.groups
            macs += channels * (per_position + (layer.out_channels if layer.bias is not None else 0))
        elif isinstance(layer, nn.Linear):
            macs += layer.in_features * layer.out_features + (layer.out_features if layer.bias is not None else 0)
    return macs


def input_shape_of(input_size: int | tuple[int, int]) -> tuple[int, int, int, int]:
    """A batch-of-one NCHW shape for ``input_size`` (side, or (height, width))."""
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    return (1, 3, height, width)


@torch.no_grad()
def discover_se_blocks(model: nn.Module, input_size: int | tuple[int, int]) -> list[SEBlock]:
    """Every SE block of ``model`` with the (C, H, W) it sees at ``input_size``, in forward order."""
    modules = find_se_modules(model)
    if not modules:
        raise TilesearchError(f"{type(model).__name__} has no squeeze-and-excite block (nothing to tile)")
    seen: dict[str, tuple[int, int, int]] = {}
    order: list[str] = []

    def record(name: str):
        def hook(_module: nn.Module, args: tuple) -> None:
            if name not in seen:
                seen[name] = tuple(args[0].shape[1:])
                order.append(name)

        return hook

    handles = [module.register_forward_pre_hook(record(name)) for name, module in modules]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        model(torch.zeros(input_shape_of(input_size), device=device))
    except RuntimeError as error:  # e.g. a kernel larger than a tiny input's feature map
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TilesearchError(f"{type(model).__name__} cannot run at input size {input_size}: {reason}") from error
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    by_name = dict(modules)
    blocks = []
    for name in order:
        channels, height, width = seen[name]
        module, family = by_name[name], flavour_of(by_name[name]).family
        blocks.append(
            SEBlock(
                name=name,
                stage=stage_of(name),
                kind=block_type(module).__name__ + ("" if family == "se" else f" ({family})"),
                channels=channels,
                height=height,
                width=width,
                excite_macs=excite_macs(module, channels),
            )
        )
    return blocks
