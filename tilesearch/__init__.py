"""tilesearch: per-block tiled squeeze-and-excite search for small activation buffers.

The pipeline, one subpackage per stage, each importing only the ones above it in this list:

* :mod:`tilesearch.core`    -- tiles, tile-config files, cost model and budgets, spaces, profiles, metrics (no torch)
* :mod:`tilesearch.nn`      -- the tiled SE module, the SE-flavour registry, discovery of SE blocks
* :mod:`tilesearch.zoo`     -- models by name (timm, torchvision, effdet, the demo network), checkpoints
* :mod:`tilesearch.data`    -- image folders, COCO, preprocessing, the decoded-image cache, synthesised images
* :mod:`tilesearch.scoring` -- zero-shot scores of a config, the one-block sensitivity scan
* :mod:`tilesearch.search`  -- the Optuna study, workers, run folders, the additive surrogate
* :mod:`tilesearch.deploy`  -- fine-tuning and export
* :mod:`tilesearch.demo`    -- the offline demo
* :mod:`tilesearch.cli`     -- the ``tilesearch`` command

The names below are re-exported here and imported on first use, so ``import
tilesearch.core`` stays free of torch.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "tilesearch.core": (
        "GAP", "BufferReport", "DataError", "HardwareProfile", "Metric", "SEBlock", "StudyError", "TileConfigFile",
        "TileSpec", "TilesearchError", "UnknownNameError", "buffer_report", "get_metric", "load_config", "load_profile",
        "load_space", "parse_budget", "parse_input_size", "parse_tile", "save_config", "tile_config",
    ),
    "tilesearch.nn": (
        "SEFlavour", "TiledSqueezeExcite", "apply_tiles", "current_tiles", "discover_se_blocks", "find_se_modules",
        "register_flavour",
    ),
    "tilesearch.zoo": ("create_model", "default_input_size", "discover_model", "load_checkpoint", "load_model"),
    "tilesearch.data": ("ImageSource", "register_source", "synthetic_images"),
    "tilesearch.scoring": ("Score", "Scorer", "SegmentationScorer", "evaluate_config", "evaluate_detection",
                           "evaluate_segmentation"),
    "tilesearch.search": ("RunSettings", "prepare_resume", "prepare_search", "run_search"),
    "tilesearch.deploy": ("export", "finetune"),
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'tilesearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
