"""The SE flavour: how one channel-attention implementation squeezes, excites and gates, per tile.

Vosco et al. (section 3.1) keep a block's excite unchanged and only change what
it is fed: one descriptor per tile instead of one per tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from tilesearch.nn._tile_ops import scale_by_tile, tiled_pool

Excite = Callable[[nn.Module, Tensor], Tensor]
"""``excite(block, pooled)``: pooled descriptors (B, C, nh, nw) to gates of the same shape, with the block's layers."""
Squeeze = Callable[[nn.Module, Tensor, int, int], Tensor]
"""``squeeze(block, x, tile_h, tile_w)``: the input (B, C, H, W) to one descriptor per tile (B, C, nh, nw)."""
TiledForward = Callable[[nn.Module, Tensor, int, int], Tensor]
"""``tiled(block, x, tile_h, tile_w)``: the block's whole output with every global pool done per tile."""
BufferedShape = Callable[[nn.Module, tuple[int, ...]], tuple[int, int, int]]
"""``buffered_shape(block, input_shape)``: the (C, H, W) a block must hold whole under GAP, from its input's shape."""
Refusal = Callable[[nn.Module], "str | None"]
"""``refusal(block)``: why this instance of a registered class cannot be tiled, or ``None`` when it can."""


def average_squeeze(block: nn.Module, x: Tensor, tile_h: int, tile_w: int) -> Tensor:
    """The squeeze of SE: the average of each tile."""
    return tiled_pool(x, tile_h, tile_w)


def squeeze_with_optional_max(block: nn.Module, x: Tensor, tile_h: int, tile_w: int) -> Tensor:
    """The average of each tile, and with the block's ``add_maxpool`` half average, half max
    (timm's SEModule, EffectiveSEModule and GatherExcite)."""
    pooled = tiled_pool(x, tile_h, tile_w)
    if getattr(block, "add_maxpool", False):
        pooled = 0.5 * pooled + 0.5 * tiled_pool(x, tile_h, tile_w, mode="max")
    return pooled


def input_buffer(block: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The block buffers its input; leading non-spatial axes (paths, radix) count as channels."""
    *channels, height, width = input_shape
    count = 1
    for size in channels:
        count *= size
    return count, height, width


@dataclass(frozen=True)
class SEFlavour:
    """How one channel-attention implementation pools and gates; ``family`` names its kind (se, eca, gc...).

    Plain SE blocks give ``excite`` (and ``squeeze`` when they do not only average); blocks whose
    output is more than the input times a gate give ``tiled``, their whole forward per tile.
    """

    module_type: type[nn.Module]
    excite: Excite | None = None
    family: str = "se"
    squeeze: Squeeze = average_squeeze
    tiled: TiledForward | None = None
    buffered_shape: BufferedShape = input_buffer
    refusal: Refusal | None = None
    excite_layers: tuple[str, ...] = ()  # submodules run once per tile; () means all of them

    def forward_tiled(self, block: nn.Module, x: Tensor, tile_h: int, tile_w: int) -> Tensor:
        """The block's output with its global pool replaced by a (tile_h, tile_w) tiled one."""
        if self.tiled is not None:
            return self.tiled(block, x, tile_h, tile_w)
        return scale_by_tile(x, self.excite(block, self.squeeze(block, x, tile_h, tile_w)), tile_h, tile_w)

    def refuses(self, block: nn.Module) -> str | None:
        return None if self.refusal is None else self.refusal(block)
