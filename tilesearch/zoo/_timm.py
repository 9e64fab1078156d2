"""timm's classifiers: names, random and pretrained weights (the local Hugging Face cache offline)."""

from __future__ import annotations

import functools

import timm
from torch import nn

from tilesearch.zoo._zoo import Zoo, torch_hub_file


class TimmZoo(Zoo):
    name = "timm"
    se_families = (
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
        "gcresnet*",
        "gcresnext*",
        "skresnet*",
        "skresnext*",
        "resnest*",
        "hgnet_*",  # found by generic discovery (EseModule)
        "legacy_se*",  # found by generic discovery (the legacy SEModule)
    )

    @functools.cache
    def names(self) -> list[str]:
        return timm.list_models()

    def owns(self, name: str) -> bool:
        return timm.is_model(name)

    def create(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        return timm.create_model(name, pretrained=False, **_classes(num_classes))

    def pretrained(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        return timm.create_model(name, pretrained=True, **_classes(num_classes))

    def default_input_size(self, name: str) -> tuple[int, int]:
        height, width = timm.get_pretrained_cfg(name).input_size[-2:]
        return int(height), int(width)

    def weights_location(self, name: str) -> str:
        cfg = timm.get_pretrained_cfg(name)
        if cfg is not None and cfg.hf_hub_id:
            from huggingface_hub import constants

            repo = cfg.hf_hub_id.split("@")[0]
            return f"{repo} (model.safetensors) in the Hugging Face cache {constants.HF_HUB_CACHE}"
        if cfg is not None and cfg.url:
            return torch_hub_file(cfg.url)
        return f"timm's weights of {name}"

    def pretrained_label(self, name: str) -> str:
        cfg = timm.get_pretrained_cfg(name)
        tag = f".{cfg.tag}" if cfg is not None and cfg.tag else ""
        return f"timm pretrained weights ({name}{tag})"


def _classes(num_classes: int | None) -> dict:
    return {} if num_classes is None else {"num_classes": num_classes}
