"""Generic discovery: a channel-attention block found from its own graph, with no registration.

A module is a tileable block when its forward (traced with ``torch.fx``)

* globally pools its input: ``nn.AdaptiveAvgPool2d(1)``, ``F.adaptive_avg_pool2d(x, 1)``,
  ``x.mean((2, 3))`` with or without ``keepdim``, ``F.avg_pool2d`` with a kernel read
  from the input's shape, or the max-pool counterparts (CBAM pools both ways);
* computes a gate from those pooled descriptors only (the input's shape may be read); and
* returns its input multiplied by that gate.

The tiled version runs the block's own gate subgraph, cut out of its trace, on
every tile at once: the tile descriptors become a batch of one-pixel tensors
(B*nh*nw, C, 1, 1), on which each global pool is the identity and ``nn.Linear``
layers over channels, 1x1 convolutions, eval-mode BatchNorm and ECA's 1-D
convolution all act per tile; each gate then scales exactly its tile
(Vosco et al., section 3.1). The subgraph shares the block's layers, so its
weights are the block's.
"""

from __future__ import annotations

import inspect
import operator
import re
import weakref
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor, fx, nn

from tilesearch.core import first_line
from tilesearch.nn._se_flavour import SEFlavour
from tilesearch.nn._tile_ops import fold_tiles, scale_by_tile, tiled_pool, unfold_tiles

_SPATIAL = ({2, 3}, {-2, -1}, {2, -1}, {-2, 3})
_SHAPE_METHODS = {"size", "dim"}
_SHAPE_ATTRIBUTES = {"shape", "ndim", "dtype", "device"}
_SHAPED_LIKE = {"expand_as", "view_as", "reshape_as", "type_as"}  # read only the shape of their argument
_POOL_HINT = re.compile(r"mean|avg_pool|adaptive|amax|max_pool|AdaptiveAvg|AdaptiveMax")


@dataclass
class GateGraph:
    """A block's gate as a graph of its own layers, fed one pooled tensor per pool kind."""

    module: fx.GraphModule
    pools: tuple[str, ...]  # "avg" or "max", one per input of ``module``


@dataclass
class Refused:
    """Why a module that pools globally is not a tileable block."""

    reason: str
    pools_globally: bool | None = True  # False: no global pool of its input; None: untraceable, so unknown


_ANALYSED: weakref.WeakKeyDictionary[nn.Module, GateGraph | Refused] = weakref.WeakKeyDictionary()
_REFUSED: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


def is_candidate(module: nn.Module) -> bool:
    """Cheap filter before tracing: user code whose forward mentions a pool or that holds a global pool layer."""
    if type(module).__module__.startswith("torch.") or isinstance(module, fx.GraphModule):
        return False
    if any(_is_global_pool_layer(child) for child in module.children()):
        return True
    return _forward_mentions_pool(type(module))


@cache
def _forward_mentions_pool(module_type: type) -> bool:
    try:
        return bool(_POOL_HINT.search(inspect.getsource(module_type.forward)))
    except (OSError, TypeError):
        return False


def _is_global_pool_layer(module: nn.Module) -> bool:
    return isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and _is_one(module.output_size)


def _is_one(size) -> bool:
    return size == 1 or (isinstance(size, (tuple, list)) and all(side == 1 for side in size))


def analyse(module: nn.Module) -> GateGraph | Refused:
    """The gate graph of ``module``, or why it has none (cached per module)."""
    found = _ANALYSED.get(module)
    if found is None:
        found = _analyse(module)
        _ANALYSED[module] = found
    return found


def refuse(module: nn.Module, reason: str) -> None:
    """Mark ``module`` as not tileable (a failed GAP check): discovery leaves it as it is from now on."""
    _REFUSED[module] = reason


def refusal_of(module: nn.Module) -> str | None:
    """Why ``module`` was marked not tileable by :func:`refuse`, or None."""
    return _REFUSED.get(module)


def _analyse(module: nn.Module) -> GateGraph | Refused:
    try:
        graph = fx.Tracer().trace(module)
    except Exception as error:  # fx raises many types on data-dependent control flow
        return Refused(f"torch.fx cannot trace its forward ({first_line(error, 160)})", pools_globally=None)
    inputs = [node for node in graph.nodes if node.op == "placeholder"]
    pools = [(node, _pool_kind(module, node)) for node in graph.nodes]
    pools = [(node, kind) for node, kind in pools if kind is not None]
    if not pools:
        return Refused("no global pool of its input in its forward", pools_globally=False)
    if len(inputs) != 1:
        return Refused("its forward takes more than one input")
    (x,) = inputs
    if any(node.args and node.args[0] is not x for node, _ in pools):
        return Refused("a global pool reads a tensor computed from the input, not the input itself")
    output = next(node for node in graph.nodes if node.op == "output")
    gate = _gate_of(output.args[0], x)
    if gate is None:
        return Refused("its output is not its input multiplied by a gate")
    pool_nodes = {node: kind for node, kind in pools}
    ancestors = _ancestors(gate)
    for node in [gate, *ancestors]:
        if x in node.all_input_nodes and node not in pool_nodes and not _reads_only_shape(node, x):
            return Refused(f"its gate reads the input through `{node.format_node()}`, not only through a global pool")
    used = {kind for node, kind in pool_nodes.items() if node in ancestors or node is gate}
    if not used:
        return Refused("its gate does not depend on a global pool of its input")
    return GateGraph(_gate_module(module, graph, x, gate, ancestors, sorted(used)), tuple(sorted(used)))


