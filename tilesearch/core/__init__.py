"""Tiles, tile-config files, the cost model and budgets, search spaces, hardware profiles, metrics.

The bottom layer: plain Python and YAML, no torch, so a config can be read, costed
and checked anywhere. The shipped profiles and search spaces are package data
(``tilesearch/core/profiles``, ``tilesearch/core/spaces``).
"""

from tilesearch.core._blocks import SEBlock
from tilesearch.core._config_file import SCHEMA, TileConfigFile, config_document, load_config, save_config
from tilesearch.core._cost import (
    BUDGET_FORMS,
    BlockCost,
    BufferReport,
    HardwareProfile,
    available_profiles,
    buffer_report,
    format_count,
    is_share,
    load_profile,
    parse_budget,
    parse_share,
)
from tilesearch.core._errors import DataError, StudyError, TilesearchError, TilesearchWarning, UnknownNameError, first_line
from tilesearch.core._files import atomic_path, staged_files, write_text_atomically
from tilesearch.core._metrics import CLASSIFIER, DETECTOR, METRICS, SEGMENTER, Metric, get_metric, metrics_for
from tilesearch.core._sizes import InputSize, parse_input_size
from tilesearch.core._spaces import GROUPINGS, Param, SearchSpace, available_spaces, distinct_choices, load_space
from tilesearch.core._tiles import ACCEPTED_FORMS, GAP, TileChoice, TileConfig, TileSpec, parse_tile, tile_config
from tilesearch.core._yaml import parse_yaml, read_yaml

__all__ = [
    "ACCEPTED_FORMS",
    "BUDGET_FORMS",
    "CLASSIFIER",
    "DETECTOR",
    "GAP",
    "GROUPINGS",
    "METRICS",
    "SCHEMA",
    "SEGMENTER",
    "BlockCost",
    "BufferReport",
    "DataError",
    "HardwareProfile",
    "InputSize",
    "Metric",
    "Param",
    "SEBlock",
    "SearchSpace",
    "StudyError",
    "TileChoice",
    "TileConfig",
    "TileConfigFile",
    "TileSpec",
    "TilesearchError",
    "TilesearchWarning",
    "UnknownNameError",
    "atomic_path",
    "available_profiles",
    "available_spaces",
    "buffer_report",
    "config_document",
    "distinct_choices",
    "first_line",
    "format_count",
    "get_metric",
    "is_share",
    "load_config",
    "load_profile",
    "load_space",
    "metrics_for",
    "parse_budget",
    "parse_input_size",
    "parse_share",
    "parse_tile",
    "parse_yaml",
    "read_yaml",
    "save_config",
    "staged_files",
    "tile_config",
    "write_text_atomically",
]
