"""torchvision's classifiers, behind the ``torchvision/`` prefix (timm shares many of their names), and its
segmenters under their own names (``lraspp_mobilenet_v3_large``), with LR-ASPP on MobileNetV3-Small built the
way torchvision builds the Large one (Vosco et al., Table 6, second column)."""

from __future__ import annotations

import functools

import torchvision
from torch import nn

from tilesearch.core import SEGMENTER, TilesearchError
from tilesearch.zoo._zoo import Zoo, torch_hub_file

PREFIX = "torchvision/"


class TorchvisionZoo(Zoo):
    name = "torchvision"
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
        weights = self._weights(name)
        classes = len(weights.meta.get("categories") or ())
        if num_classes is not None and num_classes != classes:
            raise TilesearchError(f"torchvision's weights of {name} have {classes} classes, not {num_classes}: pass "
                                  f"--checkpoint FILE with weights for {num_classes} classes")
        return torchvision.models.get_model(name.removeprefix(PREFIX), weights=weights)  # torch.hub's cache

    def weights_location(self, name: str) -> str:
        return torch_hub_file(self._weights(name).url)

    def pretrained_label(self, name: str) -> str:
        return f"torchvision pretrained weights ({self._weights(name)})"

    @staticmethod
    def _weights(name: str):
        try:
            return torchvision.models.get_model_weights(name.removeprefix(PREFIX)).DEFAULT
        except (ValueError, AttributeError) as error:
            raise TilesearchError(f"torchvision publishes no weights for {name}: pass --checkpoint FILE, or "
                                  f"--random-weights to search untrained weights") from error

    def default_input_size(self, name: str) -> tuple[int, int]:
        try:
            crop = torchvision.models.get_model_weights(name.removeprefix(PREFIX)).DEFAULT.transforms().crop_size
        except (ValueError, AttributeError):  # no published weights: torchvision's usual crop
            return 224, 224
        height, width = (crop[0], crop[-1]) if isinstance(crop, (list, tuple)) else (crop, crop)
        return int(height), int(width)


def _lraspp_mobilenet_v3_small(*, weights=None, weights_backbone=None, num_classes: int | None = None) -> nn.Module:
    """LR-ASPP on a dilated MobileNetV3-Small, as torchvision's ``lraspp_mobilenet_v3_large`` builds its head."""
    from torchvision.models.segmentation.lraspp import _lraspp_mobilenetv3

    if weights is not None:
        raise ValueError("torchvision publishes no weights for LR-ASPP MobileNetV3-Small")
    backbone = torchvision.models.mobilenet_v3_small(weights=weights_backbone, dilated=True)
    return _lraspp_mobilenetv3(backbone, 21 if num_classes is None else num_classes)


_BUILT_HERE = {"lraspp_mobilenet_v3_small": _lraspp_mobilenet_v3_small}
SEGMENTATION_INPUT = (520, 520)  # torchvision's segmentation weights resize to 520 (their transforms' resize_size)


class TorchvisionSegmentationZoo(TorchvisionZoo):
    """torchvision's semantic segmenters, whose output is ``{"out": logits}`` at the input's size."""

    task = SEGMENTER
    se_families = ("lraspp_mobilenet_v3_*", "deeplabv3_mobilenet_v3_large")

    @functools.cache
    def names(self) -> list[str]:
        return sorted([*torchvision.models.list_models(module=torchvision.models.segmentation), *_BUILT_HERE])

    def owns(self, name: str) -> bool:
        return name in self.names()

    def create(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        build = _BUILT_HERE.get(name) or functools.partial(torchvision.models.get_model, name)
        return build(weights=None, weights_backbone=None, **kwargs)  # no ImageNet backbone download

    def pretrained(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        self._weights(name)  # refuses names without published weights
        return super().pretrained(name, num_classes, input_size)

    @staticmethod
    def _weights(name: str):
        if name in _BUILT_HERE:
            raise TilesearchError(f"torchvision publishes no weights for {name}: pass --checkpoint FILE (e.g. a "
                                  f"fine-tuned export), or --random-weights to search untrained weights")
        return TorchvisionZoo._weights(name)

    def default_input_size(self, name: str) -> tuple[int, int]:
        return SEGMENTATION_INPUT
