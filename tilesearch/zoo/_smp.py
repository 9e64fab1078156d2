"""segmentation_models_pytorch's segmenters (the optional ``smp`` extra), named ``smp:ARCH/ENCODER``.

Many segmenters are built this way: an smp architecture (``Unet``, ``FPN``,
``DeepLabV3Plus``...) on an encoder from timm (``tu-`` names, such as
``tu-efficientnet_b0`` with its SE blocks) or smp's own (``se_resnext50_32x4d``).
Their SE blocks, and DeepLabV3's ASPP pooling, are found like any other model's.
smp publishes encoder weights only, so a trained segmenter comes from ``--checkpoint``.
"""

from __future__ import annotations

from torch import nn

from tilesearch.core import SEGMENTER, TilesearchError, UnknownNameError
from tilesearch.zoo._zoo import Zoo

PREFIX = "smp:"
EXAMPLE = "smp:Unet/tu-efficientnet_b0"
INPUT_SIZE = (512, 512)  # smp's decoders need sides divisible by 32


def _smp():
    try:
        import segmentation_models_pytorch
    except ImportError as error:
        raise TilesearchError("smp: models need segmentation_models_pytorch: pip install 'tilesearch[smp]'") from error
    return segmentation_models_pytorch


class SmpZoo(Zoo):
    name = "smp"
    task = SEGMENTER

    def names(self) -> list[str]:
        return []  # architecture x encoder: too many to list; `owns` reads the name

    def owns(self, name: str) -> bool:
        return name.startswith(PREFIX)

    def _parts(self, name: str) -> tuple[str, str]:
        architecture, _, encoder = name.removeprefix(PREFIX).partition("/")
        known = {key.lower(): key for key in _smp().MODEL_ARCHITECTURES_MAPPING}
        if architecture.lower() not in known or not encoder:
            raise UnknownNameError(f"unknown smp model {name!r}: expected smp:ARCH/ENCODER such as {EXAMPLE}, ARCH one "
                                   f"of {', '.join(sorted(known))}")
        return architecture.lower(), encoder

    def create(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        architecture, encoder = self._parts(name)
        try:  # one output channel (smp's default) is a binary segmenter: scored as two classes
            return _smp().create_model(architecture, encoder_name=encoder, encoder_weights=None, classes=num_classes or 1)
        except (KeyError, ValueError, RuntimeError) as error:
            raise TilesearchError(f"smp cannot build {name!r}: {error}") from error

    def pretrained(self, name: str, num_classes: int | None, input_size: tuple[int, int] | None) -> nn.Module:
        self._parts(name)
        raise TilesearchError(f"smp publishes encoder weights only, no trained segmenter for {name}: pass --checkpoint "
                              f"FILE with your trained model, or --random-weights to search untrained weights")

    def default_input_size(self, name: str) -> tuple[int, int]:
        return INPUT_SIZE

    def weights_location(self, name: str) -> str:
        return "--checkpoint FILE"

    def pretrained_label(self, name: str) -> str:
        return "none published (smp gives encoder weights only)"
