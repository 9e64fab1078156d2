"""Build a model by name from its zoo, with weights, and find its SE blocks at its input size."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import torch
from torch import nn

from tilesearch.core import DataError, SEBlock, TilesearchError, first_line, parse_input_size
from tilesearch.nn import discover_se_blocks, find_se_modules, found_by, no_block_error
from tilesearch.zoo._checkpoint import load_checkpoint
from tilesearch.zoo._zoo import model_source


def create_model(name: str, num_classes: int | None = None, input_size: tuple[int, int] | None = None) -> nn.Module:
    """A randomly initialised model by name, in eval mode (weights are loaded separately).

    The initialisation is seeded, so a study on random weights (a smoke test, a benchmark) scores
    the same model in every worker and after every resume; the caller's random state is untouched.
    ``input_size`` matters to EfficientDet only, whose BiFPN is built for one image size.
    """
    source = model_source(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return source.zoo.create(source.name, num_classes, input_size).eval()


def load_model(
    name: str,
    *,
    checkpoint: str | Path | None = None,
    random_weights: bool = False,
    num_classes: int | None = None,
    input_size: tuple[int, int] | None = None,
) -> nn.Module:
    """Build ``name`` with weights: a checkpoint file, else the zoo's pretrained weights (through its own loading
    and cache), else, only when asked with ``random_weights``, seeded random ones."""
    if random_weights and checkpoint:
        raise TilesearchError("give either --random-weights or --checkpoint, not both")
    if num_classes is not None and num_classes < 1:
        raise TilesearchError(f"invalid number of classes {num_classes}: expected a positive integer")
    if random_weights or checkpoint:
        model = create_model(name, num_classes=num_classes, input_size=input_size)
        return load_checkpoint(model, checkpoint) if checkpoint else model
    source = model_source(name)
    try:
        return source.zoo.pretrained(source.name, num_classes, input_size).eval()
    except TilesearchError:
        raise
    except Exception as error:  # hub and network errors come in many types
        raise DataError(
            f"no pretrained weights for {name!r}: {source.zoo.weights_location(source.name)} could not be loaded "
            f"(offline and not cached?): {first_line(error, 160)}; pass --checkpoint FILE, or --random-weights to "
            f"search untrained weights"
        ) from error


def describe_weights(name: str, checkpoint: str | Path | None = None, random_weights: bool = False) -> str:
    """How a model got its weights, as every output says it."""
    if checkpoint:
        return f"checkpoint {checkpoint}"
    if random_weights:
        return "RANDOM weights (--random-weights): scores say nothing about a trained network"
    source = model_source(name)
    return source.zoo.pretrained_label(source.name)


def default_input_size(name: str) -> tuple[int, int]:
    """The model's own input (height, width): timm's pretrained config, effdet's config, torchvision's crop."""
    source = model_source(name)
    return source.zoo.default_input_size(source.name)


@dataclass
class DiscoveredModel:
    """A model built by name, with its SE blocks traced at ``input_size``."""

    name: str
    input_size: tuple[int, int]
    model: nn.Module
    blocks: list[SEBlock]


def discover_model(name: str, input_size: int | tuple[int, int] | None = None) -> DiscoveredModel:
    """Build ``name`` from its zoo and trace its SE blocks at ``input_size`` (default: the model's own)."""
    size = parse_input_size(input_size) or default_input_size(name)
    model = create_model(name, input_size=size)
    if not find_se_modules(model):
        raise no_block_error(model, f"model {name!r}")
    return DiscoveredModel(name, size, model, discover_se_blocks(model, size))


@dataclass(frozen=True)
class BlockCount:
    """How many tileable blocks a model has, and how discovery found them (class, registered, generic)."""

    count: int
    found_by: tuple[str, ...]


def count_se_blocks(name: str) -> BlockCount:
    """Tileable blocks of a model, counted on the meta device (no memory, no forward)."""
    try:
        with torch.device("meta"):
            model = create_model(name)
    except NotImplementedError:  # builders that compute widths with tensors (torchvision RegNet)
        model = create_model(name)
    modules = [module for _, module in find_se_modules(model)]
    return BlockCount(len(modules), tuple(sorted({found_by(module) for module in modules})))


def cache_dir() -> Path:
    """Where tilesearch keeps small caches (``$TILESEARCH_CACHE_DIR``, else ``~/.cache/tilesearch``)."""
    return Path(os.environ.get("TILESEARCH_CACHE_DIR", Path.home() / ".cache" / "tilesearch"))


def se_block_counts(names: list[str]) -> dict[str, BlockCount]:
    """Block count per name, cached on disk per zoo version (building 100 models takes a while)."""
    from rich.progress import track

    from tilesearch.core import write_text_atomically

    stamp = "-".join(f"{pkg}{version(pkg)}" for pkg in ("timm", "torchvision", "effdet"))
    path = cache_dir() / f"block-counts-v2-{stamp}.json"
    try:
        counts = {name: BlockCount(entry[0], tuple(entry[1])) for name, entry in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError, IndexError):
        counts = {}
    missing = [name for name in names if name not in counts]
    for name in track(missing, description="counting attention blocks", transient=True, disable=len(missing) < 5):
        counts[name] = count_se_blocks(name)
    if missing:
        try:
            entries = {name: [entry.count, list(entry.found_by)] for name, entry in counts.items()}
            write_text_atomically(path, json.dumps(entries, indent=0, sort_keys=True))
        except OSError:
            pass  # a read-only home only costs the recount next time
    return {name: counts[name] for name in names}
