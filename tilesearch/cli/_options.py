"""Every command-line option, declared once; groups of them shared by several commands.

A command takes an option by annotating a parameter with its alias here
(``model: Model = None``), or a whole group with :func:`with_options`, which adds
the group's parameters to the command's signature and hands them to the command
as keyword arguments.
"""

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Optional

import typer

from tilesearch.core import ACCEPTED_FORMS, BUDGET_FORMS, METRICS, available_profiles, available_spaces
from tilesearch.data import DEFAULT_SOURCE, get_source, image_sources
from tilesearch.search import SAMPLERS, STRATEGIES

RunDir = Annotated[str, typer.Argument(help="A run folder, e.g. runs/regnety_002-5M.")]
Model = Annotated[Optional[str], typer.Option(
    "--model", help="Model name: timm (regnety_002), effdet (efficientdet_d2), torchvision/NAME, or tilesearch_demo_net.")]
Data = Annotated[Optional[str], typer.Option(
    "--data", help="Images: ImageFolder layout (DIR/CLASS/IMAGE), a flat folder of unlabeled images, "
                   "a detector's COCO images folder or a segmenter's images (see --masks) "
                   "[default: none; images are synthesised, see --data-source].")]
DataSource = Annotated[Optional[str], typer.Option(
    "--data-source", show_default=False,
    help=f"Without --data, how calibration images are synthesised (cached in the run folder): "
         f"{'; '.join(f'{name}, {get_source(name).summary}' for name in image_sources())} [default: {DEFAULT_SOURCE}]. "
         f"Scores are then label-free (fidelity to SE).")]
Annotations = Annotated[Optional[str], typer.Option(
    "--annotations", help="Detectors: COCO instances JSON for --data IMAGES_DIR (score: mAP); without it, "
                          "pseudo-mAP against the SE model's detections.")]
Masks = Annotated[Optional[str], typer.Option(
    "--masks", help="Segmenters: PNG label maps with the same file stems as the --data images (Cityscapes' gtFine "
                    "folder as it is: *_gtFine_labelTrainIds.png) (score: mIoU); without it, pseudo-mIoU against the "
                    "SE model's own argmax.")]
IgnoreIndex = Annotated[int, typer.Option("--ignore-index", help="Segmenters: the mask label no score counts.")]
Tile = Annotated[Optional[str], typer.Option("--tile", help=f"One tile for every SE block: {ACCEPTED_FORMS}.")]
Config = Annotated[Optional[str], typer.Option(
    "--config", help="A tile-config YAML, e.g. runs/STUDY/best.yaml [default: the run's best within budget].")]
Trial = Annotated[Optional[int], typer.Option("--trial", help="This trial's config instead of the run's best.")]
Profile = Annotated[Optional[str], typer.Option(
    "--profile", show_default=False,
    help=f"Hardware profile: {', '.join(available_profiles())} or a profile .yaml file [default: ideal].")]
Space = Annotated[Optional[str], typer.Option(
    "--space", show_default=False,
    help=f"Search space: {', '.join(available_spaces())} or a space .yaml file [default: default].")]
Budget = Annotated[Optional[str], typer.Option(
    "--buffer-budget", help=f"Network buffer limit: {BUDGET_FORMS} [default: none; the demo 50%].")]
Metric = Annotated[Optional[str], typer.Option(
    "--metric", help=f"Score to optimise: {', '.join(name.replace('_', '-') for name in METRICS)}. agreement "
                     f"(top-1 agreement with SE), kl (mean KL from SE, minimised), pseudo-map, pseudo-miou and fidelity "
                     f"(divergence of the outputs from SE's: logits, a detector's class and box maps, a segmenter's "
                     f"per-pixel class distributions; minimised) need no labels [default: accuracy; detectors map, or "
                     f"pseudo-map without --annotations; segmenters miou, or pseudo-miou without --masks; fidelity "
                     f"without --data].",
    show_default=False)]
Sampler = Annotated[Optional[str], typer.Option(
    "--sampler", show_default=False, help=f"Optuna sampler: {', '.join(SAMPLERS)} [default: nsga2].")]
Strategy = Annotated[Optional[str], typer.Option(
    "--strategy", help=f"{' or '.join(STRATEGIES)}: surrogate scans one block at a time (prefix-cached), then before "
                       "every trial refits the predicted drops to all measured configs and queues the config of its "
                       "exact front that adds the most hypervolume; sampler leaves every trial to --sampler "
                       "[default: surrogate for per-block spaces].")]
EarlyStop = Annotated[Optional[bool], typer.Option(
    "--early-stop/--no-early-stop", show_default=False,
    help="Score each candidate on a quarter of the images, then half, then all, and stop it at a look where a "
         "measured config with no more buffer is better on those images with confidence (paired bootstrap, 95% "
         "per candidate); the trial is pruned with its reason [default: on].")]
ValSubset = Annotated[Optional[int], typer.Option(
    "--val-subset", show_default=False,
    help="Images the search scores on: a stratified, seeded subset of --data; the rest are held out "
         "[default: 1000; the demo 400].")]
