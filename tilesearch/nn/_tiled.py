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
from tilesearch.nn._se_flavour import SEFlavour

# What nn.Module keeps about itself (parameters, buffers, submodules, hooks): shared with the adopted block.
_MODULE_STATE = frozenset(vars(nn.Module())) - {"training"}


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
        _, height, width = self.flavour.buffered_shape(self.block, tuple(x.shape[1:]))
        tile_h, tile_w = self.tile.resolve(height, width)
        if tile_h >= height and tile_w >= width:
            # One tile is GAP: the block's own code, so the result is bit-identical to SE.
            return self.block.forward(x)
        return self.flavour.forward_tiled(self.block, x, tile_h, tile_w)

    def extra_repr(self) -> str:
        return f"tile={self.tile}, block={type(self.block).__name__}"
