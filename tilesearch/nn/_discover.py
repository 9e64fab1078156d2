"""Find a model's SE blocks and the tensor each one sees.

One traced forward at the model's input size records, for every supported
channel-attention block (see :mod:`tilesearch.nn`), the (C, H, W) of its
input: the tensor whose global average pool forces an SE block to buffer it
whole (Vosco et al., section 1 and 3.2).
"""

from __future__ import annotations

import copy
import re
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from tilesearch.core import SEBlock, TilesearchError, TilesearchWarning, first_line
from tilesearch.nn._convert import block_type, find_se_modules, flavour_of, no_block_error
from tilesearch.nn._generic import refuse
from tilesearch.nn._se_flavour import SEFlavour
from tilesearch.nn._tiled import TiledSqueezeExcite

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


def excite_macs(module: nn.Module, channels: int, layers: tuple[str, ...] = ()) -> int:
    """Multiply-accumulates (plus bias adds) of one excite, the pycls counting convention.

    ``layers`` names the submodules that run once per tile (all of them when empty).
    """
    macs = 0
    parts = [module.get_submodule(name) for name in layers if getattr(module, name, None) is not None] if layers else [module]
    for layer in (layer for part in parts for layer in part.modules()):
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


@dataclass
class _Trace:
    """What one forward at an input size showed: each SE block's input shape, and the largest activation."""

    se_inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)  # input shape per block, in forward order
    largest_activation: int = 0  # elements of the largest output of any leaf module, per image


def _meta_copy(model: nn.Module) -> nn.Module | None:
    """The model with every tensor on the meta device (shapes only), or None when it cannot be copied there."""
    try:
        return copy.deepcopy(model).to("meta")
    except (NotImplementedError, RuntimeError, TypeError):
        return None


@torch.no_grad()
def _trace(model: nn.Module, input_size: int | tuple[int, int]) -> _Trace:
    """One forward of a single blank image, on the meta device where the model allows it: no memory, no compute,
    so a size too large to run is traced (and can be refused) instead of crashing the process."""
    meta = _meta_copy(model)
    try:
        if meta is not None:
            try:
                return _forward_trace(meta, input_size, torch.device("meta"))
            except (NotImplementedError, RuntimeError) as error:
                if _is_size_error(error):
                    raise
        # The model cannot be copied to the meta device, or an op has no meta kernel: trace for real.
        param = next(model.parameters(), None)
        return _forward_trace(model, input_size, param.device if param is not None else torch.device("cpu"))
    except (NotImplementedError, RuntimeError) as error:
        raise TilesearchError(f"{type(model).__name__} cannot run at input size {input_size}: {first_line(error)}") from error


def _is_size_error(error: Exception) -> bool:
    """A kernel larger than a tiny input's feature map: the input size's fault, not the meta device's."""
    text = str(error)
    return isinstance(error, RuntimeError) and ("too small" in text or "Kernel size can't be greater" in text
                                                or "Output size is too small" in text)


def _forward_trace(model: nn.Module, input_size: int | tuple[int, int], device: torch.device) -> _Trace:
    trace = _Trace()
    se_modules = {module: name for name, module in find_se_modules(model)}

    def record_input(module: nn.Module, args: tuple) -> None:
        trace.se_inputs.setdefault(se_modules[module], tuple(args[0].shape[1:]))  # without the batch

    def record_output(_module: nn.Module, _args: tuple, output) -> None:
        if isinstance(output, torch.Tensor):
            trace.largest_activation = max(trace.largest_activation, output.numel())

    handles = [module.register_forward_pre_hook(record_input) for module in se_modules]
    handles += [module.register_forward_hook(record_output) for module in model.modules() if not list(module.children())]
    was_training = model.training
    try:
        model.eval()
        model(torch.zeros(input_shape_of(input_size), device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return trace


def discover_se_blocks(model: nn.Module, input_size: int | tuple[int, int]) -> list[SEBlock]:
    """Every tileable block of ``model`` with the (C, H, W) it buffers at ``input_size``, in forward order.

    Each block is checked first: its tiled forward with one tile covering the tensor must give
    the block's own output. A block that fails is reported (a warning), left as it is and not
    returned; the others are.
    """
    modules = dict(find_se_modules(model))
    if not modules:
        raise no_block_error(model)
    blocks = []
    for name, input_shape in _trace(model, input_size).se_inputs.items():
        module, flavour = modules[name], flavour_of(modules[name])
        failure = gap_mismatch(module, flavour, input_shape)
        if failure:
            refuse(module, failure)
            warnings.warn(f"block {name} ({block_type(module).__name__}) is left as it is: {failure}",
                          TilesearchWarning, stacklevel=2)
            continue
        channels, height, width = flavour.buffered_shape(module, input_shape)
        blocks.append(
            SEBlock(
                name=name,
                stage=stage_of(name),
                kind=block_type(module).__name__ + ("" if flavour.family == "se" else f" ({flavour.family})"),
                channels=channels,
                height=height,
                width=width,
                excite_macs=excite_macs(module, channels, flavour.excite_layers),
            )
        )
    if not blocks:
        raise TilesearchError(f"{type(model).__name__} has no block whose tiled form reproduces it; see the warnings above")
    return blocks


_CHECK_SIDE = 24  # the check's spatial size: a one-tile reconstruction does not depend on it


@torch.no_grad()
def gap_mismatch(module: nn.Module, flavour: SEFlavour, input_shape: tuple[int, ...]) -> str | None:
    """Why the tiled forward of ``module`` with one tile over the whole tensor differs from its own, or None.

    Run on a seeded random input of the block's channels (spatial sides capped, since a one-tile
    reconstruction does not depend on them); skipped for blocks whose weights are not real tensors.
    """
    param = next(module.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if device.type == "meta":
        return None
    block = module.block if isinstance(module, TiledSqueezeExcite) else module
    *leading, height, width = input_shape
    shape = (2, *leading, min(height, _CHECK_SIDE), min(width, _CHECK_SIDE))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator).to(device=device, dtype=param.dtype if param is not None else None)
    was_training = block.training
    block.eval()
    try:
        expected = block.forward(x.clone())
        _, buffered_h, buffered_w = flavour.buffered_shape(block, tuple(shape[1:]))
        actual = flavour.forward_tiled(block, x.clone(), buffered_h, buffered_w)
    except Exception as error:  # the user's code may raise anything
        return f"its tiled forward fails ({type(error).__name__}: {first_line(error, 160)})"
    finally:
        block.train(was_training)
    if actual.shape != expected.shape:
        try:  # a per-tile gate at full resolution where the block returns one broadcast over H x W
            expected = expected.expand_as(actual)
        except RuntimeError:
            return f"its tiled forward gives shape {tuple(actual.shape)}, not {tuple(expected.shape)}"
    # Pools sum in another order than the block's own mean: allow rounding, relative to the output's scale.
    if not torch.allclose(actual, expected, rtol=1e-4, atol=1e-5 * max(1.0, expected.abs().max().item())):
        gap = (actual - expected).abs().max().item()
        return f"its tiled forward with one tile differs from its own output by up to {gap:.3g}"
    return None


def largest_activation(model: nn.Module, input_size: int | tuple[int, int]) -> int:
    """Elements of the largest tensor any layer of ``model`` outputs for one image at ``input_size``."""
    return _trace(model, input_size).largest_activation
