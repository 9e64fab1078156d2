"""Score one config of a named model on a folder of images: what ``tilesearch eval`` prints."""

from __future__ import annotations

from pathlib import Path

from timm.data import IMAGENET_DEFAULT_MEAN as DETECTOR_MEAN
from timm.data import IMAGENET_DEFAULT_STD as DETECTOR_STD
from torch import nn

from tilesearch.core import (
    DETECTOR,
    GAP,
    SEGMENTER,
    BufferReport,
    TileChoice,
    TileConfig,
    TilesearchError,
    buffer_report,
    parse_input_size,
    tile_config,
)
from tilesearch.data import (
    decode_detection_images,
    decode_images,
    decode_segmentation,
    image_folder,
    load_coco,
    random_subset,
    resolve_preprocessing,
    segmentation_pairs,
    stratified_split,
)
from tilesearch.nn import discover_se_blocks, find_se_modules
from tilesearch.scoring._classifier import Scorer
from tilesearch.scoring._detector import DetectionScorer
from tilesearch.scoring._device import check_memory
from tilesearch.scoring._segmenter import (
    SegmentationScorer,
    segmentation_batch_size,
    segmenter_classes,
    segmenter_normalisation,
)
from tilesearch.zoo import default_input_size, load_model, model_source


def _config_and_cost(
    model: nn.Module, tiles: TileChoice | TileConfig, input_size: tuple[int, int], profile: str
) -> tuple[dict, BufferReport]:
    config = tile_config([name for name, _ in find_se_modules(model)], tiles)
    return config, buffer_report(discover_se_blocks(model, input_size), config, profile)


def _cost_fields(config: dict, report: BufferReport) -> dict:
    return {
        "buffer": report.total,
        "se_buffer": report.se_total,
        "buffer_bytes": report.total_bytes,
        "extra_macs": report.extra_macs,
        "tiles": {name: str(tile) for name, tile in config.items()},
    }


def evaluate_config(
    model_name: str,
    data: str,
    tiles: TileChoice | TileConfig,
    *,
    checkpoint: str | None = None,
    random_weights: bool = False,
    num_classes: int | None = None,
    input_size: int | tuple[int, int] | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    profile: str = "ideal",
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: str | None = None,
    memory_check: bool = True,
    strict_data: bool = False,
) -> dict:
    """Score one config of a named classifier on an image folder: accuracy, agreement and KL vs SE, buffer."""
    dataset = image_folder(data)
    model = load_model(model_name, checkpoint=checkpoint, random_weights=random_weights, num_classes=num_classes)
    preprocessing = resolve_preprocessing(model, input_size, crop_pct, interpolation, mean, std)
    config, report = _config_and_cost(model, tiles, preprocessing.input_size, profile)
    indices, _ = stratified_split([label for _, label in dataset.samples], limit, seed)
    if memory_check:
        check_memory(model, preprocessing.input_size, batch_size, len(indices), device)
    images = decode_images(data, preprocessing, indices, strict=strict_data)
    scorer = Scorer(model, images, preprocessing, batch_size, device)
    score = scorer.score(config)
    se_correct = int((scorer.se_predictions == scorer.images.labels).sum())
    return {**score.to_dict(), "se_accuracy": se_correct / score.total, **_cost_fields(config, report),
            "skipped": images.skipped}


def evaluate_detection(
    model_name: str,
    images_dir: str | Path,
    tiles: TileChoice | TileConfig,
    annotations: str | Path | None = None,
    *,
    checkpoint: str | None = None,
    random_weights: bool = False,
    num_classes: int | None = None,
    input_size: int | tuple[int, int] | None = None,
    limit: int | None = None,
    pseudo_threshold: float = 0.3,
    profile: str = "ideal",
    batch_size: int = 8,
    device: str | None = None,
    memory_check: bool = True,
    strict_data: bool = False,
) -> dict:
    """Score one config of an effdet detector: mAP against ``annotations`` and pseudo-mAP against SE."""
    if model_source(model_name).task != DETECTOR:
        raise TilesearchError(f"--annotations is for detectors (effdet models such as efficientdet_d0), not {model_name!r}")
    if annotations is None:
        raise TilesearchError("give --annotations instances.json (COCO format) with a detector's --data IMAGES_DIR")
    coco = load_coco(images_dir, annotations)
    size = parse_input_size(input_size) or default_input_size(model_name)
    model = load_model(model_name, checkpoint=checkpoint, random_weights=random_weights, num_classes=num_classes,
                       input_size=size)
    config, report = _config_and_cost(model, tiles, size, profile)
    image_ids = sorted(coco.imgs)[:limit] if limit else sorted(coco.imgs)
    if memory_check:
        check_memory(model, size, batch_size, len(image_ids), device)
    images = decode_detection_images(images_dir, coco, image_ids, size, DETECTOR_MEAN, strict=strict_data)
    scorer = DetectionScorer(model, images, DETECTOR_MEAN, DETECTOR_STD, ground_truth=coco,
                             pseudo_threshold=pseudo_threshold, batch_size=batch_size, device=device)
    se = scorer.score(GAP)
    fields = _cost_fields(config, report)
    return {**scorer.score(config).to_dict(), "se_map": se.map, **{k: fields[k] for k in ("buffer", "se_buffer", "tiles")},
            "skipped": images.skipped}


def evaluate_segmentation(
    model_name: str,
    images_dir: str | Path,
    tiles: TileChoice | TileConfig,
    masks: str | Path | None = None,
    *,
    checkpoint: str | None = None,
    random_weights: bool = False,
    num_classes: int | None = None,
    input_size: int | tuple[int, int] | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    ignore_index: int = 255,
    limit: int | None = None,
    seed: int = 0,
    profile: str = "ideal",
    batch_size: int = 256,
    device: str | None = None,
    memory_check: bool = True,
    strict_data: bool = False,
) -> dict:
    """Score one config of a segmenter: mIoU and pixel accuracy against ``masks``, pseudo-mIoU and fidelity vs SE."""
    if model_source(model_name).task != SEGMENTER:
        raise TilesearchError(f"--masks is for segmenters (lraspp_mobilenet_v3_large, ...), not {model_name!r}")
    pairs = segmentation_pairs(images_dir, masks)
    size = parse_input_size(input_size) or default_input_size(model_name)
    model = load_model(model_name, checkpoint=checkpoint, random_weights=random_weights, num_classes=num_classes,
                       input_size=size)
    config, report = _config_and_cost(model, tiles, size, profile)
    chosen = random_subset(list(range(len(pairs))), limit or len(pairs), seed)
    batch_size = segmentation_batch_size(batch_size, size)
    if memory_check:
        check_memory(model, size, batch_size, len(chosen), device)
    images = decode_segmentation([pairs[i] for i in chosen], size, ignore_index=ignore_index,
                                 num_classes=segmenter_classes(model, size), strict=strict_data)
    scorer = SegmentationScorer(model, images, *segmenter_normalisation(model, mean, std), batch_size=batch_size,
                                device=device, num_classes=images.num_classes, ignore_index=ignore_index, progress=True)
    se = scorer.score(GAP).to_dict()
    return {**scorer.score(config).to_dict(), "se_miou": se["miou"], "se_pixel_accuracy": se["pixel_accuracy"],
            **_cost_fields(config, report), "skipped": images.skipped}
