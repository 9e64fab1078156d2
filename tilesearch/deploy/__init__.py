"""Deploy a chosen config: fine-tune it briefly (the paper's recipe), export YAML, safetensors and ONNX.

To apply a config in your own code, use :func:`tilesearch.nn.apply_tiles` with
the exported ``config.yaml``.
"""

from tilesearch.deploy._choice import Choice, choose_config
from tilesearch.deploy._export import FORMATS, export, export_onnx, onnx_parity
from tilesearch.deploy._finetune import finetune, finetuned_weights, report_scorer, save_weights
from tilesearch.deploy._training import (
    FINETUNE_DEFAULTS,
    TRAININGS,
    ClassifierTraining,
    DetectorTraining,
    SegmenterTraining,
    Training,
    check_finetune_args,
    check_train_data,
    detection_loss,
    segmentation_loss,
    train_epochs,
    train_labels,
    training_for,
)

__all__ = [
    "FINETUNE_DEFAULTS",
    "FORMATS",
    "TRAININGS",
    "Choice",
    "ClassifierTraining",
    "DetectorTraining",
    "SegmenterTraining",
    "Training",
    "check_finetune_args",
    "check_train_data",
    "choose_config",
    "detection_loss",
    "export",
    "export_onnx",
    "finetune",
    "finetuned_weights",
    "onnx_parity",
    "report_scorer",
    "save_weights",
    "segmentation_loss",
    "train_epochs",
    "train_labels",
    "training_for",
]
