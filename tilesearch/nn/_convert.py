"""Turn a model's SE blocks into tiled ones, and re-tile them.

:func:`apply_tiles` swaps every SE block of a model for a
:class:`~tilesearch.nn.TiledSqueezeExcite` the first time and afterwards only
sets each block's tile, so re-tiling for the next config needs no rebuild and
no weight reload. The state dict is untouched, so checkpoints load either way.
"""

from __future__ import annotations

import os

from torch import nn

from tilesearch.core import GAP, TileChoice, TileConfig, TileConfigFile, TilesearchError, TileSpec, load_config, tile_config
from tilesearch.nn._flavours import flavour_for_type, is_shipped
from tilesearch.nn._generic import GENERIC_FAMILIES, Refused, analyse, generic_flavour, is_candidate, refusal_of
from tilesearch.nn._se_flavour import SEFlavour
from tilesearch.nn._tiled import TiledSqueezeExcite


def flavour_of(module: nn.Module) -> SEFlavour | None:
    """The :class:`SEFlavour` of ``module`` (tiled or not), or ``None`` if it is no tileable block.

    A registered class is found by class; any other module by its own graph (generic discovery).
    """
    if isinstance(module, TiledSqueezeExcite):
        return module.flavour
    if refusal_of(module) is not None:
        return None
    flavour = flavour_for_type(type(module))
    if flavour is not None:
        return None if flavour.refuses(module) else flavour
    return generic_flavour(module)


def found_by(module: nn.Module) -> str:
    """How discovery finds the block ``module``: ``class`` (shipped), ``registered`` (register_flavour) or ``generic``."""
    flavour = flavour_of(module)
    if flavour.family in GENERIC_FAMILIES:
        return "generic"
    return "class" if is_shipped(flavour) else "registered"


def block_type(module: nn.Module) -> type[nn.Module]:
    """The SE block's own class, also once it is tiled."""
    return type(module.block) if isinstance(module, TiledSqueezeExcite) else type(module)


def find_se_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every tileable channel-attention block in ``model``, by module path, in registration order."""
    found, inside = [], None
    for name, module in model.named_modules():
        if inside is not None and name.startswith(inside):
            continue  # a block's own layers are not blocks of their own
        if flavour_of(module) is not None:
            found.append((name, module))
            inside = f"{name}." if name else ""
    return found


def apply_tiles(model: nn.Module, tiles: TileChoice | TileConfig | TileConfigFile | os.PathLike) -> nn.Module:
    """Tile every SE block of ``model`` in place and return the model.

    ``tiles`` is one tile for every block (``"7xW"`` or a :class:`TileSpec`), a
    mapping from block name (module path) to tile (blocks not named stay GAP),
    or a saved tile config (a :class:`~tilesearch.core.TileConfigFile` or the
    path of its YAML), whose block names must match the model's exactly.
    Calling it again re-tiles the same model without rebuilding it. When
    ``model`` is itself an SE block, the tiled block that replaces it is returned.
    """
    blocks = find_se_modules(model)
    if not blocks:
        raise no_block_error(model)
    names = [name for name, _ in blocks]
    if isinstance(tiles, (str, os.PathLike)) and str(tiles).endswith((".yaml", ".yml")):
        tiles = load_config(tiles)
    if isinstance(tiles, TileConfigFile):
        tiles = tiles.tiles_for(names)
    config = tile_config(names, tiles)
    for name, module in blocks:
        if not isinstance(module, TiledSqueezeExcite):
            module = _tiled(name, module)
            if name:
                model.set_submodule(name, module)
            else:
                model = module
        module.tile = config[name]
    return model


def _tiled(name: str, block: nn.Module) -> TiledSqueezeExcite:
    if "forward" in vars(block):
        raise TilesearchError(
            f"SE block {name or type(block).__name__!r} has its forward replaced on the instance, so what it computes "
            f"is unknown to tilesearch; register a forward hook instead, or apply tiles before patching it"
        )
    return TiledSqueezeExcite(block, flavour_of(block))


def current_tiles(model: nn.Module) -> dict[str, TileSpec]:
    """The tile each SE block of ``model`` uses now (GAP for blocks never tiled)."""
    return {
        name: module.tile if isinstance(module, TiledSqueezeExcite) else GAP for name, module in find_se_modules(model)
    }


def refused_blocks(model: nn.Module) -> list[tuple[str, str, Refused]]:
    """(module path, class, why) of every module that pools globally, or may, but is not tiled."""
    found = []
    for name, module in model.named_modules():
        verdict = _refusal(module)
        if verdict is not None:
            found.append((name or "(the model)", type(module).__name__, verdict))
    return found


def _refusal(module: nn.Module) -> Refused | None:
    """Why ``module`` is not tiled although it pools globally (or may); None when it is tiled or pools nothing."""
    if refusal_of(module) is not None:  # a failed GAP check
        return Refused(refusal_of(module))
    flavour = flavour_for_type(type(module))
    if flavour is not None:
        reason = flavour.refuses(module)
        return None if reason is None else Refused(reason)
    if is_candidate(module) and isinstance(verdict := analyse(module), Refused) and verdict.pools_globally is not False:
        return verdict
    return None


def no_block_error(model: nn.Module, label: str | None = None) -> TilesearchError:
    """The error for a model with nothing to tile, naming each global pool seen and why it was not taken."""
    refused = refused_blocks(model)
    seen = [f"{name} ({kind}): {verdict.reason}" for name, kind, verdict in refused if verdict.pools_globally]
    untraced = [f"{name} ({kind})" for name, kind, verdict in refused if verdict.pools_globally is None]
    parts = [f"global pools seen: {'; '.join(seen)}" if seen else
             "no module's forward pools its input globally (nn.AdaptiveAvgPool2d(1), x.mean((2, 3)), ...)"]
    if untraced:
        parts.append(f"torch.fx could not trace {', '.join(untraced[:5])}{' ...' if len(untraced) > 5 else ''} "
                     f"(register_flavour makes such a block tileable)")
    return TilesearchError(f"{label or type(model).__name__} has no channel-attention block to tile; {'; '.join(parts)}")
