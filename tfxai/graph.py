"""A Keras 3 model as one flat functional graph over its own layers.

tfxai addresses a classifier's layers by name (the Grad-CAM layer, the layers that model
randomisation re-initialises) and rewrites some of them (the ReLUs of guided backprop and
deconvnet, every nonlinearity of DeepLIFT). Users' models nest: the usual transfer-learning
model is ``Sequential([EfficientNetB0(include_top=False), GlobalAveragePooling2D(), Dense(5)])``,
whose conv layers live inside a sub-model. Keras 3 keeps a sub-model's layers in the sub-model's
own graph, so an inner layer's output cannot be combined with the outer model's input.

:func:`flatten` walks a functional or sequential model, nested functional/sequential sub-models
included, and calls every layer again on a new input: the result is one flat graph over the
*same* layer objects (weights shared, nothing copied). Each call is recorded as a :class:`Node`
with its qualified path (``"efficientnetb0/top_activation"``), the layer, its flat-graph inputs
and output, so callers can read shapes, find layers by path and build
``keras.Model(graph.input, any_node.output)``. A ``replace`` hook swaps a layer for another
callable during the walk: that is how the modified-gradient methods rewrite a model.

This is the only module that reads Keras' functional-graph internals
(``Functional._run_through_graph``, the engine of ``keras.models.clone_model``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tfxai.backend import keras

# Keras 3 does not export these two classes; they are what ``keras.Model(inputs, outputs)`` and
# ``keras.Sequential`` build.
Functional = keras.src.models.functional.Functional
Sequential = keras.Sequential

__all__ = [
    "GraphError",
    "Node",
    "FlatGraph",
    "flatten",
    "is_graph_model",
    "iter_layers",
    "FusedActivation",
    "Alias",
    "InferenceBatchNorm",
    "fused_batchnorm",
]

Replace = Callable[[Any], "Callable[..., Any] | None"]


class GraphError(ValueError):
    """A model that cannot be walked as a graph (subclassed, several inputs, unbuilt...)."""


def is_graph_model(layer: Any) -> bool:
    """True for functional and sequential Keras models (their layers can be walked)."""
    return isinstance(layer, (Functional, Sequential))


def is_subclassed_model(layer: Any) -> bool:
    """True for a ``keras.Model`` subclass with its own ``call``: its layers cannot be walked."""
    return isinstance(layer, keras.Model) and not is_graph_model(layer)


def iter_layers(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, layer)`` for every leaf layer of ``model``, nested sub-models walked, in the
    order Keras lists them (``model.layers``; input layers skipped)."""
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if is_graph_model(layer):
            yield from iter_layers(layer, f"{path}/")
        elif not isinstance(layer, keras.layers.InputLayer):
            yield path, layer


# --------------------------------------------------------------------------------------- layers

# Swapping the activation of a shared layer during its call is guarded so that two threads
# tracing through the same layer cannot interleave.
_SWAP_LOCK = threading.RLock()


