"""effdet's EfficientDet detectors, built for one image size (their BiFPN and anchors depend on it)."""

from __future__ import annotations

import functools

from torch import nn

from tilesearch.core import DETECTOR, TilesearchError
from tilesearch.zoo._zoo import Zoo, torch_hub_file


def _effdet():
    """effdet, imported on first use (it is slow to import and only detectors need it)."""
    import effdet
    import effdet.config.model_config

    return effdet


class EffdetZoo(Zoo):
    name = "effdet"
    task = DETECTOR
    se_families = ("efficientdet_d*", "tf_efficientdet_d*")

    @functools.cache
    def names(self) -> list[str]:
        return sorted(_effdet().config.model_config.efficientdet_model_param_dict)

    def create(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        return self._build(name, num_classes, input_size, pretrained=False)

    def pretrained(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        if not _effdet().get_efficientdet_config(name).url:  # effdet would fall back to random weights, with a log line
            published = [n for n in self.names() if n.startswith(("tf_" + name, name)) and _effdet().get_efficientdet_config(n).url]
            hint = f" (it does for {', '.join(published[:2])})" if published else ""
            raise TilesearchError(f"effdet publishes no pretrained weights for {name}{hint}: pass --checkpoint FILE, "
                                  f"or --random-weights to search untrained weights")
        return self._build(name, num_classes, input_size, pretrained=True)  # through torch.hub's checkpoint cache

    def weights_location(self, name: str) -> str:
        return torch_hub_file(_effdet().get_efficientdet_config(name).url)

    def pretrained_label(self, name: str) -> str:
        url = _effdet().get_efficientdet_config(name).url
        return f"effdet pretrained weights ({url.rsplit('/', 1)[-1] if url else f'none published for {name}'})"

    def default_input_size(self, name: str) -> tuple[int, int]:
        height, width = _effdet().get_efficientdet_config(name).image_size
        return int(height), int(width)

    @staticmethod
    def _build(name: str, num_classes: int | None, input_size: tuple[int, int] | None, pretrained: bool) -> nn.Module:
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        if input_size is not None:
            kwargs["image_size"] = tuple(input_size)
        return _effdet().create_model(name, bench_task="", pretrained=pretrained, pretrained_backbone=False, **kwargs)
