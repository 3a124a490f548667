"""The layer plan of LRP: check every layer of a backbone and decide its replacement.

:func:`_plan` walks the backbone's flat graph (:mod:`tfxai.graph`) once and returns a
:class:`_Plan`: for each layer, a factory of its replacement layer
(:mod:`tfxai.attribution.lrp.backward`), or none when the ordinary gradient routes relevance.
On the way it finds the tensors known to be non-negative, the first layers on pixel input and
their z^B box [Montavon et al. 2017], and the batch norms that fold into the layer before them
[Montavon et al. 2019, §10.3]. A layer LRP does not support raises :class:`LRPError`.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfxai import graph as graph_lib
from tfxai.attribution.lrp.backward import _Folded, _Gate, _KernelLayer, _Logits, _Merge, _Pass
from tfxai.attribution.lrp.kinds import (
    _AFFINE,
    _AVG_POOL,
    _ELEMENTWISE,
    _KERNEL,
    _MERGE,
    _OP_MERGE,
    _OP_ROUTE,
    _PIXEL_PATH,
    _ROUTE,
    _SOFTMAX_NAMES,
    _act_name,
    _flat,
    _is_linear,
    _output_nonneg,
    _relu_like,
)
from tfxai.attribution.lrp.rules import Composite
from tfxai.backend import keras

layers = keras.layers

Box = tuple[np.ndarray, np.ndarray]


class LRPError(ValueError):
    """A model LRP cannot be applied to: the message names the layer and what to do."""


class LRPWarning(UserWarning):
    """LRP runs, but not quite as asked (e.g. no first layer on pixel input for z^B)."""


@dataclass
class _Plan:
    """What the rewrite does with each layer of one backbone (found on its flat graph)."""

    composite: Composite
    replace: dict[int, Any] = field(default_factory=dict)  # id(layer) → replacement factory
    #: paths of the layers given the composite's first-layer rule
    first_layers: list[str] = field(default_factory=list)
    #: "batch norm path → layer path" of the folded batch norms
    folded: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------- graph


@dataclass
class _Graph:
    """Lookups over the nodes of a backbone's flat graph (tensors keyed by ``id``)."""

    nodes: list[graph_lib.Node]
    producer: dict[int, graph_lib.Node]
    consumers: dict[int, list[graph_lib.Node]]
    calls: Counter  # id(layer) → number of calls
    head: graph_lib.Node | None  # the output softmax, when the backbone outputs probabilities
    nonneg: set[int] = field(default_factory=set)  # tensors known to be >= 0
    pixel: set[int] = field(default_factory=set)  # pixels seen through pass-through layers

    def is_head(self, src: Any) -> bool:
        return self.head is not None and src is self.head.source


def _softmax_head(bb: Any) -> graph_lib.Node | None:
    if bb.output != "probabilities":
        return None
    return bb.graph.producer(bb.graph.output)


def _index(bb: Any) -> _Graph:
    """The producer, consumers and call count of every tensor and layer of ``bb``'s graph."""
    nodes = bb.graph.nodes
    producer: dict[int, graph_lib.Node] = {}
    consumers: dict[int, list[graph_lib.Node]] = {}
    for node in nodes:
        for t in _flat(node.output):
            producer[id(t)] = node
        for t in _flat((node.args, node.kwargs)):
            consumers.setdefault(id(t), []).append(node)
    calls = Counter(id(n.source) for n in nodes)
    g = _Graph(nodes, producer, consumers, calls, _softmax_head(bb))
    _mark_signs(g, id(bb.graph.input))
    return g


def _mark_signs(g: _Graph, pixels: int) -> None:
    """Fill ``g.nonneg`` and ``g.pixel`` (``pixels``: the id of the graph's input)."""
    g.pixel.add(pixels)
    for node in g.nodes:
        ins = [id(t) for t in _flat((node.args, node.kwargs))]
        out = [id(t) for t in _flat(node.output)]
        sign = _output_nonneg(node.source) if isinstance(node.source, layers.Layer) else False
        if sign or (sign is None and ins and all(i in g.nonneg for i in ins)):
            g.nonneg.update(out)
        if (isinstance(node.source, _PIXEL_PATH) or (
                isinstance(node.source, layers.Activation) and _is_linear(node.source.activation))
                ) and ins and all(i in g.pixel for i in ins):
            g.pixel.update(out)


