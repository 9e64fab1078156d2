"""The tiled SE module, the SE-flavour registry and discovery of a model's SE blocks.

* :class:`TiledSqueezeExcite` -- an SE block whose squeeze pools over tiles (Vosco et al., section 3.1)
* :func:`apply_tiles` -- swap a model's SE blocks for tiled ones, or re-tile them
* :func:`register_flavour` -- teach tilesearch a user's own SE class
* :func:`discover_se_blocks` -- every SE block and the (C, H, W) it sees
"""

from tilesearch.nn._convert import apply_tiles, block_type, current_tiles, find_se_modules, flavour_of
from tilesearch.nn._discover import discover_se_blocks, excite_macs, input_shape_of, largest_activation, stage_of
from tilesearch.nn._flavours import Excite, SEFlavour, Squeeze, average_squeeze, register_flavour, tiled_pool
from tilesearch.nn._tiled import TiledSqueezeExcite, scale_by_tile

__all__ = [
    "Excite",
    "SEFlavour",
    "Squeeze",
    "TiledSqueezeExcite",
    "apply_tiles",
    "average_squeeze",
    "block_type",
    "current_tiles",
    "discover_se_blocks",
    "excite_macs",
    "find_se_modules",
    "flavour_of",
    "input_shape_of",
    "largest_activation",
    "register_flavour",
    "scale_by_tile",
    "stage_of",
    "tiled_pool",
]
