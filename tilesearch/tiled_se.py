"""Tiled squeeze-and-excite forward that reuses an SE block's own weights.

Vosco et al., "Tiled Squeeze-and-Excite" (section 3.1, Fig. 3): the global
average pool of an SE block is replaced by an average pool whose kernel and
stride equal the tile, the unchanged excite runs once per tile (its layers are
1x1, so they act on every tile position at once), and each tile's gate scales
exactly the elements of that tile.

Two deliberate departures from the paper's reference code:

* a partial tile at the bottom/right edge averages only its valid elements
  (``avg_pool2d`` with ``ceil_mode=True`` and no padding), and
* the gate is broadcast back per tile, not by nearest-neighbour interpolation,
  which misaligns tiles when the tensor is not a multiple of the tile.

A model is tiled in place: :func:`apply_tiles` gives each SE block an
instance-level forward once and afterwards only changes the block's tile, so
re-tiling for the next config needs no rebuild and no weight reload. The
state dict is untouched, so checkpoints load either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from types import MethodType

import torch.nn.functional as F
from torch import Tensor, nn

from tilesearch.errors import TilesearchError
from tilesearch.tiles import GAP, TileChoice, TileConfig, TileSpec, tile_config

Excite = Callable[[nn.Module, Tensor], Tensor]
"""Maps pooled descriptors (B, C, nh, nw) to gates of the same shape."""


@dataclass(frozen=True)
class SEFlavour:
    """How one SE implementation squeezes and excites."""

    module_type: type[nn.Module]
    excite: Excite
    family: str


def _excite_timm_se_module(m: nn.Module, s: Tensor) -> Tensor:
    return m.gate(m.fc2(m.act(m.bn(m.fc1(s)))))


def _excite_timm_effective_se(m: nn.Module, s: Tensor) -> Tensor:
    return m.gate(m.fc(s))


def _excite_timm_squeeze_excite(m: nn.Module, s: Tensor) -> Tensor:
    return m.gate(m.conv_expand(m.act1(m.conv_reduce(s))))


def _excite_torchvision(m: nn.Module, s: Tensor) -> Tensor:
    return m.scale_activation(m.fc2(m.activation(m.fc1(s))))


def _per_tile_channel_rows(s: Tensor) -> Tensor:
    """(B, C, nh, nw) -> (B*nh*nw, 1, C): one row of channels per tile, for ECA's 1-D conv."""
    return s.permute(0, 2, 3, 1).reshape(-1, 1, s.shape[1])


def _from_channel_rows(y: Tensor, like: Tensor) -> Tensor:
    b, c, nh, nw = like.shape
    return y.reshape(b, nh, nw, c).permute(0, 3, 1, 2)


def _excite_timm_eca(m: nn.Module, s: Tensor) -> Tensor:
    y = m.conv(_per_tile_channel_rows(s))
    if m.act is not None:
        y = m.conv2(m.act(y))
    return _from_channel_rows(m.gate(y), s)


def _excite_timm_ceca(m: nn.Module, s: Tensor) -> Tensor:
    y = F.pad(_per_tile_channel_rows(s), (m.padding, m.padding), mode="circular")
    return _from_channel_rows(m.gate(m.conv(y)), s)


def _known_flavours() -> list[SEFlavour]:
    from timm.layers.eca import CecaModule, EcaModule
    from timm.layers.squeeze_excite import EffectiveSEModule, SEModule
    from timm.models._efficientnet_blocks import SqueezeExcite
    from torchvision.ops.misc import SqueezeExcitation

    return [
        SEFlavour(SqueezeExcite, _excite_timm_squeeze_excite, "se"),
        SEFlavour(SEModule, _excite_timm_se_module, "se"),
        SEFlavour(EffectiveSEModule, _excite_timm_effective_se, "ese"),
        SEFlavour(SqueezeExcitation, _excite_torchvision, "se"),
        SEFlavour(EcaModule, _excite_timm_eca, "eca"),
        SEFlavour(CecaModule, _excite_timm_ceca, "eca"),
    ]


_FLAVOURS: list[SEFlavour] | None = None


def flavour_of(module: nn.Module) -> SEFlavour | None:
    """The :class:`SEFlavour` of ``module``, or ``None`` if it is no supported SE block."""
    global _FLAVOURS
    if _FLAVOURS is None:
        _FLAVOURS = _known_flavours()
    for flavour in _FLAVOURS:
        if isinstance(module, flavour.module_type):
            return flavour
    return None


