"""The tiled SE module, the SE-flavour registry and discovery of a model's SE blocks.

* :class:`TiledSqueezeExcite` -- an SE block whose squeeze pools over tiles (Vosco et al., section 3.1)
* :func:`apply_tiles` -- swap a model's SE blocks for tiled ones, or re-tile them
* :func:`register_flavour` -- teach tilesearch a block class that generic discovery cannot handle
* :func:`discover_se_blocks` -- every SE block and the (C, H, W) it sees
"""

from tilesearch.nn._convert import (
    apply_tiles,
    block_type,
    current_tiles,
    find_se_modules,
    flavour_of,
    found_by,
    no_block_error,
    refused_blocks,
)
from tilesearch.nn._discover import discover_se_blocks, excite_macs, input_shape_of, largest_activation, stage_of
from tilesearch.nn._flavours import is_shipped, register_flavour
from tilesearch.nn._generic import Refused
from tilesearch.nn._se_flavour import Excite, SEFlavour, Squeeze, TiledForward, average_squeeze
from tilesearch.nn._tile_ops import expand_tiles, scale_by_tile, tiled_pool
from tilesearch.nn._tiled import TiledSqueezeExcite

__all__ = [
    "Refused",
    "Excite",
    "SEFlavour",
    "Squeeze",
    "TiledForward",
    "TiledSqueezeExcite",
    "apply_tiles",
    "average_squeeze",
    "block_type",
    "current_tiles",
    "discover_se_blocks",
    "excite_macs",
    "expand_tiles",
    "find_se_modules",
    "flavour_of",
    "found_by",
    "input_shape_of",
    "is_shipped",
    "largest_activation",
    "no_block_error",
    "refused_blocks",
    "register_flavour",
    "scale_by_tile",
    "stage_of",
    "tiled_pool",
]
