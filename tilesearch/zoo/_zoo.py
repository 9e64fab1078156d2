"""Model sources: a registry of zoos, each owning a set of model names.

A :class:`Zoo` builds its models with random or pretrained weights, knows
their input size and where its pretrained weights are cached; :func:`model_source` routes a name to the zoo that owns it,
first match in registration order. Names are the zoos' own (``regnety_008``,
``efficientdet_d2``), torchvision's behind a prefix (``torchvision/...``), since
torchvision and timm share names such as ``efficientnet_b0``.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass

from torch import nn

from tilesearch.core import CLASSIFIER, UnknownNameError


class Zoo:
    """One source of models. Subclasses implement the four methods below and may say where weights live."""

    name: str = ""
    task: str = CLASSIFIER
    se_families: tuple[str, ...] = ()  # name globs whose models have SE blocks, listed by `tilesearch models`

    def names(self) -> list[str]:
        """Every model name this zoo builds, as users type it."""
        raise NotImplementedError

    def create(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        """A randomly initialised model (``name`` as in :meth:`names`)."""
        raise NotImplementedError

    def pretrained(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        """The model with the zoo's own pretrained weights, through the zoo's own loading and cache."""
        raise NotImplementedError

    def default_input_size(self, name: str) -> tuple[int, int]:
        """The model's own input (height, width)."""
        raise NotImplementedError

    def weights_location(self, name: str) -> str:
        """Which pretrained file is looked for where, for the error when it cannot be loaded."""
        return f"the {self.name} weights of {name}"

    def pretrained_label(self, name: str) -> str:
        """How outputs name the weights :meth:`pretrained` gives."""
        return f"{self.name} pretrained weights"

    def owns(self, name: str) -> bool:
        return name in self.names()


def torch_hub_file(url: str) -> str:
    """Where torch.hub's loading looks for the file of ``url`` before downloading it."""
    import os

    import torch

    return os.path.join(torch.hub.get_dir(), "checkpoints", url.rsplit("/", 1)[-1])


@dataclass(frozen=True)
class ModelSource:
    """A model name and the zoo that builds it."""

    zoo: Zoo
    name: str

    @property
    def task(self) -> str:
        return self.zoo.task


_ZOOS: list[Zoo] = []


def register_zoo(zoo: Zoo, first: bool = False) -> Zoo:
    """Add a model source; ``first`` makes it win over the shipped ones for names both own."""
    _ZOOS.insert(0, zoo) if first else _ZOOS.append(zoo)
    return zoo


def all_model_names() -> list[str]:
    """Every name :func:`model_source` accepts (with or without SE blocks)."""
    return [name for zoo in _ZOOS for name in zoo.names()]


def model_source(name: str) -> ModelSource:
    """Route ``name`` to its zoo, or fail with the closest known names."""
    for zoo in _ZOOS:
        if zoo.owns(name):
            return ModelSource(zoo, name)
    close = difflib.get_close_matches(name, all_model_names(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `tilesearch models` lists the supported names"
    raise UnknownNameError(f"unknown model {name!r}{hint}")


def matching_names(pattern: str | None) -> list[str]:
    """Names matching a glob or substring ``pattern``; the zoos' SE families when ``pattern`` is None."""
    names = all_model_names()
    if pattern is None:
        families = [family for zoo in _ZOOS for family in zoo.se_families]
        return [name for name in names if any(fnmatch.fnmatchcase(name, family) for family in families)]
    glob = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
    return [name for name in names if fnmatch.fnmatchcase(name, glob)]
