"""Generic discovery: a channel-attention block found from its own graph, with no registration.

A module is a tileable block when its forward (traced with ``torch.fx``)

* globally pools its input: ``nn.AdaptiveAvgPool2d(1)``, ``F.adaptive_avg_pool2d(x, 1)``,
  ``x.mean((2, 3))`` with or without ``keepdim``, ``F.avg_pool2d`` with a kernel read
  from the input's shape, or the max-pool counterparts (CBAM pools both ways);
* computes a gate from those pooled descriptors only (the input's shape may be read); and
* returns its input multiplied by that gate.

A **pool branch** is found the same way: a module whose output is computed from
global pools of its input alone, through per-position layers (1x1 convolutions,
normalisations, activations), optionally resized back to the input's size. Such
a branch is a head's global-context path: LR-ASPP's ``scale`` (pool, 1x1 conv,
sigmoid, multiplied into another tensor) or DeepLabV3's ASPP image pooling (pool,
conv, BN, ReLU, upsampled and concatenated). Whatever consumes its value cannot
emit an element before the pool has seen the whole tensor, so it stalls a
pipeline exactly like SE. Tiled, the branch runs on every tile's descriptor and
each tile's value is broadcast back onto exactly that tile.

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
from tilesearch.nn._tile_ops import expand_tiles, fold_tiles, scale_by_tile, tiled_pool, unfold_tiles

_SPATIAL = ({2, 3}, {-2, -1}, {2, -1}, {-2, 3})
_SHAPE_METHODS = {"size", "dim"}
_SHAPE_ATTRIBUTES = {"shape", "ndim", "dtype", "device"}
_SHAPED_LIKE = {"expand_as", "view_as", "reshape_as", "type_as"}  # read only the shape of their argument
_POOL_HINT = re.compile(r"mean|avg_pool|adaptive|amax|max_pool|AdaptiveAvg|AdaptiveMax")


GENERIC_FAMILIES = ("generic", "branch")  # found from the module's own graph, not by class


@dataclass
class GateGraph:
    """A block's gate (or a pool branch's value) as a graph of its own layers, fed one pooled tensor per pool kind."""

    module: fx.GraphModule
    pools: tuple[str, ...]  # "avg" or "max", one per input of ``module``
    branch: bool = False  # a pool branch: the output is the graph's value, broadcast per tile, not input x gate
    out_channels: int | None = None  # a branch's output channels, from its last convolution


@dataclass
class Refused:
    """Why a module that pools globally is not a tileable block."""

    reason: str
    pools_globally: bool | None = True  # False: no global pool of its input; None: untraceable, so unknown


_ANALYSED: weakref.WeakKeyDictionary[nn.Module, GateGraph | Refused] = weakref.WeakKeyDictionary()
_REFUSED: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


def is_candidate(module: nn.Module) -> bool:
    """Cheap filter before tracing: user code whose forward mentions a pool or that holds a global pool layer,
    and ``nn.Sequential`` containers holding one (a pool branch such as LR-ASPP's ``scale``)."""
    if isinstance(module, fx.GraphModule):
        return False
    holds_pool = any(_is_global_pool_layer(child) for child in module.children())
    if type(module).__module__.startswith("torch."):
        return holds_pool and isinstance(module, nn.Sequential)
    return holds_pool or _forward_mentions_pool(type(module))


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
        return _analyse_branch(module, graph, x, output.args[0], dict(pools))
    pool_nodes = {node: kind for node, kind in pools}
    ancestors = _ancestors(gate)
    problem = _reads_input_beyond_pools(gate, ancestors, x, pool_nodes)
    if problem:
        return Refused(f"its gate {problem}")
    used = {kind for node, kind in pool_nodes.items() if node in ancestors or node is gate}
    if not used:
        return Refused("its gate does not depend on a global pool of its input")
    return GateGraph(_gate_module(module, graph, x, gate, ancestors, sorted(used)), tuple(sorted(used)))


def _reads_input_beyond_pools(value: fx.Node, ancestors: set[fx.Node], x: fx.Node, pools: dict) -> str | None:
    for node in [value, *ancestors]:
        if x in node.all_input_nodes and node not in pools and not _reads_only_shape(node, x):
            return f"reads the input through `{node.format_node()}`, not only through a global pool"
    return None


_ELEMENTWISE = {"relu", "relu6", "sigmoid", "hardsigmoid", "hardswish", "silu", "gelu", "tanh", "clamp", "dropout",
                "mul", "add", "sub", "truediv", "div", "neg", "getitem", "getattr", "size", "contiguous"}
_PER_POSITION_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm, nn.Identity, nn.Dropout, nn.Dropout2d)
_RESIZES = {"interpolate", "upsample"}