# --------------------------------------------------------------------------------------- folding


@dataclass
class _Folding:
    """The batch norms folded into the layer with weights before them."""

    into: dict[int, Any] = field(default_factory=dict)  # id(layer) → its batch norm
    out: dict[int, Any] = field(default_factory=dict)  # id(layer) → output of its batch norm
    bns: set[int] = field(default_factory=set)  # id(batch norm)


def _fold_target(node: graph_lib.Node, g: _Graph) -> graph_lib.Node | None:
    """The node of the layer a batch-norm node folds into, or ``None``: a layer with weights
    and linear activation, each called once, the batch norm its only consumer, on its channel
    axis (and not the softmax head)."""
    src = node.source
    if not isinstance(src, layers.BatchNormalization) or g.calls[id(src)] != 1:
        return None
    prev = g.producer.get(id(node.first_input))
    if prev is None or not isinstance(prev.source, _KERNEL) or g.calls[id(prev.source)] != 1:
        return None
    rank = len(node.shape or ())
    axis = src.axis if isinstance(src.axis, int) else (list(src.axis) + [None])[0]
    if axis is None or len(g.consumers.get(id(node.first_input), [])) != 1 or g.is_head(
            prev.source):
        return None
    channel_axis = 1 if getattr(prev.source, "data_format", "") == "channels_first" else -1
    if (axis % rank) != (channel_axis % rank) or not _is_linear(prev.source.activation):
        return None
    return prev


def _fold(g: _Graph, plan: _Plan) -> _Folding:
    """Every batch norm that can be folded into the layer before it (listed in ``plan``)."""
    folding = _Folding()
    for node in g.nodes:
        prev = _fold_target(node, g)
        if prev is None:
            continue
        folding.into[id(prev.source)] = node.source
        folding.bns.add(id(node.source))
        folding.out[id(prev.source)] = node.output
        plan.folded.append(f"{node.path} → {prev.path}")
    return folding


# --------------------------------------------------------------------------------------- choices


@dataclass
class _Context:
    """What the per-layer decisions read, and the plan they fill."""

    method: str
    plan: _Plan
    graph: _Graph
    folding: _Folding
    first_paths: set[str]
    boxes: dict[str, Box]
    #: relevance is exactly 0 at every unit whose output is 0 (so at a ReLU's negative inputs)
    #: when every rule after the first layer is proportional to its input and merges use the
    #: z-rule
    exact_zeros: bool

    @property
    def composite(self) -> Composite:
        return self.plan.composite

    def use(self, src: Any, cls: type, *args: Any) -> None:
        """Replace layer ``src`` by ``cls(src, *args)``."""
        self.plan.replace[id(src)] = _factory(cls, src, *args)


def _context(bb: Any, plan: _Plan, method: str) -> _Context:
    g = _index(bb)
    folding = _fold(g, plan)
    composite = plan.composite
    first_nodes = [n for n in g.nodes if isinstance(n.source, _KERNEL)
                   and g.calls[id(n.source)] == 1 and id(n.first_input) in g.pixel]
    first_paths = {n.path for n in first_nodes} if composite.first is not None else set()
    boxes = _boxes(bb, first_nodes) if composite.first is not None and (
        composite.first.needs_box) else {}
    exact_zeros = (composite.merge == "z" and composite.conv.proportional
                   and composite.dense.proportional)
    return _Context(method, plan, g, folding, first_paths, boxes, exact_zeros)


def _choose(node: graph_lib.Node, ctx: _Context) -> str | None:
    """Record the replacement of ``node``'s layer in ``ctx.plan``; return why the layer is not
    supported, if it is not."""
    src = node.source
    if isinstance(src, _KERNEL):
        return _choose_kernel(node, ctx)
    if ctx.graph.is_head(src):
        ctx.use(src, _Logits)
        return None
    if isinstance(src, layers.Layer):
        return _choose_layer(node, ctx)
    return _choose_operation(node, ctx)


