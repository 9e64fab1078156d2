"""The tiled squeeze-and-excite block: an SE block whose squeeze pools over tiles.

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

:class:`TiledSqueezeExcite` takes the place of an SE block in its model (timm's
module-swapping pattern): it adopts the block's parameters, buffers, submodules
and hooks, so state-dict keys do not change and checkpoints load either way. Its
``tile`` attribute is the only thing re-tiling changes.
"""

from __future__ import annotations

from torch import Tensor, nn

from tilesearch.core import GAP, TileSpec
from tilesearch.nn._flavours import SEFlavour

# What nn.Module keeps about itself (parameters, buffers, submodules, hooks): shared with the adopted block.
_MODULE_STATE = frozenset(vars(nn.Module())) - {"training"}


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


class TiledSqueezeExcite(nn.Module):
    """An SE block with a tile: GAP runs the block's own forward, any other tile the tiled one.

    Built from the block it replaces; the block's parameters, buffers, submodules and hooks
    become this module's (the same objects), and the block itself is kept, unregistered, for
    its own forward and its settings (``add_maxpool``, ``padding``...), which its flavour's
    excite reads.
    """

    def __init__(self, block: nn.Module, flavour: SEFlavour, tile: TileSpec = GAP) -> None:
        super().__init__()
        self.__dict__.update({key: value for key, value in vars(block).items() if key in _MODULE_STATE})
        object.__setattr__(self, "block", block)  # not a submodule: its state is already ours
        self.flavour = flavour
        self.tile = tile
        self.training = block.training

    def _replicate_for_data_parallel(self) -> TiledSqueezeExcite:
        # nn.DataParallel gives each replica new dicts of parameters and submodules: its block must read those.
        replica = super()._replicate_for_data_parallel()
        block = self.block._replicate_for_data_parallel()
        block.__dict__.update({key: value for key, value in vars(replica).items() if key in _MODULE_STATE})
        object.__setattr__(replica, "block", block)
        return replica

    def train(self, mode: bool = True) -> TiledSqueezeExcite:
        self.block.training = mode  # the block's own forward may read its flag
        return super().train(mode)

    def forward(self, x: Tensor) -> Tensor:
        tile_h, tile_w = self.tile.resolve(x.shape[-2], x.shape[-1])
        if tile_h >= x.shape[-2] and tile_w >= x.shape[-1]:
            # One tile is GAP: the block's own code, so the result is bit-identical to SE.
            return self.block.forward(x)
        pooled = self.flavour.squeeze(self.block, x, tile_h, tile_w)
        return scale_by_tile(x, self.flavour.excite(self.block, pooled), tile_h, tile_w)

    def extra_repr(self) -> str:
        return f"tile={self.tile}, block={type(self.block).__name__}"
