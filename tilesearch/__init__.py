"""tilesearch: per-block tiled squeeze-and-excite search for small activation buffers.

Pipeline stages, one module each:

* :mod:`tilesearch.tiles`     -- parse a tile choice (``GAP``, ``7xW``, ``Hx7``, ``7x7``)
* :mod:`tilesearch.tiled_se`  -- the tiled SE forward, applied to a model in place
* :mod:`tilesearch.discover`  -- find SE blocks and the tensor each sees
* :mod:`tilesearch.cost`      -- buffer and extra compute of a tile config
* :mod:`tilesearch.score`     -- zero-shot accuracy of a config on decoded images
* :mod:`tilesearch.search`    -- the Optuna study (with :mod:`~tilesearch.space`, :mod:`~tilesearch.results`)
* :mod:`tilesearch.models`, :mod:`tilesearch.data` -- model zoos and weights, images and preprocessing
"""

from tilesearch.config import load_config, save_config
from tilesearch.cost import BufferReport, HardwareProfile, buffer_report, load_profile, parse_budget
from tilesearch.discover import SEBlock, discover_model, discover_se_blocks
from tilesearch.errors import TilesearchError
from tilesearch.models import create_model, default_input_size, load_model
from tilesearch.score import Score, Scorer, evaluate_config
from tilesearch.search import RunSettings, prepare_resume, prepare_search, run_search
from tilesearch.tiled_se import apply_tiles, current_tiles, find_se_modules
from tilesearch.tiles import GAP, TileSpec, parse_tile, tile_config

__all__ = [
    "GAP",
    "BufferReport",
    "HardwareProfile",
    "RunSettings",
    "SEBlock",
    "Score",
    "Scorer",
    "TileSpec",
    "TilesearchError",
    "apply_tiles",
    "buffer_report",
    "create_model",
    "current_tiles",
    "default_input_size",
    "discover_model",
    "discover_se_blocks",
    "evaluate_config",
    "find_se_modules",
    "load_config",
    "load_model",
    "load_profile",
    "parse_budget",
    "parse_tile",
    "prepare_resume",
    "prepare_search",
    "run_search",
    "save_config",
    "tile_config",
]

import tilesearch.demo  # noqa: E402,F401  (registers the demo network, tilesearch_demo_net, with timm)