def _choose_kernel(node: graph_lib.Node, ctx: _Context) -> str | None:
    """A Conv/Depthwise/Dense layer: its rule, folded batch norm, box and shortcuts."""
    src, path, g = node.source, node.path, ctx.graph
    if getattr(src, "padding", "") == "causal":
        return f"{path!r} ({type(src).__name__} with causal padding)"
    first = path in ctx.first_paths
    rule = ctx.composite.rule(src, first)
    if rule.needs_box and not first:
        raise LRPError(f"{ctx.method}: the {rule.describe()} rule needs the pixel range, so "
                       f"it applies only to first layers on pixel input, not to {path!r}")
    if first:
        ctx.plan.first_layers.append(path)
    box = ctx.boxes.get(path) if rule.needs_box else None
    act = src.activation
    if g.is_head(src) or _is_linear(act):
        act = None
    elif _act_name(act) in _SOFTMAX_NAMES:
        return f"{path!r} ({type(src).__name__} with a softmax inside the network)"
    # a layer called more than once gets the shortcuts only if every call allows them
    keep = all(id(n.first_input) in g.nonneg for n in g.nodes if n.source is src)
    positive = ctx.exact_zeros and g.calls[id(src)] == 1 and _relu_follows(
        node, ctx.folding.out.get(id(src)), g.consumers)
    ctx.use(src, _KernelLayer, rule, ctx.folding.into.get(id(src)), keep, box, act, positive)
    return None


def _choose_layer(node: graph_lib.Node, ctx: _Context) -> str | None:
    """A Keras layer without weights: folded, merged, gating, passing or routing relevance."""
    src = node.source
    if isinstance(src, layers.BatchNormalization) and id(src) in ctx.folding.bns:
        ctx.use(src, _Folded)
    elif isinstance(src, (*_MERGE, *_AVG_POOL)):
        if ctx.composite.merge == "z":
            ctx.use(src, _Merge)
    elif isinstance(src, layers.Multiply):
        gate = _gate_index(node, ctx.graph.producer)
        if gate is None:
            return (f"{node.path!r} (Multiply of {len(_flat(node.args))} inputs that is not a "
                    "gate: LRP treats Multiply as x · constant gate)")
        ctx.use(src, _Gate, gate)
    elif isinstance(src, layers.Softmax) or (
            isinstance(src, layers.Activation) and _act_name(src.activation) in _SOFTMAX_NAMES):
        return f"{node.path!r} ({type(src).__name__}: a softmax inside the network)"
    elif isinstance(src, _ELEMENTWISE):
        if not (ctx.composite.relu == "gradient" and _relu_like(src)):
            ctx.use(src, _Pass)
    elif isinstance(src, _AFFINE):
        ctx.use(src, _Pass)
    elif not isinstance(src, _ROUTE):
        return f"{node.path!r} ({type(src).__name__})"
    return None


def _choose_operation(node: graph_lib.Node, ctx: _Context) -> str | None:
    """A Keras operation (``x + y``, ``keras.ops.reshape``...) in a functional model."""
    src = node.source
    kind = type(src).__name__
    if kind in _OP_ROUTE:
        return None
    if kind in _OP_MERGE:
        if ctx.composite.merge == "z":
            ctx.use(src, _Merge, True)
        return None
    gate = _gate_index(node, ctx.graph.producer) if kind == "Multiply" else None
    if gate is None:
        return f"{node.path!r} (Keras operation {kind})"
    ctx.use(src, _Gate, gate, True)
    return None


# --------------------------------------------------------------------------------------- plan


