"""torchvision's classifiers, behind the ``torchvision/`` prefix (timm shares many of their names)."""

from __future__ import annotations

import functools

import torchvision
from torch import nn

from tilesearch.core import TilesearchError
from tilesearch.zoo._zoo import Zoo

PREFIX = "torchvision/"


class TorchvisionZoo(Zoo):
    name = "torchvision"
    weights_cache = "torch hub checkpoint cache"
    se_families = ("torchvision/mobilenet_v3_*", "torchvision/efficientnet_b*", "torchvision/regnet_y_*")

    @functools.cache
    def names(self) -> list[str]:
        return [PREFIX + name for name in torchvision.models.list_models(module=torchvision.models)]

    def owns(self, name: str) -> bool:
        return name.startswith(PREFIX) and name in self.names()

    def create(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        return torchvision.models.get_model(name.removeprefix(PREFIX), weights=None, **kwargs)

    def pretrained(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        raise TilesearchError(f"--pretrained loads timm and effdet weights; for {name!r} pass --checkpoint FILE")

    def default_input_size(self, name: str) -> tuple[int, int]:
        try:
            crop = torchvision.models.get_model_weights(name.removeprefix(PREFIX)).DEFAULT.transforms().crop_size
        except (ValueError, AttributeError):  # no published weights: torchvision's usual crop
            return 224, 224
        height, width = (crop[0], crop[-1]) if isinstance(crop, (list, tuple)) else (crop, crop)
        return int(height), int(width)
