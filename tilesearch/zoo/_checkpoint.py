"""Checkpoint files: a state dict from ``.safetensors`` or a ``.pth``/``.pth.tar`` file, loaded strictly."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tilesearch.core import DataError


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a ``.safetensors`` or ``.pth``/``.pth.tar`` state dict (bare, or under
    ``state_dict``/``model``/``state_dict_ema``) into ``model``, strictly."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {str(path)!r} does not exist")
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
        raise DataError(f"checkpoint {str(path)!r} does not fit {type(model).__name__}: {'; '.join(problems)}{hint}")
    model.load_state_dict(state)
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as error:  # safetensors raises its own error types for corrupt files
            raise DataError(f"checkpoint {str(path)!r} is not a readable safetensors file: {error}") from error
    if not path.name.endswith((".pth", ".pt", ".pth.tar", ".bin", ".ckpt")):
        raise DataError(f"checkpoint {str(path)!r}: expected a .safetensors, .pth or .pth.tar file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        # Training checkpoints (timm's train.py) pickle their argparse namespace too; the user's own file.
        try:
            data = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:
            raise DataError(f"checkpoint {str(path)!r} could not be read: {error}") from error
    for key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            return data[key]
    if isinstance(data, dict) and all(isinstance(value, torch.Tensor) for value in data.values()):
        return data
    raise DataError(f"checkpoint {str(path)!r} holds no state dict (looked for state_dict, model, state_dict_ema)")
