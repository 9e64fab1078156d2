"""``tilesearch eval``: score one tile config zero-shot."""

import json
from typing import Annotated, Optional

import typer

from tilesearch.cli._options import COMPUTE, PREPROCESSING, WEIGHTS, AsJson, IgnoreIndex, Masks, Profile, Tile, with_options
from tilesearch.cli._parse import compute_options, model_options
from tilesearch.cli._render import print_eval
from tilesearch.core import DETECTOR, SEGMENTER, TilesearchError, load_config
from tilesearch.scoring import evaluate_config, evaluate_detection, evaluate_segmentation
from tilesearch.zoo import model_source


@with_options(WEIGHTS, PREPROCESSING, COMPUTE)
def evaluate(
    model: Annotated[str, typer.Option("--model", help="Model name, as for `tilesearch run`.")],
    data: Annotated[str, typer.Option("--data", help="Images in ImageFolder layout (DIR/CLASS/IMAGE), a detector's COCO "
                                                      "images folder or a segmenter's images.")],
    tile: Tile = None,
    config: Annotated[Optional[str], typer.Option(
        "--config", help="A tile-config YAML, e.g. runs/STUDY/best.yaml.")] = None,
    profile: Profile = "ideal",
    annotations: Annotated[Optional[str], typer.Option(
        "--annotations", help="COCO instances JSON: score a detector (effdet) by mAP on --data IMAGES_DIR.")] = None,
    masks: Masks = None,
    ignore_index: IgnoreIndex = 255,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Score a stratified subset of this many images.")] = None,
    as_json: AsJson = False,
    **options,
) -> None:
    """Score one tile config zero-shot: accuracy and agreement with SE (detectors: mAP; segmenters: mIoU), and its buffer."""
    if (tile is None) == (config is None):
        raise TilesearchError("give exactly one of --tile SPEC or --config FILE")
    tiles = tile if tile is not None else load_config(config).tiles
    model_args = model_options(options)
    task = model_source(model).task
    if masks is not None or task == SEGMENTER:
        result = evaluate_segmentation(model, data, tiles, masks, profile=profile, limit=limit, ignore_index=ignore_index,
                                       **compute_options(options),
                                       memory_check=not options["skip_memory_check"],
                                       **{k: v for k, v in model_args.items() if k not in ("crop_pct", "interpolation")})
    elif annotations is not None or task == DETECTOR:
        result = evaluate_detection(
            model, data, tiles, annotations, random_weights=model_args["random_weights"], checkpoint=model_args["checkpoint"],
            num_classes=model_args["num_classes"], input_size=model_args["input_size"], limit=limit, profile=profile,
            **{**compute_options(options), "batch_size": min(options["batch_size"], 8)},
            memory_check=not options["skip_memory_check"],
        )
    else:
        result = evaluate_config(model, data, tiles, profile=profile, limit=limit, **compute_options(options),
                                 memory_check=not options["skip_memory_check"], **model_args)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        print_eval(model, result)
