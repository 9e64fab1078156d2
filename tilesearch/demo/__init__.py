"""The offline demos: synthetic data sets where context matters and the small SE networks trained on them.

``tilesearch run`` with no model and no data searches the classifier demo's pair
(``--demo segmentation``: the LR-ASPP segmenter's), so the whole pipeline runs
without a download. The network itself is in the zoo
(:data:`tilesearch.zoo.DEMO_MODEL_NAME`); ``python -m tilesearch.demo --rebuild``
retrains its committed checkpoint.
"""

from tilesearch.demo._dataset import CLASSES, SPLITS, dataset_stats, render_image, render_split, to_tensor, write_demo_dataset
from tilesearch.demo._run import (
    DEFAULT_DEMO,
    DEMO_BUDGET,
    DEMOS,
    DEMO_FINETUNE,
    DEMO_VAL_SUBSET,
    demo_data,
    demo_data_dir,
    demo_settings,
    get_demo,
    Demo,
    DemoData,
)
from tilesearch.demo._train import EVAL_TILES, accuracy, tile_accuracies, train_demo_model

__all__ = [
    "CLASSES",
    "DEFAULT_DEMO",
    "DEMOS",
    "DEMO_BUDGET",
    "Demo",
    "DemoData",
    "DEMO_FINETUNE",
    "DEMO_VAL_SUBSET",
    "EVAL_TILES",
    "SPLITS",
    "accuracy",
    "dataset_stats",
    "get_demo",
    "demo_data",
    "demo_data_dir",
    "demo_settings",
    "render_image",
    "render_split",
    "tile_accuracies",
    "to_tensor",
    "train_demo_model",
    "write_demo_dataset",
]
