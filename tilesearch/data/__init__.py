"""Images and annotations: image folders, COCO, segmentation label maps, preprocessing, the decoded-image cache, flips, synthesised images.

Everything a scorer or a fine-tune reads is decoded here once, to uint8 tensors,
and normalised per batch by the one :func:`normalize`.
"""

from tilesearch.data._augment import flip_boxes, flip_images, flip_masks
from tilesearch.data._cache import cache_file, load_cache, save_cache
from tilesearch.data._coco import DetectionImages, decode_detection_images, detection_targets, image_listing, load_coco
from tilesearch.data._folders import FlatFolder, image_folder, random_subset, seeded_order, stratified_split
from tilesearch.data._images import ImageSet, decode_images
from tilesearch.data._segmentation import SegmentationSet, decode_segmentation, segmentation_pairs
from tilesearch.data._synthetic import (
    DEFAULT_SOURCE,
    ImageSource,
    batchnorm_layers,
    get_source,
    image_sources,
    register_source,
    synthesis_key,
    synthetic_images,
    weights_digest,
)
from tilesearch.data._preprocessing import INTERPOLATIONS, Preprocessing, normalize, resolve_preprocessing

__all__ = [
    "DEFAULT_SOURCE",
    "INTERPOLATIONS",
    "DetectionImages",
    "FlatFolder",
    "ImageSet",
    "ImageSource",
    "Preprocessing",
    "SegmentationSet",
    "batchnorm_layers",
    "cache_file",
    "decode_detection_images",
    "decode_images",
    "decode_segmentation",
    "detection_targets",
    "flip_boxes",
    "flip_images",
    "flip_masks",
    "get_source",
    "image_folder",
    "image_listing",
    "image_sources",
    "load_cache",
    "load_coco",
    "normalize",
    "random_subset",
    "register_source",
    "resolve_preprocessing",
    "save_cache",
    "segmentation_pairs",
    "seeded_order",
    "stratified_split",
    "synthesis_key",
    "synthetic_images",
    "weights_digest",
]
