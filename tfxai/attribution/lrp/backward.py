"""The replacement layers of the LRP model: each computes its layer's forward value and, under
``tf.custom_gradient``, passes relevance backwards instead of the gradient.

* :class:`_KernelLayer` — Conv/Depthwise/Dense, a following batch norm folded in [Montavon et
  al. 2019, §10.3], runs its rule (:mod:`tfxai.attribution.lrp.rules`) backwards;
* :class:`_Merge` — Add/Average/Subtract/average pooling: the z-rule;
* :class:`_Gate` — ``Multiply`` as input × constant gate;
* :class:`_Pass`, :class:`_Folded`, :class:`_Logits` — relevance passes unchanged (elementwise
  layers, a folded batch norm, the stripped softmax head).

Which layer gets which replacement is decided by :mod:`tfxai.attribution.lrp.plan`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfxai.attribution.lrp.kinds import _DEPTHWISE, _is_linear
from tfxai.attribution.lrp.rules import STABILIZER, Rule, _Linear, _Site, _stab
from tfxai.backend import keras

layers = keras.layers

@tf.custom_gradient
def _pass_through(x: tf.Tensor, y: tf.Tensor) -> Any:
    """``y`` (computed from ``x`` elementwise) whose backward passes relevance to ``x`` as is."""

    def grad(r: tf.Tensor) -> tuple[tf.Tensor, None]:
        return r, None

    return tf.identity(y), grad


class _LRPLayer(layers.Layer):
    """Base of the replacement layers: same forward value as ``inner``, LRP backward."""

    def __init__(self, inner: Any, **kwargs: Any) -> None:
        super().__init__(name=f"{inner.name}_lrp", **kwargs)
        self.inner = inner
        self.built = True  # no weights of its own (those of ``inner`` are shared)


class _KernelLayer(_LRPLayer):
    """A Conv/Depthwise/Dense layer (with a folded batch norm) running its rule backwards."""

    def __init__(self, inner: Any, rule: Rule, bn: Any = None, nonneg: bool = False,
                 box: tuple[np.ndarray, np.ndarray] | None = None,
                 activation: Callable | None = None, positive_outputs: bool = False) -> None:
        super().__init__(inner)
        self.rule = rule
        self.bn = bn
        self.nonneg = nonneg
        self.positive_outputs = positive_outputs
        self.box = box
        self.activation = activation
        self.lin = _Linear(inner)

    def parameters(self) -> tuple[tf.Tensor, tf.Tensor]:
        """(kernel, bias) of the linear part, the batch norm folded in."""
        layer = self.inner
        kernel = tf.convert_to_tensor(layer.kernel)
        units = kernel.shape[-1] * (kernel.shape[-2] if isinstance(layer, _DEPTHWISE) else 1)
        if getattr(layer, "bias", None) is not None:
            bias = tf.convert_to_tensor(layer.bias)
        else:
            bias = tf.zeros((units,), kernel.dtype)
        if self.bn is None:
            return kernel, bias
        bn = self.bn
        scale = tf.math.rsqrt(tf.convert_to_tensor(bn.moving_variance) + bn.epsilon)
        if bn.scale:
            scale = scale * tf.convert_to_tensor(bn.gamma)
        shift = -tf.convert_to_tensor(bn.moving_mean) * scale
        if bn.center:
            shift = shift + tf.convert_to_tensor(bn.beta)
        if isinstance(layer, _DEPTHWISE):  # output channel c·m + j ← input c, multiplier j
            kernel = kernel * tf.reshape(scale, kernel.shape[-2:])
        else:
            kernel = kernel * scale
        return kernel, bias * scale + shift

    def call(self, inputs: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        kernel, bias = self.parameters()
        rank = len(inputs.shape)
        bias = self.lin.bias(bias, rank)
        rule, lin, nonneg, positive = self.rule, self.lin, self.nonneg, self.positive_outputs
        box = self.box

        @tf.custom_gradient
        def op(x: tf.Tensor, k: tf.Tensor, b: tf.Tensor) -> Any:
            z = lin.apply(x, k) + b

            def grad(r: tf.Tensor) -> tuple[tf.Tensor, None, None]:
                site = _Site(lin, x, z, k, b, nonneg, positive)
                if box is not None:
                    site.low, site.high = tf.constant(box[0]), tf.constant(box[1])
                return rule.relevance(site, r), None, None

            return z, grad

        z = op(inputs, kernel, bias)
        if _is_linear(self.activation):
            return z
        return _pass_through(z, self.activation(z))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.inner.compute_output_shape(input_shape)


class _Identity(_LRPLayer):
    """A layer skipped: its output is its input, relevance passes unchanged."""

    def call(self, inputs: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        return tf.identity(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


class _Folded(_Identity):
    """A batch norm folded into the layer before it: its input is already normalised."""


class _Pass(_LRPLayer):
    """An elementwise layer (activation, rescaling, unfolded batch norm): relevance passes."""

    def call(self, inputs: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        extra = {"training": False} if isinstance(self.inner, layers.BatchNormalization) else {}
        return _pass_through(inputs, self.inner(inputs, **extra))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


class _Logits(_Identity):
    """The output softmax, skipped: relevance starts at the logits."""


class _Merge(_LRPLayer):
    """Add/Average/Subtract/average pooling: the z-rule ``R_k = x_k ∂y/∂x_k · R / stab(y)``."""

    def __init__(self, inner: Any, op_style: bool = False) -> None:
        super().__init__(inner)
        self.op_style = op_style  # a Keras operation called as op(a, b), not layer([a, b])

    def call(self, *args: Any, **kwargs: Any) -> tf.Tensor:
        inner, op_style = self.inner, self.op_style
        listed = not op_style and isinstance(args[0], (list, tuple))
        xs = list(args[0]) if listed else list(args)

        def run(ts: list[tf.Tensor]) -> tf.Tensor:
            if op_style:
                return inner(*ts)
            return inner(ts if listed else ts[0])

        @tf.custom_gradient
        def op(*ts: tf.Tensor) -> Any:
            y = run(list(ts))

            def grad(r: tf.Tensor) -> list[tf.Tensor]:
                s = r / _stab(y, STABILIZER)
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(ts)
                    yy = run(list(ts))
                gs = tape.gradient(yy, list(ts), output_gradients=s)
                return [t * g for t, g in zip(ts, gs, strict=True)]

            return y, grad

        return op(*xs)


class _Gate(_LRPLayer):
    """``Multiply([x, gate])``: the gate is a constant, ``x`` keeps all the relevance."""

    def __init__(self, inner: Any, gate: int, op_style: bool = False) -> None:
        super().__init__(inner)
        self.gate = gate
        self.op_style = op_style

    def call(self, *args: Any, **kwargs: Any) -> tf.Tensor:
        xs = list(args) if self.op_style else list(args[0])
        y = self.inner(*xs) if self.op_style else self.inner(xs)
        return _pass_through(xs[1 - self.gate], y)