def _plan(bb: Any, composite: Composite, method: str) -> _Plan:
    """Check every layer of ``bb`` and decide its replacement (raises :class:`LRPError`)."""
    if bb.graph.opaque:
        raise LRPError(f"{method}: {', '.join(bb.graph.opaque)} in model {bb.name!r} is a "
                       "subclassed Keras model whose layers LRP cannot reach; rebuild it with the "
                       "functional API or keras.Sequential")
    plan = _Plan(composite)
    ctx = _context(bb, plan, method)
    unsupported: list[str] = []
    for node in ctx.graph.nodes:
        if id(node.source) in plan.replace:
            continue
        problem = _choose(node, ctx)
        if problem is not None:
            unsupported.append(problem)
    if unsupported:
        raise _unsupported(bb, method, unsupported)
    if composite.first is not None and composite.first.needs_box and not plan.first_layers:
        warnings.warn(f"{method}: no layer of model {bb.name!r} takes the pixels directly (through "
                      "rescaling/normalisation/padding only), so the z^B rule is not used",
                      LRPWarning, stacklevel=3)
    return plan


def _unsupported(bb: Any, method: str, unsupported: list[str]) -> LRPError:
    return LRPError(
        f"{method}: model {bb.name!r} has layer(s) LRP does not support: "
        f"{', '.join(unsupported[:6])}{' ...' if len(unsupported) > 6 else ''}. Supported: "
        "Conv1D/2D/3D, DepthwiseConv2D, Dense, BatchNormalization, pooling, Add, Average, "
        "Subtract, Concatenate, gating Multiply, activations, Rescaling, Normalization, "
        "padding, cropping, Flatten, Reshape, Permute, Dropout; use a gradient method for "
        "this model or rebuild it from these layers"
    )


# --------------------------------------------------------------------------------------- helpers


def _relu_follows(node: graph_lib.Node, folded_output: Any,
                  consumers: dict[int, list[graph_lib.Node]]) -> bool:
    """True when a ReLU (fused, or the only consumer of the layer's output or of its folded
    batch norm's) zeroes the layer's negative outputs."""
    act = _act_name(getattr(node.source, "activation", None))
    if act in ("relu", "relu6"):
        return True
    if not _is_linear(node.source.activation):
        return False
    out = folded_output if folded_output is not None else node.output
    after = consumers.get(id(out), [])
    return len(after) == 1 and _relu_like(after[0].source) and bool(
        _output_nonneg(after[0].source))


def _factory(cls: type, *args: Any) -> Callable[[], Any]:
    return lambda: cls(*args)


def _gate_index(node: graph_lib.Node, producer: dict[int, graph_lib.Node]) -> int | None:
    """Which of a two-input Multiply's inputs is the gate: the broadcast one, else the one made
    by a sigmoid-like activation; ``None`` when it cannot be told."""
    xs = _flat(node.args)
    if len(xs) != 2:
        return None
    out = tuple(node.shape or ())
    full = [tuple(x.shape) == out for x in xs]
    if full.count(True) == 1:
        return full.index(False)
    gates = []
    for x in xs:
        p = producer.get(id(x))
        act = _act_name(getattr(p.source, "activation", None)) if p is not None else ""
        gates.append(act in ("sigmoid", "hard_sigmoid", "hard_silu", "softmax"))
    return gates.index(True) if gates.count(True) == 1 else None


def _boxes(bb: Any, first: list[graph_lib.Node]) -> dict[str, Box]:
    """``path → (low, high)`` of each first layer's input: pixel values 0 and 255 carried
    through the preprocessing and the pass-through layers before it (batch dimension 1)."""
    if not first:
        return {}
    h, w = bb.input_size
    probe = np.stack([np.zeros((h, w, 3), np.float32), np.full((h, w, 3), 255.0, np.float32)])
    pre = bb.preprocess(probe)
    inner = [n.first_input for n in first if n.first_input is not bb.graph.input]
    outs = keras.Model(bb.graph.input, inner)(pre, training=False) if inner else []
    outs = iter(outs if isinstance(outs, (list, tuple)) else [outs])
    boxes = {}
    for node in first:
        v = pre if node.first_input is bb.graph.input else next(outs)
        v = np.asarray(v, np.float32)
        boxes[node.path] = (np.minimum(v[:1], v[1:]), np.maximum(v[:1], v[1:]))
    return boxes
