"""Images and annotations: image folders, COCO, preprocessing, the decoded-image cache, flips.

Everything a scorer or a fine-tune reads is decoded here once, to uint8 tensors,
and normalised per batch by the one :func:`normalize`.
"""

from tilesearch.data._augment import flip_boxes, flip_images
from tilesearch.data._cache import cache_file, load_cache, save_cache
from tilesearch.data._coco import DetectionImages, decode_detection_images, detection_targets, image_listing, load_coco
from tilesearch.data._folders import FlatFolder, image_folder, random_subset, stratified_split
from tilesearch.data._images import ImageSet, decode_images
from tilesearch.data._preprocessing import INTERPOLATIONS, Preprocessing, normalize, resolve_preprocessing

__all__ = [
    "INTERPOLATIONS",
    "DetectionImages",
    "FlatFolder",
    "ImageSet",
    "Preprocessing",
    "cache_file",
    "decode_detection_images",
    "decode_images",
    "detection_targets",
    "flip_boxes",
    "flip_images",
    "image_folder",
    "image_listing",
    "load_cache",
    "load_coco",
    "normalize",
    "random_subset",
    "resolve_preprocessing",
    "save_cache",
    "stratified_split",
]