def _gate_of(out, x: fx.Node) -> fx.Node | None:
    """The gate when ``out`` is ``x * gate`` (or ``gate * x``), else None."""
    if not isinstance(out, fx.Node):
        return None
    is_mul = (out.op == "call_function" and out.target in (operator.mul, torch.mul)) or (
        out.op == "call_method" and out.target == "mul")
    if not is_mul or len(out.args) != 2 or out.kwargs:
        return None
    first, second = out.args
    if first is x and isinstance(second, fx.Node) and second is not x:
        return second
    if second is x and isinstance(first, fx.Node) and first is not x:
        return first
    return None


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    stack = list(node.all_input_nodes)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(current.all_input_nodes)
    return seen


def _reads_only_shape(node: fx.Node, x: fx.Node) -> bool:
    if node.op == "call_method" and node.target in _SHAPE_METHODS and node.args[0] is x:
        return True
    if node.op == "call_function" and node.target is getattr and node.args[1] in _SHAPE_ATTRIBUTES:
        return True
    if node.op == "call_method" and node.target in _SHAPED_LIKE:
        return node.args[0] is not x and x not in node.args[2:]
    return False


def _pool_kind(module: nn.Module, node: fx.Node) -> str | None:
    """"avg" or "max" when ``node`` pools its first argument over both spatial axes, else None."""
    if node.op == "call_module":
        return _layer_pool_kind(module.get_submodule(node.target))
    if node.op not in ("call_function", "call_method") or not node.args:
        return None
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    if name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        return ("avg" if "avg" in name else "max") if _is_one(size) else None
    if name in ("mean", "amax"):
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if isinstance(dims, (tuple, list)) and set(dims) in _SPATIAL:
            return "avg" if name == "mean" else "max"
        return None
    if name in ("avg_pool2d", "max_pool2d"):
        kernel = node.args[1] if len(node.args) > 1 else node.kwargs.get("kernel_size")
        # A kernel read from the input's shape pools the whole tensor at any size; a fixed one does not.
        reads_shape = isinstance(kernel, fx.Node) or (
            isinstance(kernel, (tuple, list)) and any(isinstance(side, fx.Node) for side in kernel))
        return ("avg" if name == "avg_pool2d" else "max") if reads_shape else None
    return None


def _layer_pool_kind(layer: nn.Module) -> str | None:
    if _is_global_pool_layer(layer):
        return "avg" if isinstance(layer, nn.AdaptiveAvgPool2d) else "max"
    return None


def _gate_module(module: nn.Module, graph: fx.Graph, x: fx.Node, gate: fx.Node, ancestors: set[fx.Node],
                 kinds: list[str]) -> fx.GraphModule:
    """The gate's subgraph as a module of ``module``'s own layers, with one input per pool kind."""
    sub = fx.Graph()
    inputs = {kind: sub.placeholder(f"pooled_{kind}") for kind in kinds}
    copied: dict[fx.Node, fx.Node] = {}
    for node in graph.nodes:
        if node is gate or node in ancestors:
            if node is x:
                continue
            kind = _pool_kind(module, node) if x in node.all_input_nodes else None
            # Pools read their own kind of descriptor; shape reads see a one-pixel tensor of the right shape.
            source = inputs.get(kind, inputs[kinds[0]])
            copied[node] = sub.node_copy(node, lambda arg: source if arg is x else copied[arg])
    sub.output(copied[gate])
    return fx.GraphModule(module, sub, class_name=f"{type(module).__name__}Gate")


def generic_tiled(block: nn.Module, x: Tensor, tile_h: int, tile_w: int) -> Tensor:
    """``block``'s output with its gate computed per (tile_h, tile_w) tile from its own gate subgraph."""
    gate_graph = analyse(block)
    if isinstance(gate_graph, Refused):
        raise RuntimeError(f"{type(block).__name__} is not tileable: {gate_graph.reason}")
    batch, channels = x.shape[:2]
    descriptors = [tiled_pool(x, tile_h, tile_w, mode=kind) for kind in gate_graph.pools]
    grid = tuple(descriptors[0].shape[-2:])
    gate = gate_graph.module(*[fold_tiles(pooled) for pooled in descriptors])
    gate = unfold_tiles(gate, batch, grid).expand(batch, channels, *grid)
    return scale_by_tile(x, gate, tile_h, tile_w)


def generic_flavour(module: nn.Module) -> SEFlavour | None:
    """A flavour for ``module`` when its own graph makes it a tileable block, else None."""
    if not is_candidate(module) or isinstance(analyse(module), Refused):
        return None
    return SEFlavour(type(module), family="generic", tiled=generic_tiled)
