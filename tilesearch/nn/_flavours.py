"""SE flavours: how each squeeze-and-excite implementation squeezes and excites.

Vosco et al. (section 3.1) keep an SE block's excite unchanged and only change
what it is fed: one descriptor per tile instead of one per tensor. A flavour
tells :class:`~tilesearch.nn.TiledSqueezeExcite` how to run one implementation's
own layers on a (B, C, nh, nw) grid of tile descriptors. Flavours live in a
registry keyed by module class; :func:`register_flavour` adds a user's own SE
class without editing tilesearch. A subclass of a registered class takes its
parent's flavour unless it is registered itself.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from tilesearch.nn._se_flavour import Excite, SEFlavour, Squeeze, average_squeeze, squeeze_with_optional_max

_REGISTRY: dict[type[nn.Module], SEFlavour] = {}
_BUILTINS_REGISTERED = False
_BUILTIN_TYPES: set[type[nn.Module]] = set()


def register_flavour(
    module_type: type[nn.Module],
    excite: Excite | None = None,
    family: str = "se",
    squeeze: Squeeze = average_squeeze,
    **options,
) -> SEFlavour:
    """Make tilesearch find and tile every ``module_type`` block of a model.

    ``excite(block, pooled)`` must map pooled descriptors (B, C, nh, nw) to gates of the same
    shape using the block's own layers, exactly as the block's forward does on its (B, C, 1, 1)
    global average. Blocks that do more than scale their input give ``tiled=`` instead (see
    :class:`SEFlavour` for it and the other ``options``). Give module-level functions (not
    lambdas) so tiled models can be pickled.
    """
    if excite is None and options.get("tiled") is None:
        raise TypeError("register_flavour needs excite= or tiled=")
    flavour = SEFlavour(module_type, excite, family, squeeze, **options)
    _REGISTRY[module_type] = flavour
    return flavour


def flavour_for_type(module_type: type) -> SEFlavour | None:
    """The flavour registered for ``module_type`` or its nearest registered base class."""
    _register_builtins()
    for cls in module_type.__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return None


def is_shipped(flavour: SEFlavour) -> bool:
    """Whether tilesearch ships ``flavour`` (found by class) rather than the user registering it."""
    _register_builtins()
    return flavour.module_type in _BUILTIN_TYPES and _REGISTRY.get(flavour.module_type) is flavour


# ---------------------------------------------------------------------------- the shipped flavours


def _excite_timm_se_module(m: nn.Module, s: Tensor) -> Tensor:
    return m.gate(m.fc2(m.act(m.bn(m.fc1(s)))))


def _excite_timm_effective_se(m: nn.Module, s: Tensor) -> Tensor:
    return m.gate(m.fc(s))


def _excite_timm_squeeze_excite(m: nn.Module, s: Tensor) -> Tensor:
    return m.gate(m.conv_expand(m.act1(m.conv_reduce(s))))


def _excite_torchvision(m: nn.Module, s: Tensor) -> Tensor:
    return m.scale_activation(m.fc2(m.activation(m.fc1(s))))


def _per_tile_channel_rows(s: Tensor) -> Tensor:
    """(B, C, nh, nw) -> (B*nh*nw, 1, C): one row of channels per tile, for ECA's 1-D conv."""
    return s.permute(0, 2, 3, 1).reshape(-1, 1, s.shape[1])


def _from_channel_rows(y: Tensor, like: Tensor) -> Tensor:
    b, c, nh, nw = like.shape
    return y.reshape(b, nh, nw, c).permute(0, 3, 1, 2)


def _excite_timm_eca(m: nn.Module, s: Tensor) -> Tensor:
    y = m.conv(_per_tile_channel_rows(s))
    if m.act is not None:
        y = m.conv2(m.act(y))
    return _from_channel_rows(m.gate(y), s)


def _excite_timm_ceca(m: nn.Module, s: Tensor) -> Tensor:
    y = F.pad(_per_tile_channel_rows(s), (m.padding, m.padding), mode="circular")
    return _from_channel_rows(m.gate(m.conv(y)), s)


def _register_builtins() -> None:
    """timm's and torchvision's SE classes; imported on first use, user registrations kept."""
    global _BUILTINS_REGISTERED
    if _BUILTINS_REGISTERED:
        return
    _BUILTINS_REGISTERED = True
    from timm.layers.eca import CecaModule, EcaModule
    from timm.layers.squeeze_excite import EffectiveSEModule, SEModule
    from timm.models._efficientnet_blocks import SqueezeExcite
    from torchvision.ops.misc import SqueezeExcitation

    builtins = [
        SEFlavour(SqueezeExcite, _excite_timm_squeeze_excite),
        SEFlavour(SEModule, _excite_timm_se_module, squeeze=squeeze_with_optional_max),
        SEFlavour(EffectiveSEModule, _excite_timm_effective_se, "ese", squeeze_with_optional_max),
        SEFlavour(SqueezeExcitation, _excite_torchvision),
        SEFlavour(EcaModule, _excite_timm_eca, "eca"),
        SEFlavour(CecaModule, _excite_timm_ceca, "eca"),
    ]
    from tilesearch.nn._context_blocks import context_flavours

    for flavour in builtins + context_flavours():
        _BUILTIN_TYPES.add(flavour.module_type)
        _REGISTRY.setdefault(flavour.module_type, flavour)