class FusedActivation(keras.layers.Layer):
    """Run ``inner`` (a layer with a fused ``activation``) linearly, then ``activation``.

    The inner layer keeps its weights (shared, not copied): during the call its ``activation``
    attribute is set to linear, the layer is called, and the attribute is restored.
    """

    def __init__(self, inner: Any, activation: Callable[[Any], Any], name: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(name=name or f"{inner.name}_refused", dtype=inner.dtype_policy, **kwargs)
        self.inner = inner
        self.new_activation = activation

    def call(self, inputs: Any) -> Any:
        with _SWAP_LOCK:
            saved = self.inner.activation
            self.inner.activation = keras.activations.linear
            try:
                z = self.inner(inputs)
            finally:
                self.inner.activation = saved
        return self.new_activation(z)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.inner.compute_output_shape(input_shape)


class Alias(keras.layers.Layer):
    """``op`` under another name: a flat graph needs unique layer names, and two nested
    sub-models may both hold a layer called ``dense``. Weights stay shared."""

    def __init__(self, op: Any, name: str, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.op = op

    def call(self, *args: Any, **kwargs: Any) -> Any:
        return self.op(*args, **kwargs)


class InferenceBatchNorm(keras.layers.Layer):
    """``inner`` (a ``BatchNormalization`` layer) in inference mode, as one fused kernel.

    Keras 3 computes inference batch normalisation with ``tf.nn.batch_normalization`` (four
    element-wise ops); Keras 2 (``tf.keras`` ≤ 2.15) used the fused kernel
    (``FusedBatchNormV3``, ``is_training=False``) for 4-D channels-last inputs. The two agree to
    float32 round-off (~1e-7 relative), but a gradient through a ReLU6 network amplifies that
    round-off (see ``benchmarks/gradient_roundoff.py``). With the fused kernel, logits and input
    gradients of EfficientNet-Lite0 are bit-identical to the Keras 2 stack's, so scores computed
    before and after the Keras 3 migration can be compared exactly. Same weights (shared, read
    at call time); always the moving statistics.
    """

    def __init__(self, inner: Any, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name or f"{inner.name}_fused", dtype=inner.dtype_policy, **kwargs)
        self.inner = inner

    def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        import tensorflow as tf

        bn = self.inner
        if len(inputs.shape) != 4:  # the fused kernel is 4-D only
            return bn(inputs, training=False)
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.convert_to_tensor(bn.gamma), tf.convert_to_tensor(bn.beta),
            mean=tf.convert_to_tensor(bn.moving_mean),
            variance=tf.convert_to_tensor(bn.moving_variance), epsilon=bn.epsilon,
            is_training=False)
        return y

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


def fused_batchnorm(op: Any) -> InferenceBatchNorm | None:
    """The :class:`InferenceBatchNorm` of ``op`` when the fused kernel computes what ``op`` does
    in inference (a float32 channels-last ``BatchNormalization`` with both scale and centre; a
    call on an input that is not 4-D runs ``op`` itself); ``None`` otherwise."""
    if type(op) is not keras.layers.BatchNormalization:
        return None
    if (op.axis not in (-1, 3) or not (op.center and op.scale)
            or op.dtype_policy.compute_dtype != "float32"):
        return None
    return InferenceBatchNorm(op)


# --------------------------------------------------------------------------------------- graph


@dataclass
class Node:
    """One layer call of the flat graph.

    Attributes:
        path: ``/``-joined names of the enclosing sub-models and of the layer
            (``"efficientnetb0/top_activation"``; a top-level layer's path is its name).
        source: the layer (or Keras operation) of the original model.
        layer: what ran in the flat graph: ``source``, its replacement, or an :class:`Alias`.
        args, kwargs: the call's arguments, flat-graph tensors in place of the original ones.
        output: the call's output (a ``KerasTensor``, or a structure of them).
    """

    path: str
    source: Any
    layer: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def shape(self) -> tuple[int | None, ...] | None:
        """The output shape (batch dimension first), ``None`` for several outputs."""
        out = self.output
        return tuple(out.shape) if hasattr(out, "shape") else None

    @property
    def first_input(self) -> Any:
        return self.args[0] if self.args else next(iter(self.kwargs.values()), None)


@dataclass
class FlatGraph:
    """A model rebuilt as one flat functional graph (see the module docstring)."""

    name: str
    input: Any
    output: Any
    nodes: list[Node]
    #: paths of subclassed sub-models, called as a whole (their layers cannot be walked)
    opaque: list[str] = field(default_factory=list)

    def model(self, outputs: Any = None, name: str | None = None) -> keras.Model:
        """``keras.Model`` from the flat input to ``outputs`` (default: the graph's output)."""
        return keras.Model(self.input, self.output if outputs is None else outputs,
                           name=name or self.name)

    def find(self, name: str) -> Node:
        """The node of a layer, by path (``"efficientnetb0/top_activation"``) or by bare name
        when that is unique. A layer called several times gives its last call. ``KeyError``
        (with the message to show) when nothing or several layers match."""
        by_path = [n for n in self.nodes if n.path == name]
        if by_path:
            return by_path[-1]
        by_name = [n for n in self.nodes if n.name == name or n.path.endswith(f"/{name}")]
        paths = sorted({n.path for n in by_name})
        if len(paths) == 1:
            return by_name[-1]
        if paths:
            raise KeyError(f"layer name {name!r} is ambiguous: {', '.join(paths)}; give the path")
        raise KeyError(f"layer {name!r} not found")

    def producer(self, tensor: Any) -> Node | None:
        """The node whose output is ``tensor``."""
        for node in reversed(self.nodes):
            if node.output is tensor:
                return node
        return None


class _Walker:
    def __init__(self, replace: Replace | None) -> None:
        self.replace = replace
        self.nodes: list[Node] = []
        self.opaque: list[str] = []
        self._names: dict[str, int] = {}

    def run(self, model: Any, x: Any, prefix: str) -> Any:
        if isinstance(model, Sequential):
            for layer in model.layers:
                x = self.call(layer, prefix, (x,), {})
            return x
        if isinstance(model, Functional):
            if len(model.inputs) != 1:
                raise GraphError(f"model {model.name!r} has {len(model.inputs)} inputs; "
                                 "tfxai explains single-input image classifiers")

            def operation_fn(op: Any) -> Callable[..., Any]:
                return lambda *args, **kwargs: self.call(op, prefix, args, kwargs)

            out = model._run_through_graph([x], operation_fn=operation_fn)
            if isinstance(out, (list, tuple)) and len(out) == 1:
                out = out[0]
            return out
        raise GraphError(f"model {model.name!r} ({type(model).__name__}) is not a functional or "
                         "Sequential model")

    def call(self, op: Any, prefix: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        path = f"{prefix}{op.name}"
        if is_graph_model(op):
            if len(args) != 1:
                raise GraphError(f"sub-model {path!r} is called with {len(args)} inputs")
            return self.run(op, args[0], f"{path}/")
        if is_subclassed_model(op):
            self.opaque.append(path)
        new = self.replace(op) if self.replace is not None else None
        run = op if new is None else new
        name = getattr(run, "name", None)
        if name is not None and self._names.setdefault(name, id(run)) != id(run):
            run = Alias(run, name=path.replace("/", "__"))
        out = run(*args, **kwargs)
        self.nodes.append(Node(path, op, run, tuple(args), dict(kwargs), out))
        return out


def model_input_shape(model: Any) -> tuple[int | None, ...]:
    """The model's input shape without the batch dimension; ``GraphError`` when unknown."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise GraphError(f"model {model.name!r} is not built: it has no input shape yet; "
                         "call it once on an input, or build it with model.build((None, H, W, C))")
    if len(inputs) != 1:
        raise GraphError(f"model {model.name!r} has {len(inputs)} inputs; tfxai explains "
                         "single-input image classifiers")
    return tuple(inputs[0].shape[1:])


def _new_input(model: Any, input_shape: tuple[int | None, ...] | None) -> Any:
    shape = tuple(input_shape) if input_shape is not None else model_input_shape(model)
    try:
        dtype = model.inputs[0].dtype
    except (AttributeError, ValueError, IndexError, TypeError):
        dtype = "float32"
    return keras.Input(shape=shape, dtype=dtype, name=f"{model.name}_input")


def flatten(model: Any, input_shape: tuple[int | None, ...] | None = None,
            replace: Replace | None = None, name: str | None = None,
            inputs: Any = None) -> FlatGraph:
    """Rebuild ``model`` as one flat graph over its own layers (see the module docstring).

    Args:
        model: a functional or Sequential ``keras.Model`` (subclassed sub-models inside it are
            called as a whole and listed in ``FlatGraph.opaque``).
        input_shape: the input shape without the batch dimension (default: the model's; give it
            when the model accepts any image size).
        replace: called with every layer (and Keras operation) of the walk; a non-``None``
            return value is called in the layer's place with the same arguments.
        name: the graph's name (default: the model's).
        inputs: a ``KerasTensor`` to call the layers on (default: a new ``keras.Input``), so the
            layers can be attached to another graph.
    """
    if not is_graph_model(model):
        raise GraphError(f"model {model.name!r} is a subclassed Keras model: its layers cannot be "
                         "walked; use a functional or Sequential model")
    inp = inputs if inputs is not None else _new_input(model, input_shape)
    walker = _Walker(replace)
    out = walker.run(model, inp, "")
    return FlatGraph(name or model.name, inp, out, walker.nodes, walker.opaque)
