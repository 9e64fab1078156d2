"""Zero-shot scores of tile configs: classifiers, detectors and segmenters, the one-block sensitivity scan.

Vosco et al. (section 4.3, Table 2, "TSE^aw") assign a trained network's SE
weights to TSE unchanged and measure what is lost; a scorer holds one model,
re-tiled in place per config, and images decoded once.
"""

from tilesearch.scoring._classifier import Score, Scorer, kl_divergence, model_num_classes
from tilesearch.scoring._detector import (
    DetectionScore,
    DetectionScorer,
    coco_map,
    detection_divergence,
    flatten_maps,
    pseudo_ground_truth,
)
from tilesearch.scoring._device import available_memory, check_memory, memory_estimate, resolve_device
from tilesearch.scoring._evaluate import (
    DETECTOR_MEAN,
    DETECTOR_STD,
    evaluate_config,
    evaluate_detection,
    evaluate_segmentation,
)
from tilesearch.scoring._heatmap import save_heatmap
from tilesearch.scoring._intervals import PerImage, drop_interval
from tilesearch.scoring._segmenter import (
    segmentation_batch_size,
    segmenter_classes,
    segmenter_normalisation,
    SegmentationScore,
    SegmentationScorer,
    confusion_matrix,
    miou,
    pixel_accuracy,
    segmentation_logits,
)
from tilesearch.scoring._sensitivity import PrefixCache, SensitivityRow, scan

__all__ = [
    "DETECTOR_MEAN",
    "DETECTOR_STD",
    "DetectionScore",
    "DetectionScorer",
    "PerImage",
    "PrefixCache",
    "Score",
    "Scorer",
    "SegmentationScore",
    "SegmentationScorer",
    "SensitivityRow",
    "available_memory",
    "check_memory",
    "coco_map",
    "confusion_matrix",
    "detection_divergence",
    "drop_interval",
    "evaluate_config",
    "evaluate_detection",
    "evaluate_segmentation",
    "flatten_maps",
    "kl_divergence",
    "memory_estimate",
    "miou",
    "model_num_classes",
    "pixel_accuracy",
    "pseudo_ground_truth",
    "resolve_device",
    "save_heatmap",
    "segmentation_batch_size",
    "segmenter_classes",
    "segmenter_normalisation",
    "scan",
    "segmentation_logits",
]