def tiled_pool(x: Tensor, tile_h: int, tile_w: int, mode: str = "avg") -> Tensor:
    """Pool ``x`` (B, C, H, W) over non-overlapping tiles; edge tiles use only valid elements."""
    kernel = (tile_h, tile_w)
    if kernel == (1, 1):  # every element is its own tile
        return x
    if mode == "max":
        return F.max_pool2d(x, kernel, stride=kernel, ceil_mode=True)
    # Without padding, ceil_mode's partial windows divide by the number of valid elements.
    return F.avg_pool2d(x, kernel, stride=kernel, ceil_mode=True)


def scale_by_tile(x: Tensor, gate: Tensor, tile_h: int, tile_w: int) -> Tensor:
    """Multiply each tile of ``x`` by its gate: gate[..., i, j] scales tile (i, j) exactly."""
    b, c, h, w = x.shape
    nh, nw = gate.shape[-2:]
    if h % tile_h == 0 and w % tile_w == 0:
        # A broadcast view: no gate tensor of the input's size is materialized.
        tiles = x.reshape(b, c, nh, tile_h, nw, tile_w)
        return (tiles * gate.reshape(b, c, nh, 1, nw, 1)).reshape(b, c, h, w)
    full = gate.repeat_interleave(tile_h, dim=2)[:, :, :h].repeat_interleave(tile_w, dim=3)[:, :, :, :w]
    return x * full


def _tiled_forward(self: nn.Module, x: Tensor) -> Tensor:
    tile_h, tile_w = self.tse_tile.resolve(x.shape[-2], x.shape[-1])
    if tile_h >= x.shape[-2] and tile_w >= x.shape[-1]:
        # One tile is GAP: run the block's own code so the result is bit-identical to SE.
        return type(self).forward(self, x)
    pooled = tiled_pool(x, tile_h, tile_w)
    if getattr(self, "add_maxpool", False):
        pooled = 0.5 * pooled + 0.5 * tiled_pool(x, tile_h, tile_w, mode="max")
    return scale_by_tile(x, self.tse_flavour.excite(self, pooled), tile_h, tile_w)


def find_se_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every supported GAP-based channel-attention block in ``model``, by module path."""
    return [(name, module) for name, module in model.named_modules() if flavour_of(module) is not None]


def apply_tiles(model: nn.Module, tiles: TileChoice | TileConfig | os.PathLike | object) -> nn.Module:
    """Tile every SE block of ``model`` in place and return the model.

    ``tiles`` is one tile for every block (``"7xW"`` or a :class:`TileSpec`), a
    mapping from block name (module path) to tile (blocks not named stay GAP),
    or a saved tile config (a :class:`~tilesearch.config.TileConfigFile` or the
    path of its YAML), whose block names must match the model's exactly.
    Calling it again re-tiles the same model without rebuilding it.
    """
    blocks = find_se_modules(model)
    if not blocks:
        raise TilesearchError(f"{type(model).__name__} has no squeeze-and-excite block to tile")
    names = [name for name, _ in blocks]
    tiles = _tiles_of_config_file(tiles, names)
    config = tile_config(names, tiles)
    for name, module in blocks:
        if "forward" not in module.__dict__:
            module.tse_flavour = flavour_of(module)
            module.forward = MethodType(_tiled_forward, module)
        module.tse_tile = config[name]
    return model


def _tiles_of_config_file(tiles, names: list[str]):
    """The tiles of a config file (object or YAML path), checked against the model's block names."""
    from tilesearch.config import TileConfigFile, load_config

    if isinstance(tiles, (str, os.PathLike)) and str(tiles).endswith((".yaml", ".yml")):
        tiles = load_config(tiles)
    if not isinstance(tiles, TileConfigFile):
        return tiles
    missing = [name for name in names if name not in tiles.tiles]
    extra = [name for name in tiles.tiles if name not in names]
    if missing or extra:
        parts = ([f"the model's {', '.join(missing[:3])} missing from it"] if missing else []) + (
            [f"{', '.join(extra[:3])} not in the model"] if extra else []
        )
        raise TilesearchError(
            f"tile config for {tiles.model!r} does not match this model's SE blocks: {'; '.join(parts)}"
        )
    return tiles.tiles


def current_tiles(model: nn.Module) -> dict[str, TileSpec]:
    """The tile each SE block of ``model`` uses now (GAP for blocks never tiled)."""
    return {name: getattr(module, "tse_tile", GAP) for name, module in find_se_modules(model)}
