"""The model zoos tilesearch reads SE networks from: timm, torchvision and effdet.

Names are timm's own (``regnety_008``), effdet's (``efficientdet_d2``) and
torchvision's behind a prefix (``torchvision/mobilenet_v3_large``), since
torchvision and timm share names such as ``efficientnet_b0``.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import torch
from torch import nn

from tilesearch.errors import TilesearchError

TORCHVISION_PREFIX = "torchvision/"

# Families whose models carry SE-style blocks; `tilesearch models` lists these by default.
SE_FAMILIES = (
    "efficientdet_d*",
    "tf_efficientdet_d*",
    "efficientnet_b[0-7]",
    "tf_efficientnet_b[0-7]",
    "efficientnetv2_[rsml]",
    "tf_efficientnetv2_[sml]",
    "mobilenetv3_large_100",
    "mobilenetv3_small_100",
    "regnety_*",
    "seresnet[0-9]*",
    "seresnext[0-9]*",
    "ecaresnet[0-9]*",
    "torchvision/mobilenet_v3_*",
    "torchvision/efficientnet_b*",
    "torchvision/regnet_y_*",
)


def _effdet_names() -> list[str]:
    from effdet.config.model_config import efficientdet_model_param_dict

    return sorted(efficientdet_model_param_dict)


def _torchvision_names() -> list[str]:
    import torchvision

    return [TORCHVISION_PREFIX + name for name in torchvision.models.list_models(module=torchvision.models)]


def _timm_names() -> list[str]:
    import timm

    return timm.list_models()


def all_model_names() -> list[str]:
    """Every name :func:`create_model` accepts (with or without SE blocks)."""
    return _effdet_names() + _timm_names() + _torchvision_names()


@dataclass(frozen=True)
class ModelSource:
    """Which zoo a model name belongs to."""

    zoo: str  # "timm", "torchvision" or "effdet"
    name: str  # the name inside that zoo


def model_source(name: str) -> ModelSource:
    """Route ``name`` to its zoo, or fail with the closest known names."""
    if name.startswith(TORCHVISION_PREFIX):
        if name in _torchvision_names():
            return ModelSource("torchvision", name[len(TORCHVISION_PREFIX) :])
    elif name in _effdet_names():
        return ModelSource("effdet", name)
    elif name in _timm_names():
        return ModelSource("timm", name)
    close = difflib.get_close_matches(name, all_model_names(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `tilesearch models` lists the supported names"
    raise TilesearchError(f"unknown model {name!r}{hint}")


def create_model(name: str, num_classes: int | None = None, input_size: tuple[int, int] | None = None) -> nn.Module:
    """A randomly initialised model by name, in eval mode (weights are loaded separately).

    ``input_size`` matters to EfficientDet only, whose BiFPN is built for one image size.
    """
    source = model_source(name)
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if source.zoo == "timm":
        import timm

        model = timm.create_model(source.name, pretrained=False, **kwargs)
    elif source.zoo == "torchvision":
        import torchvision

        model = torchvision.models.get_model(source.name, weights=None, **kwargs)
    else:
        import effdet

        if input_size is not None:
            kwargs["image_size"] = tuple(input_size)
        model = effdet.create_model(source.name, bench_task="", pretrained=False, pretrained_backbone=False, **kwargs)
    return model.eval()


def default_input_size(name: str) -> tuple[int, int]:
    """The model's own input (height, width): timm's pretrained config, effdet's config, torchvision's crop."""
    source = model_source(name)
    if source.zoo == "timm":
        import timm

        height, width = timm.get_pretrained_cfg(source.name).input_size[-2:]
    elif source.zoo == "effdet":
        from effdet import get_efficientdet_config

        height, width = get_efficientdet_config(source.name).image_size
    else:
        import torchvision

        try:
            crop = torchvision.models.get_model_weights(source.name).DEFAULT.transforms().crop_size
            height, width = (crop[0], crop[-1]) if isinstance(crop, (list, tuple)) else (crop, crop)
        except (ValueError, AttributeError):  # no published weights: torchvision's usual crop
            height = width = 224
    return int(height), int(width)


def count_se_blocks(name: str) -> int:
    """Number of SE blocks of a model, counted on the meta device (no memory, no forward)."""
    from tilesearch.tiled_se import find_se_modules

    try:
        with torch.device("meta"):
            model = create_model(name)
    except NotImplementedError:  # builders that compute widths with tensors (torchvision RegNet)
        model = create_model(name)
    return len(find_se_modules(model))


def matching_names(pattern: str | None) -> list[str]:
    """Names matching a glob or substring ``pattern``; the SE families when ``pattern`` is None."""
    names = all_model_names()
    if pattern is None:
        return [name for name in names if any(fnmatch.fnmatchcase(name, family) for family in SE_FAMILIES)]
    glob = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
    return [name for name in names if fnmatch.fnmatchcase(name, glob)]


def cache_dir() -> Path:
    """Where tilesearch keeps small caches (``$TILESEARCH_CACHE_DIR``, else ``~/.cache/tilesearch``)."""
    return Path(os.environ.get("TILESEARCH_CACHE_DIR", Path.home() / ".cache" / "tilesearch"))


def se_block_counts(names: list[str]) -> dict[str, int]:
    """SE-block count per name, cached on disk per zoo version (building 100 models takes a while)."""
    from rich.progress import track

    stamp = "-".join(f"{pkg}{version(pkg)}" for pkg in ("timm", "torchvision", "effdet"))
    path = cache_dir() / f"se-counts-{stamp}.json"
    try:
        counts = json.loads(path.read_text())
    except (OSError, ValueError):
        counts = {}
    missing = [name for name in names if name not in counts]
    for name in track(missing, description="counting SE blocks", transient=True, disable=len(missing) < 5):
        counts[name] = count_se_blocks(name)
    if missing:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(counts, indent=0, sort_keys=True))
        except OSError:
            pass  # a read-only home only costs the recount next time
    return {name: counts[name] for name in names}