Seed = Annotated[Optional[int], typer.Option(
    "--seed", show_default=False, help="Seed of the sampler, the image subsets, the order and the flips [default: 0].")]
NTrials = Annotated[Optional[int], typer.Option(
    "--n-trials", help="Trials for a new study [default: 40]; for an existing one, trials to add to its target "
                       "[default: none, finish the target it has].")]
Timeout = Annotated[Optional[float], typer.Option("--timeout", help="Stop starting new trials after this many seconds.")]
StudyName = Annotated[Optional[str], typer.Option(
    "--study-name", help="Study and run folder name [default: from model, space, metric and budget].")]
Storage = Annotated[Optional[str], typer.Option(
    "--storage", help="Optuna storage: sqlite:///FILE, a journal FILE.log, or postgresql://USER:PASSWORD@HOST/DB "
                      "[default: runs/STUDY/study.db, or study.log with --workers].")]
Workers = Annotated[int, typer.Option(
    "--workers", help="Worker processes on this machine sharing the study (one per GPU when several are visible).")]
Out = Annotated[str, typer.Option("--out", help="Folder that holds the run folders.")]
TrainData = Annotated[Optional[str], typer.Option(
    "--train-data", help="Training images (ImageFolder with the classes of --data, or a detector's COCO images "
                         "folder): fine-tune the chosen config.")]
InputSize = Annotated[Optional[str], typer.Option(
    "--input-size", help="Input size in pixels: N (N x N) or HEIGHTxWIDTH such as 1024x2048 "
                         "[default: the model's own data config].")]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="CPU threads for PyTorch [default: PyTorch's].")]


def _option(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


WEIGHTS = [
    _option("pretrained", Annotated[bool, typer.Option(
        "--pretrained/--random-weights",
        help="Without --checkpoint: the zoo's pretrained weights through its own cache (timm: Hugging Face's; effdet, "
             "torchvision: torch.hub's), or seeded random weights, which every output then labels as such.")], True),
    _option("checkpoint", Annotated[Optional[str], typer.Option(
        "--checkpoint", help="Weights file: .safetensors, or .pth/.pth.tar holding a state dict.")], None),
    _option("num_classes", Annotated[Optional[int], typer.Option(
        "--num-classes", help="Classes of the model's head [default: the model's own].")], None),
]
"""How the model gets its weights."""

PREPROCESSING = [
    _option("input_size", InputSize, None),
    _option("crop_pct", Annotated[Optional[float], typer.Option(
        "--crop-pct", help="Center-crop fraction, e.g. 0.875; 1.0 resizes without cropping.")], None),
    _option("interpolation", Annotated[Optional[str], typer.Option(
        "--interpolation", help="Resize interpolation: bilinear, bicubic, ...")], None),
    _option("mean", Annotated[Optional[str], typer.Option(
        "--mean", help="Normalisation mean, three comma-separated numbers.")], None),
    _option("std", Annotated[Optional[str], typer.Option(
        "--std", help="Normalisation std, three comma-separated numbers.")], None),
]
"""How an image becomes a model input (timm's data config, overridden)."""

COMPUTE = [
    _option("batch_size", Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")], 256),
    _option("device", Annotated[Optional[str], typer.Option(
        "--device", help="cpu, cuda, cuda:1 ... [default: cuda if available].")], None),
    _option("skip_memory_check", Annotated[bool, typer.Option(
        "--skip-memory-check", help="Run even when the estimated memory of the images and one batch's forward "
                                    "exceeds what the device has free.")], False),
    _option("strict_data", Annotated[bool, typer.Option(
        "--strict-data", help="Refuse an unreadable image instead of skipping it with a warning.")], False),
]
"""Where and how the network runs on the images."""

FINETUNING = [
    _option("train_annotations", Annotated[Optional[str], typer.Option(
        "--train-annotations", help="Detectors: COCO instances JSON of the --train-data images.")], None),
    _option("train_masks", Annotated[Optional[str], typer.Option(
        "--train-masks", help="Segmenters: the masks of the --train-data images (as --masks).")], None),
    _option("epochs", Annotated[Optional[int], typer.Option(
        "--epochs", help="Fine-tuning epochs over the training subset [default: 5; the demo 10].")], None),
    _option("train_subset", Annotated[Optional[float], typer.Option(
        "--train-subset", help="Fraction (or number) of training images to fine-tune on; the paper uses 10% "
                               "[default: 0.1; the demo 1.0].")], None),
    _option("lr", Annotated[Optional[float], typer.Option(
        "--lr", help="Base learning rate (SGD, momentum 0.9, cosine schedule, weight decay 5e-5) "
                     "[default: 0.01].")], None),
]
"""The paper's short fine-tune of a chosen config."""


def with_options(*groups: list[inspect.Parameter]) -> Callable:
    """Add the options of ``groups`` to a command whose ``**options`` receives them."""

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            return command(*args, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*own, *(p for group in groups for p in group)])
        return wrapper

    return decorate
