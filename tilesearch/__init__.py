"""tilesearch: per-block tiled squeeze-and-excite search for small activation buffers.

Pipeline stages, one module each:

* :mod:`tilesearch.tiles`     -- parse a tile choice (``GAP``, ``7xW``, ``Hx7``, ``7x7``)
* :mod:`tilesearch.tiled_se`  -- the tiled SE forward, applied to a model in place
* :mod:`tilesearch.discover`  -- find SE blocks and the tensor each sees
* :mod:`tilesearch.cost`      -- buffer and extra compute of a tile config
* :mod:`tilesearch.models`    -- the timm / torchvision / effdet model zoos
"""

from tilesearch.cost import BufferReport, HardwareProfile, buffer_report, load_profile
from tilesearch.discover import SEBlock, discover_model, discover_se_blocks
from tilesearch.errors import TilesearchError
from tilesearch.models import create_model, default_input_size
from tilesearch.tiled_se import apply_tiles, current_tiles, find_se_modules
from tilesearch.tiles import GAP, TileSpec, parse_tile, tile_config

__all__ = [
    "GAP",
    "BufferReport",
    "HardwareProfile",
    "SEBlock",
    "TileSpec",
    "TilesearchError",
    "apply_tiles",
    "buffer_report",
    "create_model",
    "current_tiles",
    "default_input_size",
    "discover_model",
    "discover_se_blocks",
    "find_se_modules",
    "load_profile",
    "parse_tile",
    "tile_config",
]
