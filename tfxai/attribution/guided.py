"""Modified-backpropagation methods through a ``tf.custom_gradient`` model rewrite.

* :class:`GuidedBackprop` [Springenberg et al. 2015, "Striving for Simplicity: The All
  Convolutional Net"]: at every ReLU the backward signal is gated by both the forward input
  and its own sign, ``grad_in = relu(grad_out) · 1[x > 0]``.
* :class:`Deconvnet` [Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional
  Networks"]: at every ReLU the backward signal is rectified, ``grad_in = relu(grad_out)``,
  whatever the forward input. Max-pooling switches are kept: the backward pass through
  max-pooling is the usual gradient (it routes the signal to the forward argmax).

How the rewrite works (eager TF2, no graph-mode ``gradient_override_map``): the backbone's
model is rebuilt as one flat graph (:meth:`tfxai.models.Backbone.rewrite`), which keeps every
layer object (the weights are shared, nothing is copied) except the ReLU-like ones, which are
replaced by layers computing the same forward value with a custom gradient:

* separate ``Activation('relu'|'relu6')`` layers and ``ReLU`` layers (any ``max_value`` or
  ``threshold``, but only ``negative_slope == 0``);
* ReLUs fused in a layer (``Conv2D(..., activation="relu")``, ``Dense``, ``DepthwiseConv2D``...):
  the layer is wrapped so that its linear part runs first, then the custom-gradient ReLU;
* the layers of nested functional/sequential sub-models are rewritten too; a subclassed
  sub-model cannot be reached, and the rewrite refuses it with a message naming it.

Other activations (swish and sigmoid of EfficientNet, leaky ReLU, ELU, tanh...) are left alone:
their gradient is the ordinary one. On EfficientNetB0, which has no ReLU, guided backprop and
deconvnet therefore equal the plain gradient (saliency).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfxai.attribution.base import Attributer, register
from tfxai.backend import keras
from tfxai.graph import FusedActivation
from tfxai.primitives import target_score

__all__ = [
    "relu_kind",
    "relu_rewrite",
    "GuidedBackprop",
    "Deconvnet",
    "FusedActivation",
]

layers = keras.layers

_RELU_NAMES = ("relu", "relu6")


# --------------------------------------------------------------------------------------- rewrite


class ElementwiseOverride(layers.Layer):
    """A layer applying ``fn`` (an elementwise op with a custom gradient) to its input."""

    def __init__(self, fn: Callable[[tf.Tensor], tf.Tensor], name: str, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.fn = fn

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self.fn(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


def _act_name(fn: Any) -> str:
    return getattr(fn, "__name__", "") if fn is not None else ""


def relu_kind(layer: layers.Layer) -> str | None:
    """How ``layer`` holds a ReLU: ``"layer"`` (a separate activation layer), ``"fused"``
    (``activation=relu`` inside a Conv/Dense-like layer) or ``None``."""
    if isinstance(layer, layers.ReLU):
        slope = float(np.asarray(getattr(layer, "negative_slope", 0.0)))
        return "layer" if slope == 0.0 else None
    if isinstance(layer, layers.Activation):
        return "layer" if _act_name(layer.activation) in _RELU_NAMES else None
    if isinstance(layer, keras.Model) or not isinstance(layer, layers.Layer):
        return None
    if _act_name(getattr(layer, "activation", None)) in _RELU_NAMES:
        return "fused"
    return None


def relu_rewrite(backbone: Any, grad_fn: Callable[[tf.Tensor, tf.Tensor, Callable], tf.Tensor],
                 name: str) -> keras.Model:
    """The backbone's logit model with every ReLU-like nonlinearity ``f`` replaced by one with
    forward ``f(x)`` and gradient ``grad_fn(x, dy, f)`` (other layers shared, weights not
    copied; nested sub-models included, see :meth:`tfxai.models.Backbone.rewrite`)."""

    def custom(f: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[tf.Tensor], tf.Tensor]:
        @tf.custom_gradient
        def op(x: tf.Tensor) -> Any:
            def grad(dy: tf.Tensor) -> tf.Tensor:
                return grad_fn(x, dy, f)

            return f(x), grad

        return op

    def replace(layer: Any) -> Any:
        kind = relu_kind(layer)
        if kind == "layer":
            return ElementwiseOverride(custom(layer), name=f"{layer.name}_override")
        if kind == "fused":
            return FusedActivation(layer, custom(layer.activation))
        return None

    return backbone.rewrite(replace, name)


def is_plain_relu(f: Any) -> bool:
    """True for max(x, 0) itself: ``relu`` functions, ``Activation('relu')`` and ``ReLU()``
    without max value, threshold or slope."""
    if isinstance(f, layers.ReLU):
        return f.max_value is None and float(np.asarray(f.threshold)) == 0.0 and float(
            np.asarray(f.negative_slope)) == 0.0
    if isinstance(f, layers.Activation):
        f = f.activation
    return _act_name(f) == "relu"


def _guided_grad(x: tf.Tensor, dy: tf.Tensor, f: Callable) -> tf.Tensor:
    """relu(dy) · f'(x): for a ReLU, relu(dy)·1[x > 0] [Springenberg 2015]."""
    if is_plain_relu(f):
        return tf.nn.relu(dy) * tf.cast(x > 0, dy.dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = f(x)
    return tape.gradient(y, x, output_gradients=tf.nn.relu(dy))


def _deconv_grad(x: tf.Tensor, dy: tf.Tensor, f: Callable) -> tf.Tensor:
    """relu(dy), independent of the forward input [Zeiler & Fergus 2014]."""
    return tf.nn.relu(dy)


# --------------------------------------------------------------------------------------- methods


class _RewrittenGradient(Attributer):
    """Gradient of the target logit through the rewritten logit model."""

    map_defaults = {"reduce": "max_abs", "absolute": True, "scale": "max"}
    params_spec = {}
    _grad_fn: Callable[[tf.Tensor, tf.Tensor, Callable], tf.Tensor]

    def _setup(self) -> None:
        #: the rewritten logit model (built once, cached on the attributer)
        self.model = relu_rewrite(self.backbone, type(self)._grad_fn, self.name)
        self._fn = self.compile(self.core)

    def logits(self, x: tf.Tensor) -> tf.Tensor:
        return self.model(self.backbone.preprocess(x), training=False)

    def core(self, x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        """The traceable core (called inside a compiled function): guided-backprop gradients of
        the target logits w.r.t. the input. Guided Grad-CAM composes it in its own function."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = target_score(self.logits(x), t)
        return tape.gradient(score, x)

    def _attribute(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> tf.Tensor:
        return self._fn(x, targets)


@register
class GuidedBackprop(_RewrittenGradient):
    """Guided backpropagation [Springenberg et al. 2015].

    Raw attribution: the modified gradient of the target logit, (N, H, W, 3); at every ReLU the
    backward signal is ``relu(grad_out)·1[x > 0]``. Non-ReLU activations (swish, sigmoid...) keep
    their ordinary gradient, so on EfficientNet this is the plain gradient. Default map: max over
    channels of |·|.
    """

    name = "guided_backprop"
    summary = "gradient with ReLU backward gate relu(grad)·[x>0] [Springenberg 2015]"
    _grad_fn = staticmethod(_guided_grad)


@register
class Deconvnet(_RewrittenGradient):
    """Deconvnet [Zeiler & Fergus 2014], as a backward pass.

    Raw attribution: the backward signal at the input, (N, H, W, 3), where every ReLU passes
    ``relu(grad_out)`` back regardless of its forward input, and max-pooling keeps its switches
    (ordinary gradient). Non-ReLU activations keep their ordinary gradient.
    """

    name = "deconvnet"
    summary = "backward pass with ReLU on the backward signal; max-pool switches kept [Zeiler 2014]"
    _grad_fn = staticmethod(_deconv_grad)