def _analyse_branch(module: nn.Module, graph: fx.Graph, x: fx.Node, out, pools: dict) -> GateGraph | Refused:
    """A pool branch's graph: its output (before a final resize to the input's size) from global pools alone."""
    not_a_block = Refused("its output is neither its input multiplied by a gate nor computed from global pools alone")
    if not isinstance(out, fx.Node):
        return not_a_block
    value = out.args[0] if _name(out) in _RESIZES and out.args and isinstance(out.args[0], fx.Node) else out
    ancestors = _ancestors(value)
    if _reads_input_beyond_pools(value, ancestors, x, pools) or not any(node in pools for node in [value, *ancestors]):
        return not_a_block
    path = [node for node in [value, *ancestors] if node is not x and node not in pools and not _reads_only_shape(node, x)]
    layers = [module.get_submodule(node.target) for node in path if node.op == "call_module"]
    odd = next((node for node in path if not _per_position(node, module)), None)
    if odd is not None:
        return Refused(f"its pooled branch runs `{odd.format_node()}`, which is not a per-position layer")
    convolutions = [layer for layer in layers if isinstance(layer, nn.Conv2d)]
    if not convolutions:
        return Refused("a bare global pool: what uses its value lies outside the module")
    used = sorted({kind for node, kind in pools.items() if node in ancestors or node is value})
    conv_order = [node for node in graph.nodes if node in path and node.op == "call_module"
                  and isinstance(module.get_submodule(node.target), nn.Conv2d)]
    last_conv = module.get_submodule(conv_order[-1].target)
    return GateGraph(_gate_module(module, graph, x, value, ancestors, used, "Branch"), tuple(used), branch=True,
                     out_channels=last_conv.out_channels)


def _name(node: fx.Node) -> str:
    if node.op == "call_module":
        return ""
    return node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")


def _per_position(node: fx.Node, module: nn.Module) -> bool:
    """Whether ``node`` acts on each position (and each batch entry) alone, so it can run on each tile's descriptor."""
    if node.op == "call_module":
        layer = module.get_submodule(node.target)
        return isinstance(layer, _PER_POSITION_LAYERS) or type(layer).__module__ == "torch.nn.modules.activation"
    if node.op in ("call_function", "call_method"):
        return _name(node) in _ELEMENTWISE
    return node.op == "get_attr"


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
                 kinds: list[str], role: str = "Gate") -> fx.GraphModule:
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
    return fx.GraphModule(module, sub, class_name=f"{type(module).__name__}{role}")


def _graph_of(block: nn.Module) -> GateGraph:
    gate_graph = analyse(block)
    if isinstance(gate_graph, Refused):
        raise RuntimeError(f"{type(block).__name__} is not tileable: {gate_graph.reason}")
    return gate_graph


def _per_tile_values(gate_graph: GateGraph, x: Tensor, tile_h: int, tile_w: int) -> Tensor:
    """The graph's value for every tile's descriptors, (B, K, nh, nw)."""
    descriptors = [tiled_pool(x, tile_h, tile_w, mode=kind) for kind in gate_graph.pools]
    values = gate_graph.module(*[fold_tiles(pooled) for pooled in descriptors])
    return unfold_tiles(values, x.shape[0], tuple(descriptors[0].shape[-2:]))


def generic_tiled(block: nn.Module, x: Tensor, tile_h: int, tile_w: int) -> Tensor:
    """``block``'s output with its gate computed per (tile_h, tile_w) tile from its own gate subgraph."""
    gate = _per_tile_values(_graph_of(block), x, tile_h, tile_w)
    return scale_by_tile(x, gate.expand(x.shape[0], x.shape[1], *gate.shape[-2:]), tile_h, tile_w)


def branch_tiled(block: nn.Module, x: Tensor, tile_h: int, tile_w: int) -> Tensor:
    """A pool branch's value per tile, each broadcast onto exactly its tile: (B, K, H, W)."""
    values = _per_tile_values(_graph_of(block), x, tile_h, tile_w)
    return expand_tiles(values, tile_h, tile_w, *x.shape[-2:])


def branch_buffer(block: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """What waits for a pool branch: the smaller of its input and a tensor of its output's width at that size.

    Its consumer combines the branch's value with a tensor at the input's resolution (LR-ASPP multiplies it
    into a 1x1 convolution of the same input; DeepLabV3 concatenates it with branches that its projection
    then sums), so the pipeline holds either that operand (the branch's output channels) or the pooled input
    itself, to recompute the operand once the pool is done, whichever is smaller.
    """
    channels, height, width = input_shape[-3:]
    return min(channels, _graph_of(block).out_channels or channels), height, width


def generic_flavour(module: nn.Module) -> SEFlavour | None:
    """A flavour for ``module`` when its own graph makes it a tileable block or pool branch, else None."""
    if not is_candidate(module):
        return None
    gate_graph = analyse(module)
    if isinstance(gate_graph, Refused):
        return None
    if gate_graph.branch:
        return SEFlavour(type(module), family="branch", tiled=branch_tiled, buffered_shape=branch_buffer)
    return SEFlavour(type(module), family="generic", tiled=generic_tiled)
