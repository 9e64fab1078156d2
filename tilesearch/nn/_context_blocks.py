"""Flavours for timm's global-context blocks that are more than a gate on their input.

Each one pools its whole input (or a tensor made from it) before it can emit a
single output element, so it stalls a dataflow pipeline exactly like SE
(Vosco et al., section 1). Tiled, each pools per tile with its weights unchanged:

* ``GlobalContext`` (GCNet, Cao et al. 2019): attention pooling, a softmax over
  each tile's positions; the context's scale and add transforms run per tile.
  Buffers its input, C x H x W.
* ``SelectiveKernelAttn`` (SKNet, Li et al. 2019): the sum of the branches,
  averaged per tile, picks per-tile branch weights. Buffers the stacked
  branches it is given, paths x C x H x W, since every branch must be held
  until its weights are known.
* ``SplitAttn`` (ResNeSt, Zhang et al. 2020): the same over the radix splits of
  its grouped convolution; buffers that convolution's output, radix x C x H' x W'.
* ``GatherExcite`` (Hu et al. 2018) with a global extent and no parametric
  gather: SE with an optional max pool; buffers its input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tilesearch.nn._se_flavour import SEFlavour, squeeze_with_optional_max
from tilesearch.nn._tile_ops import (
    expand_tiles,
    fold_tiles,
    scale_by_tile,
    tiled_attention_pool,
    tiled_pool,
    unfold_tiles,
)


def _global_context(m: nn.Module, x: Tensor, tile_h: int, tile_w: int) -> Tensor:
    height, width = x.shape[-2:]
    if m.conv_attn is not None:
        context = tiled_attention_pool(x, m.conv_attn(x), tile_h, tile_w)
    else:
        context = tiled_pool(x, tile_h, tile_w)
    if m.mlp_scale is not None:
        x = scale_by_tile(x, m.gate(m.mlp_scale(context)), tile_h, tile_w)
    if m.mlp_add is not None:
        x = x + expand_tiles(m.mlp_add(context), tile_h, tile_w, height, width)
    return x


def _selective_kernel_attn(m: nn.Module, x: Tensor, tile_h: int, tile_w: int) -> Tensor:
    """Branch weights (B, paths, C, H, W), constant over each tile, for the parent to multiply and sum."""
    batch, paths, channels, height, width = x.shape
    pooled = tiled_pool(x.sum(1), tile_h, tile_w)
    logits = m.fc_select(m.act(m.bn(m.fc_reduce(pooled))))
    nh, nw = logits.shape[-2:]
    weights = torch.softmax(logits.view(batch, paths, channels, nh, nw), dim=1)
    return expand_tiles(weights, tile_h, tile_w, height, width)


def _split_attn(m: nn.Module, x: Tensor, tile_h: int, tile_w: int) -> Tensor:
    x = m.act0(m.drop(m.bn0(m.conv(x))))
    batch, radix_channels, height, width = x.shape
    if m.radix > 1:
        x = x.reshape((batch, m.radix, radix_channels // m.radix, height, width))
        pooled = tiled_pool(x.sum(dim=1), tile_h, tile_w)
    else:
        pooled = tiled_pool(x, tile_h, tile_w)
    logits = m.fc2(m.act1(m.bn1(m.fc1(pooled))))
    grid = tuple(logits.shape[-2:])
    # RadixSoftmax mixes the channels of one descriptor: give it each tile as its own batch entry.
    attn = unfold_tiles(m.rsoftmax(fold_tiles(logits)), batch, grid)
    attn = expand_tiles(attn, tile_h, tile_w, height, width)
    if m.radix > 1:
        out = (x * attn.reshape((batch, m.radix, radix_channels // m.radix, height, width))).sum(dim=1)
    else:
        out = x * attn
    return out.contiguous()


def _split_attn_buffer(m: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The grouped convolution's output, radix x C x H' x W', is what the attention pools."""
    conv: nn.Conv2d = m.conv
    sides = []
    for side, k, s, p, d in zip(input_shape[-2:], conv.kernel_size, conv.stride, conv.padding, conv.dilation):
        sides.append((side + 2 * p - d * (k - 1) - 1) // s + 1)
    return conv.out_channels, sides[0], sides[1]


def _gather_excite(m: nn.Module, pooled: Tensor) -> Tensor:
    return m.gate(m.mlp(pooled))


def _gather_excite_refusal(m: nn.Module) -> str | None:
    if m.extent != 0:
        return f"gathers over a local extent of {m.extent}, not the whole tensor: nothing global to tile"
    if m.gather is not None:
        return "its global gather is a learned depthwise convolution as large as the feature map, not a pool"
    return None


def context_flavours() -> list[SEFlavour]:
    """timm's global-context blocks (imported on first use)."""
    from timm.layers.gather_excite import GatherExcite
    from timm.layers.global_context import GlobalContext
    from timm.layers.selective_kernel import SelectiveKernelAttn
    from timm.layers.split_attn import SplitAttn

    return [
        SEFlavour(GlobalContext, family="gc", tiled=_global_context, excite_layers=("mlp_scale", "mlp_add")),
        SEFlavour(SelectiveKernelAttn, family="sk", tiled=_selective_kernel_attn),
        SEFlavour(SplitAttn, family="splat", tiled=_split_attn, buffered_shape=_split_attn_buffer,
                  excite_layers=("fc1", "fc2")),
        SEFlavour(GatherExcite, _gather_excite, "ge", squeeze_with_optional_max, refusal=_gather_excite_refusal,
                  excite_layers=("mlp",)),
    ]
