"""Model zoos: timm, torchvision, effdet, the offline demo's network and the user's own code; checkpoints and pretrained weights.

Each source is a :class:`Zoo` in a registry (:func:`register_zoo`); a model name
is routed to the zoo that owns it by :func:`model_source`.
"""

from tilesearch.zoo._checkpoint import load_checkpoint
from tilesearch.zoo._demo import DEMO_MODEL_NAME, DemoZoo, demo_network
from tilesearch.zoo._demo_segmenter import DEMO_SEGMENTER_NAME, DemoSegmenterZoo, demo_segmenter
from tilesearch.zoo._effdet import EffdetZoo
from tilesearch.zoo._models import (
    BlockCount,
    DiscoveredModel,
    cache_dir,
    count_se_blocks,
    create_model,
    default_input_size,
    describe_weights,
    discover_model,
    load_model,
    se_block_counts,
)
from tilesearch.zoo._smp import SmpZoo
from tilesearch.zoo._timm import TimmZoo
from tilesearch.zoo._torchvision import TorchvisionSegmentationZoo, TorchvisionZoo
from tilesearch.zoo._user_code import UserCodeZoo, is_code_reference, load_callable
from tilesearch.zoo._zoo import ModelSource, Zoo, all_model_names, matching_names, model_source, register_zoo

for _zoo in (UserCodeZoo(), DemoZoo(), DemoSegmenterZoo(), TorchvisionZoo(), TorchvisionSegmentationZoo(), SmpZoo(), EffdetZoo(), TimmZoo()):  # first owner of a name wins
    register_zoo(_zoo)

__all__ = [
    "BlockCount",
    "DEMO_MODEL_NAME",
    "DEMO_SEGMENTER_NAME",
    "DiscoveredModel",
    "ModelSource",
    "UserCodeZoo",
    "Zoo",
    "all_model_names",
    "cache_dir",
    "count_se_blocks",
    "create_model",
    "default_input_size",
    "demo_network",
    "demo_segmenter",
    "describe_weights",
    "discover_model",
    "is_code_reference",
    "load_callable",
    "load_checkpoint",
    "load_model",
    "matching_names",
    "model_source",
    "register_zoo",
    "se_block_counts",
]
