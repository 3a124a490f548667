"""The :class:`Backbone` wrapper and the graph surgery it rests on.

A :class:`Backbone` wraps a Keras image classifier so that every attribution method and metric sees
the same contract:

* images enter as RGB float32 in 0..255 at ``input_size`` (``(H, W)``);
* :meth:`Backbone.preprocess` applies the model's own ``preprocess_input`` as differentiable TF ops,
  so methods never see caffe/torch/tf-mode scaling;
* :meth:`Backbone.logits` gives pre-softmax scores (the softmax is stripped from the graph, never
  inverted numerically, :func:`logits_graph`), :meth:`Backbone.predict` gives probabilities.

The model is flattened over its own layers by :mod:`tfxai.graph`, nested sub-models included;
:func:`find_last_conv_layer` picks the default Grad-CAM layer of a custom model. Backbones are made
by :func:`tfxai.models.load_model`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from tfxai import graph
from tfxai.backend import keras
from tfxai.model_errors import ModelLoadError
from tfxai.primitives import softmax, target_score

__all__ = ["Backbone", "logits_graph", "find_last_conv_layer", "weighted_layers"]


def _is_softmax(act: Any) -> bool:
    """True for ``"softmax"``, ``keras.activations.softmax`` and ``tf.nn.softmax``."""
    return act is not None and getattr(act, "__name__", "") in ("softmax", "softmax_v2")


def _softmax_kind(op: Any) -> str | None:
    """How ``op`` applies the output softmax: ``"layer"`` (a ``Softmax`` layer, an
    ``Activation('softmax')`` layer or a ``keras.ops.softmax`` call), ``"fused"``
    (``Dense(..., activation="softmax")`` and the like) or ``None``."""
    if isinstance(op, keras.layers.Softmax):
        return "layer"
    if isinstance(op, keras.layers.Activation) and _is_softmax(op.activation):
        return "layer"
    if not isinstance(op, keras.layers.Layer) and type(op).__name__ == "Softmax":
        return "layer"  # keras.ops.softmax(x) in a functional model
    if _is_softmax(getattr(op, "activation", None)):
        return "fused"
    return None


def logits_graph(
    model: keras.Model, input_shape: Sequence[int | None], output: str = "probabilities",
    replace: graph.Replace | None = None, fused_batchnorm: bool = True,
) -> tuple[graph.FlatGraph, Any]:
    """``model`` flattened (:func:`tfxai.graph.flatten`) and its pre-softmax output tensor.

    ``fused_batchnorm``: run inference batch normalisation as one fused kernel, as Keras 2 did
    (:class:`tfxai.graph.InferenceBatchNorm`; numbers match the Keras 2 stack's bit for bit). A
    layer that ``replace`` rewrites keeps the rewrite. ``False`` leaves Keras 3's own layers.

    * ``output="logits"``: the model's own output.
    * ``output="probabilities"``: the final softmax is skipped, never inverted numerically: a
      ``Softmax``/``Activation('softmax')`` layer or ``keras.ops.softmax`` call gives its input;
      a layer with a fused ``activation="softmax"`` is called again with a linear activation
      (same layer, same weights: :class:`tfxai.graph.FusedActivation`).
    """
    if output not in ("probabilities", "logits"):
        raise ValueError(f"output must be 'probabilities' or 'logits', got {output!r}")
    if not graph.is_graph_model(model):
        raise ModelLoadError(
            f"model {model.name!r} is a subclassed Keras model ({type(model).__name__}): tfxai "
            "needs a functional or Sequential model to reach its layers; rebuild it with the "
            "functional API (keras.Model(inputs, outputs)) or keras.Sequential"
        )
    if fused_batchnorm:
        inner_replace = replace

        def replace(op: Any) -> Any:  # the caller's rewrite first, then the fused kernel
            new = inner_replace(op) if inner_replace is not None else None
            return new if new is not None else graph.fused_batchnorm(op)

    try:
        g = graph.flatten(model, input_shape=tuple(input_shape), replace=replace)
    except graph.GraphError as exc:
        raise ModelLoadError(str(exc)) from None
    if output == "logits":
        return g, g.output
    last = g.producer(g.output)
    kind = _softmax_kind(last.source) if last is not None else None
    if kind == "layer":
        return g, last.first_input
    if kind == "fused":
        linear = graph.FusedActivation(last.source, keras.activations.linear,
                                       name=f"{last.source.name}_logits")
        return g, linear(*last.args, **last.kwargs)
    name = last.path if last is not None else "?"
    raise ModelLoadError(
        f"model {model.name!r}: output='probabilities' but the last layer {name!r} is not a "
        "softmax; pass output='logits' if the model already outputs logits"
    )


_POOLING = (
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.InputLayer,
)


_KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")


def _has_kernel(layer: Any) -> bool:
    return any(getattr(layer, k, None) is not None for k in _KERNELS) and bool(layer.weights)


def weighted_layers(model: keras.Model) -> list[str]:
    """Paths of the layers that carry a kernel (Dense, Conv*, DepthwiseConv, SeparableConv), in
    the order Keras lists them, nested sub-models included (``"efficientnetb0/top_conv"``)."""
    return [path for path, layer in graph.iter_layers(model) if _has_kernel(layer)]


def _spatial(node: graph.Node) -> bool:
    """A node with a 4-D (N, H, W, C) output, H > 1, that is not a pooling layer."""
    shape = node.shape
    return (shape is not None and len(shape) == 4 and (shape[1] or 2) > 1
            and not isinstance(node.source, _POOLING))


def _is_convolution(layer: Any) -> bool:
    """A layer with a convolution kernel (Conv*, DepthwiseConv*, SeparableConv*, transposed)."""
    kernel = getattr(layer, "kernel", None) if isinstance(layer, keras.layers.Layer) else None
    if kernel is None:
        kernel = getattr(layer, "depthwise_kernel", None)
    return kernel is not None and len(kernel.shape) >= 3


def find_last_conv_layer(g: graph.FlatGraph) -> str | None:
    """Path of the last layer with a 4-D (N, H, W, C) output (H > 1) that is not a pooling layer
    and comes after the first convolution, nested sub-models included
    (``"efficientnetb0/top_activation"``); ``None`` for a model without a convolution (an MLP on
    images: its input rescaling is 4-D, but no class activation map is defined on it).

    For the Keras applications this is the last convolution block's activation, the usual
    Grad-CAM layer.
    """
    first = next((i for i, n in enumerate(g.nodes) if _is_convolution(n.source)), None)
    if first is None:
        return None
    for node in reversed(g.nodes[first:]):
        if _spatial(node):
            return node.path
    return None


@dataclass
class Backbone:
    """A classifier with its preprocessing, input size, logits and last conv layer.

    Attributes:
        name: registry name or the custom model's name.
        weights: ``"imagenet"``, ``"none"``, a weights path, or ``"custom"``.
        input_size: ``(H, W)`` expected by the model.
        last_conv_layer: default layer for the Grad-CAM family: a layer name, or a path into a
            nested sub-model (``"efficientnetb0/top_activation"``); ``None`` for a model without
            a 4-D layer (only the CAM family needs one).
        keras_model: the wrapped model as loaded (its output may be probabilities).
        graph: ``keras_model`` flattened over its own layers (:mod:`tfxai.graph`).
        logit_model: preprocessed input → logits, a flat functional model sharing
            ``keras_model``'s layers.
    """

    name: str
    keras_model: keras.Model
    preprocess_fn: Callable[[Any], tf.Tensor]
    input_size: tuple[int, int]
    last_conv_layer: str | None
    weights: str = "custom"
    output: str = "probabilities"
    preprocess_mode: str = ""
    graph: graph.FlatGraph = field(init=False)
    logit_model: keras.Model = field(init=False)
    _layer_models: dict[str, keras.Model] = field(init=False, default_factory=dict)
    _logits_fn: Any = field(init=False, default=None)
    _target_logits_fn: Any = field(init=False, default=None)

    def __repr__(self) -> str:
        # short: TensorFlow's retracing warning prints the bound method's owner
        return (f"Backbone(name={self.name!r}, weights={self.weights!r}, "
                f"input_size={tuple(self.input_size)}, last_conv_layer={self.last_conv_layer!r})")

    def __post_init__(self) -> None:
        self.graph, logits = logits_graph(self.keras_model, self.input_shape, self.output)
        self.logit_model = self.graph.model(logits, name=f"{self.keras_model.name}_logits")
        if self.last_conv_layer is None:
            self.last_conv_layer = find_last_conv_layer(self.graph)
        else:
            self.last_conv_layer = self.find_layer(self.last_conv_layer).path

    def find_layer(self, name: str) -> graph.Node:
        """The node of layer ``name`` (a name, or a path into nested sub-models)."""
        try:
            return self.graph.find(name)
        except KeyError as exc:
            raise ModelLoadError(
                f"model {self.name!r}: {exc.args[0]}; layers with 4-D outputs: "
                f"{', '.join(self.conv_layer_names()[-8:]) or 'none'}"
            ) from None

    # ------------------------------------------------------------------ weights (randomisation)
    def weighted_layers(self) -> list[str]:
        """Paths of the model's layers that carry a kernel (:func:`weighted_layers`)."""
        return weighted_layers(self.keras_model)

    def layer_at(self, path: str) -> keras.layers.Layer:
        """The Keras layer at ``path`` (as :meth:`weighted_layers` names it)."""
        found = dict(graph.iter_layers(self.keras_model))
        if path not in found:
            raise ModelLoadError(f"model {self.name!r} has no layer {path!r}")
        return found[path]

    @contextmanager
    def weights_replaced(self, weights: Mapping[str, list[np.ndarray]]) -> Iterator[None]:
        """The layers' weights replaced by ``weights`` (path → arrays) inside the block and
        restored after it, also on error. No copy of the model: compiled methods read the new
        weights (model randomisation [Adebayo et al. 2018])."""
        layers = {path: self.layer_at(path) for path in weights}
        saved = {path: layer.get_weights() for path, layer in layers.items()}
        try:
            for path, layer in layers.items():
                layer.set_weights(weights[path])
            yield
        finally:
            for path, layer in layers.items():
                layer.set_weights(saved[path])

    def rewrite(self, replace: graph.Replace, name: str) -> keras.Model:
        """A logit model (preprocessed input → logits) in which every layer for which
        ``replace(layer)`` returns a callable runs that callable instead; the other layers are
        shared with :attr:`keras_model`."""
        head = self.graph.producer(self.graph.output) if self.output == "probabilities" else None
        final = head.source if head is not None else None

        def guarded(layer: Any) -> Any:  # the stripped softmax layer is not part of the logits
            return None if layer is final else replace(layer)

        g, logits = logits_graph(self.keras_model, self.input_shape, self.output, guarded)
        if g.opaque:
            raise ModelLoadError(
                f"model {self.name!r}: {name} rewrites the model's layers, but "
                f"{', '.join(g.opaque)} is a subclassed Keras model whose layers cannot be reached; "
                "rebuild it with the functional API, or use a plain-gradient method"
            )
        return g.model(logits, name=f"{self.keras_model.name}_{name}")

    # ------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        return int(self.logit_model.outputs[0].shape[-1])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.input_size, 3)

    # ------------------------------------------------------------------ forward passes
    def preprocess(self, images: Any) -> tf.Tensor:
        """RGB 0..255 → the model's input scaling (differentiable TF ops)."""
        return self.preprocess_fn(tf.convert_to_tensor(images, dtype=tf.float32))

    def logits(self, images: Any) -> tf.Tensor:
        """Pre-softmax scores, (N, classes), for RGB 0..255 images (differentiable)."""
        return self.logit_model(self.preprocess(images), training=False)

    def target_logits(self, images: Any, targets: Any) -> tf.Tensor:
        """Logit of each image's target class, (N,)."""
        logits = self.logits(images)
        t = tf.cast(tf.reshape(targets, (-1,)), tf.int32)
        return target_score(logits, t)

    def compiled_target_logits(self) -> Any:
        """``(images, targets) → target logits`` compiled once per backbone (fixed signature, a
        free batch dimension): the forward pass of every perturbation metric."""
        if self._target_logits_fn is None:
            spec = [tf.TensorSpec((None, *self.input_shape), tf.float32),
                    tf.TensorSpec((None,), tf.int32)]
            self._target_logits_fn = tf.function(self.target_logits, input_signature=spec,
                                                 reduce_retracing=True, autograph=False)
        return self._target_logits_fn

    def _compiled_logits(self) -> Any:
        if self._logits_fn is None:
            spec = tf.TensorSpec((None, *self.input_shape), tf.float32)
            # plain TF ops: no autograph conversion of this class's methods
            self._logits_fn = tf.function(self.logits, input_signature=[spec],
                                          reduce_retracing=True, autograph=False)
        return self._logits_fn

    def predict_logits(self, images: Any, batch_size: int = 32) -> np.ndarray:
        """Logits as a numpy array, computed in batches of ``batch_size``."""
        x = np.asarray(images, dtype=np.float32)
        self._check_images(x)
        fn = self._compiled_logits()
        out = [fn(tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        if not out:
            return np.zeros((0, self.num_classes), np.float32)
        return np.concatenate(out).astype(np.float32)

    def predict(self, images: Any, batch_size: int = 32) -> np.ndarray:
        """Class probabilities, (N, classes): the softmax of :meth:`logits`."""
        return softmax(self.predict_logits(images, batch_size)).astype(np.float32)

    def layer_model(self, layer: str | None = None) -> keras.Model:
        """A model mapping the *preprocessed* input to ``[activations of layer, logits]``.

        ``layer`` is a name or a path into nested sub-models (default: the last conv layer).
        """
        name = layer or self.last_conv_layer
        if name is None:
            raise ModelLoadError(
                f"model {self.name!r} has no layer with a 4-D (N, H, W, C) output, so there is no "
                "default layer for class activation maps; name one with layer=..."
            )
        if name not in self._layer_models:
            node = self.find_layer(name)
            self._layer_models[name] = keras.Model(
                self.graph.input, [node.output, self.logit_model.outputs[0]]
            )
        return self._layer_models[name]

    def conv_layer_names(self) -> list[str]:
        """Paths of the layers with 4-D outputs, in graph order."""
        return [n.path for n in self.graph.nodes if n.shape is not None and len(n.shape) == 4]

    def channel_map(self) -> np.ndarray:
        """For each RGB input channel, the preprocessed channel it becomes (``[2, 1, 0]`` for
        caffe's RGB → BGR).

        The preprocessing is probed with constant images: its 3×3 channel matrix must have one
        nonzero entry per row and column (a per-channel affine map, possibly reordered), else a
        ``ValueError`` says why. Relevance of a preprocessed value is then the relevance of the
        input value it came from: ``relevance[..., bb.channel_map()]``.
        """
        h, w = self.input_size
        probe = np.zeros((4, h, w, 3), np.float32)
        for c in range(3):
            probe[c + 1, ..., c] = 100.0
        out = np.asarray(self.preprocess(probe))
        if out.shape != probe.shape:
            raise ValueError(f"the preprocessing of {self.name!r} changes the image shape")
        diff = out[1:] - out[:1]
        mat = diff.mean(axis=(1, 2))  # (input channel, preprocessed channel)
        if not np.allclose(diff, mat[:, None, None, :], atol=1e-3 * (np.abs(mat).max() + 1)):
            raise ValueError(f"the preprocessing of {self.name!r} is not pixel-wise")
        nz = np.abs(mat) > 1e-6 * np.abs(mat).max()
        if not (nz.sum(axis=0) == 1).all() or not (nz.sum(axis=1) == 1).all():
            raise ValueError(
                f"the preprocessing of {self.name!r} mixes colour channels; relevance cannot be "
                "mapped back to RGB input channels")
        return nz.argmax(axis=1)

    def _check_images(self, x: np.ndarray) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{self.name}: expected images of shape (N, {self.input_size[0]}, "
                f"{self.input_size[1]}, 3) in 0..255, got {tuple(x.shape)}"
            )

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "weights": self.weights,
            "input_size": list(self.input_size),
            "last_conv_layer": self.last_conv_layer,
            "preprocess": self.preprocess_mode or getattr(self.preprocess_fn, "__name__", ""),
            "num_classes": self.num_classes,
        }
