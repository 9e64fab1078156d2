"""Models from the user's own code: ``--model path/to/file.py:build`` or ``--model package.module:build``.

The callable returns an ``nn.Module`` (it is called with ``num_classes=`` when
``--num-classes`` is given); weights come from ``--checkpoint``. Its blocks are
found by class, by registration or by generic discovery (:mod:`tilesearch.nn`).
A file is imported once per process with its own folder on ``sys.path``, so it can
import its neighbours and call :func:`tilesearch.nn.register_flavour` at import.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path

from torch import nn

from tilesearch.core import TilesearchError, UnknownNameError, first_line
from tilesearch.zoo._zoo import Zoo

_SPEC = re.compile(r"(?P<target>[^:]+):(?P<attribute>[A-Za-z_]\w*)")
DEFAULT_INPUT_SIZE = (224, 224)


def is_code_reference(name: str) -> bool:
    """Whether ``name`` has the form ``file.py:callable`` or ``package.module:callable``."""
    return _SPEC.fullmatch(name) is not None


class UserCodeZoo(Zoo):
    """Builds ``file.py:callable`` and ``package.module:callable`` models; their weights come from --checkpoint."""

    name = "your code"

    def names(self) -> list[str]:
        return []

    def owns(self, name: str) -> bool:
        return is_code_reference(name)

    def create(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        build = load_callable(name)
        try:
            model = build() if num_classes is None else build(num_classes=num_classes)
        except Exception as error:
            raise TilesearchError(f"{name} raised {type(error).__name__}: {first_line(error)}") from error
        if not isinstance(model, nn.Module):
            raise TilesearchError(f"{name} returned {type(model).__name__}, not a torch.nn.Module")
        if getattr(build, "input_size", None) is not None and not hasattr(model, "pretrained_cfg"):
            # timm's data config (resolve_data_config) reads the input size from here.
            model.pretrained_cfg = {"input_size": (3, *self.default_input_size(name))}
        return model

    def pretrained(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        """Your code's model with the weights it gives it (it may load its own); --checkpoint overrides them."""
        return self.create(name, num_classes, input_size)

    def pretrained_label(self, name: str) -> str:
        return f"the weights {name} gives it (no --checkpoint)"

    def default_input_size(self, name: str) -> tuple[int, int]:
        """The callable's ``input_size`` attribute (a side or (height, width)), else 224x224."""
        size = getattr(load_callable(name), "input_size", None)
        if size is None:
            return DEFAULT_INPUT_SIZE
        sides = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (tuple, list)) else ()
        if len(sides) != 2 or not all(isinstance(side, int) and side > 0 for side in sides):
            raise TilesearchError(f"{name} has input_size {size!r}: expected a positive integer or (height, width)")
        return sides


def load_callable(reference: str) -> Callable[..., nn.Module]:
    """The callable named by ``file.py:name`` or ``package.module:name``, its module imported once."""
    match = _SPEC.fullmatch(reference)
    if match is None:
        raise UnknownNameError(f"invalid model reference {reference!r}: expected path/to/file.py:build or package.module:build")
    target, attribute = match["target"], match["attribute"]
    module = _import_file(target) if _is_path(target) else _import_module(target)
    build = getattr(module, attribute, None)
    if build is None:
        defined = sorted(name for name, value in vars(module).items() if callable(value) and not name.startswith("_"))
        hint = f"; it defines {', '.join(defined[:8])}" if defined else ""
        raise UnknownNameError(f"{target} has no {attribute!r}{hint}")
    if not callable(build):
        raise TilesearchError(f"{target}:{attribute} is a {type(build).__name__}, not a callable that builds a model")
    return build


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


@functools.cache
def _import_file(target: str):
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise UnknownNameError(f"model file {target!r} does not exist")
    digest, stem = hashlib.sha1(str(path).encode()).hexdigest()[:10], re.sub(r"\W", "_", path.stem)
    name = f"tilesearch_user_{digest}_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # classes defined there pickle within this process
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except BaseException as error:
        del sys.modules[name]
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        raise TilesearchError(f"cannot import {target}: {_describe(error)}") from error
    finally:
        sys.path.remove(str(path.parent))
    return module


@functools.cache
def _import_module(target: str):
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as error:
        if error.name and target.startswith(error.name):
            raise UnknownNameError(
                f"no module named {target!r}: give a file (path/to/file.py:build) or a module importable from here"
            ) from error
        raise TilesearchError(f"cannot import {target}: {_describe(error)}") from error
    except Exception as error:
        raise TilesearchError(f"cannot import {target}: {_describe(error)}") from error


def _describe(error: BaseException) -> str:
    if isinstance(error, SyntaxError):
        return f"SyntaxError: {error.msg} ({Path(error.filename or '?').name}, line {error.lineno})"
    return f"{type(error).__name__}: {first_line(error)}"
