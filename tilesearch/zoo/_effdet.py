"""effdet's EfficientDet detectors, built for one image size (their BiFPN and anchors depend on it)."""

from __future__ import annotations

import functools

from torch import nn

from tilesearch.core import DETECTOR
from tilesearch.zoo._zoo import Zoo


def _effdet():
    """effdet, imported on first use (it is slow to import and only detectors need it)."""
    import effdet
    import effdet.config.model_config

    return effdet


class EffdetZoo(Zoo):
    name = "effdet"
    task = DETECTOR
    weights_cache = "torch hub checkpoint cache"
    se_families = ("efficientdet_d*", "tf_efficientdet_d*")

    @functools.cache
    def names(self) -> list[str]:
        return sorted(_effdet().config.model_config.efficientdet_model_param_dict)

    def create(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        return self._build(name, num_classes, input_size, pretrained=False)

    def pretrained(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        return self._build(name, num_classes, input_size, pretrained=True)  # through torch.hub's checkpoint cache

    def default_input_size(self, name: str) -> tuple[int, int]:
        height, width = _effdet().get_efficientdet_config(name).image_size
        return int(height), int(width)

    @staticmethod
    def _build(name: str, num_classes: int | None, input_size: tuple[int, int] | None, pretrained: bool) -> nn.Module:
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        if input_size is not None:
            kwargs["image_size"] = tuple(input_size)
        return _effdet().create_model(name, bench_task="", pretrained=pretrained, pretrained_backbone=False, **kwargs)
