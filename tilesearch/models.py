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

    import tilesearch.demo  # noqa: F401  (registers the demo network with timm)

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

    The initialisation is seeded, so a study on random weights (a smoke test, a benchmark) scores
    the same model in every worker and after every resume. ``input_size`` matters to EfficientDet
    only, whose BiFPN is built for one image size.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _create_model(model_source(name), num_classes, input_size)


def _create_model(source, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
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


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a ``.safetensors`` or ``.pth``/``.pth.tar`` state dict (bare, or under
    ``state_dict``/``model``/``state_dict_ema``) into ``model``, strictly."""
    path = Path(path)
    if not path.is_file():
        raise TilesearchError(f"checkpoint {str(path)!r} does not exist")
    state = _read_state_dict(path)
    state = {key.removeprefix("module."): value for key, value in state.items()}
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [key for key in expected if key in state and tuple(state[key].shape) != tuple(expected[key].shape)]
    if missing or unexpected or wrong_shape:
        problems = []
        if wrong_shape:
            key = wrong_shape[0]
            problems.append(f"{key} is {tuple(state[key].shape)} in the file but {tuple(expected[key].shape)} in the model")
        if missing:
            problems.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            problems.append(f"unexpected {', '.join(unexpected[:3])}")
        hint = " (--num-classes?)" if wrong_shape and not missing else ""
        raise TilesearchError(f"checkpoint {str(path)!r} does not fit {type(model).__name__}: {'; '.join(problems)}{hint}")
    model.load_state_dict(state)
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises its own error types for corrupt files
            raise TilesearchError(f"checkpoint {str(path)!r} is not a readable safetensors file: {error}") from None
    if not path.name.endswith((".pth", ".pt", ".pth.tar", ".bin", ".ckpt")):
        raise TilesearchError(f"checkpoint {str(path)!r}: expected a .safetensors, .pth or .pth.tar file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        # Training checkpoints (timm's train.py) pickle their argparse namespace too; the user's own file.
        try:
            data = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:
            raise TilesearchError(f"checkpoint {str(path)!r} could not be read: {error}") from None
    for key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            return data[key]
    if isinstance(data, dict) and all(isinstance(value, torch.Tensor) for value in data.values()):
        return data
    raise TilesearchError(f"checkpoint {str(path)!r} holds no state dict (looked for state_dict, model, state_dict_ema)")


def load_model(
    name: str,
    *,
    pretrained: bool = False,
    checkpoint: str | Path | None = None,
    num_classes: int | None = None,
    input_size: tuple[int, int] | None = None,
) -> nn.Module:
    """Build ``name`` with weights: a checkpoint file, the zoo's pretrained weights, or random."""
    if pretrained and checkpoint:
        raise TilesearchError("give either --pretrained or --checkpoint, not both")
    if num_classes is not None and num_classes < 1:
        raise TilesearchError(f"invalid number of classes {num_classes}: expected a positive integer")
    if not pretrained:
        model = create_model(name, num_classes=num_classes, input_size=input_size)
        return load_checkpoint(model, checkpoint) if checkpoint else model
    source = model_source(name)
    if source.zoo == "torchvision":
        raise TilesearchError(f"--pretrained loads timm and effdet weights; for {name!r} pass --checkpoint FILE")
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    try:
        if source.zoo == "effdet":  # effdet's own loading, through torch.hub's checkpoint cache
            import effdet

            if input_size is not None:
                kwargs["image_size"] = tuple(input_size)
            return effdet.create_model(source.name, bench_task="", pretrained=True, pretrained_backbone=False, **kwargs).eval()
        import timm

        return timm.create_model(source.name, pretrained=True, **kwargs).eval()
    except Exception as error:  # hub and network errors come in many types
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        cache = "torch hub checkpoint cache" if source.zoo == "effdet" else "local Hugging Face cache"
        raise TilesearchError(
            f"no pretrained weights for {name!r} could be loaded (offline and not in the {cache}?): "
            f"{reason[:200]}; pass --checkpoint FILE instead"
        ) from None


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
