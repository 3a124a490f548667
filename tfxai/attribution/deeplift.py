"""DeepLIFT with the Rescale rule [Shrikumar, Greenside & Kundaje 2017, "Learning Important
Features Through Propagating Activation Differences"].

The attribution of input pixel i is ``(x_i − x'_i) · m_i`` where the multipliers ``m`` are
back-propagated with the chain rule, except that every nonlinearity's local derivative is
replaced by its *difference quotient* against a reference pass:

* elementwise nonlinearities ``y = f(z)`` (ReLU, ReLU6, swish, sigmoid, tanh, ELU, GELU... fused
  in a Conv/Dense layer or as separate layers): ``m = (f(z) − f(z')) / (z − z')``; where
  ``|z − z'| < 1e-6`` the ordinary derivative ``f'(z)`` is used instead (as shap does);
* max pooling (``MaxPooling1D/2D/3D``, ``GlobalMaxPooling*``): the output difference
  ``y − y'`` is routed to the argmax of the input when ``y > y'`` and to the argmax of the
  reference when ``y < y'`` (the rule of shap's ``DeepExplainer``), then divided by the input
  difference there;
* elementwise products of two tensors (``Multiply``: the squeeze-and-excitation gates of
  EfficientNet): the exact Shapley split ``Δ(ab) = ½(b + b')·Δa + ½(a + a')·Δb``;
* linear and affine layers (convolutions, dense, batch norm in inference mode, average pooling,
  ``Add``/``Concatenate``/``Subtract``/``Average`` merges, padding, reshapes, rescaling and
  normalisation, dropout in inference mode) keep their gradient, which is exact.

With these rules summation-to-delta holds: ``Σ_i attribution_i = F(x) − F(x')`` for the target
logit ``F``. The backbone's preprocessing is treated through its gradient, exact because every
registered ``preprocess_input`` is affine.

Implementation (TF2, eager-compatible, no graph-mode gradient override): the logit model is
rebuilt as one flat graph (:meth:`tfxai.models.Backbone.rewrite`: layers shared, weights not
copied, nested sub-models included) with each nonlinearity replaced by a layer running
the same forward computation under ``tf.custom_gradient``. The model is run once on the paired
batch ``[x_1..x_N; x'_1..x'_R]`` (R = 1 when all images share the reference, as for the black
default, else R = N), and each custom gradient reads its partner rows from the same batch to form
the difference quotients. One forward pass of N + R rows and one backward pass give the
attributions of the whole batch.

Unknown layers (``Lambda``, custom layers, a ``Softmax`` inside the network) keep their gradient
and a warning says that summation-to-delta may not hold.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from tfxai.attribution.base import Attributer, Param, register
from tfxai.attribution.guided import ElementwiseOverride, is_plain_relu
from tfxai.backend import keras
from tfxai.graph import FusedActivation
from tfxai.primitives import blur_tensor as gaussian_blur
from tfxai.primitives import target_score

__all__ = ["DeepLift", "deeplift_rewrite", "gaussian_blur", "DeepLiftWarning"]

layers = keras.layers

#: below this |Δz| the ordinary derivative replaces the difference quotient
EPS_ELEMENTWISE = 1e-6
#: below this |Δz| at a pooling argmax the multiplier is zero (shap's rule)
EPS_POOL = 1e-7


class DeepLiftWarning(UserWarning):
    """A layer the Rescale rewrite does not know: its gradient is used as the multiplier."""


_LINEAR_LAYERS: tuple[type, ...] = tuple(
    getattr(layers, n)
    for n in (
        "InputLayer", "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
        "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
        "SeparableConv2D", "Dense", "BatchNormalization", "LayerNormalization",
        "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D",
        "GlobalAveragePooling2D", "GlobalAveragePooling3D", "Add", "Subtract", "Average",
        "Concatenate", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D",
        "Cropping2D", "Cropping3D", "Flatten", "Reshape", "Permute", "RepeatVector", "Dropout",
        "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
        "GaussianNoise", "AlphaDropout", "Rescaling", "Normalization", "UpSampling1D",
        "UpSampling2D", "UpSampling3D", "Identity", "ActivityRegularization", "Masking",
    )
    if hasattr(layers, n)
)
_MAX_POOLS: tuple[type, ...] = tuple(
    getattr(layers, n)
    for n in ("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "GlobalMaxPooling1D",
              "GlobalMaxPooling2D", "GlobalMaxPooling3D")
    if hasattr(layers, n)
)
_ELEMENTWISE_LAYERS: tuple[type, ...] = tuple(
    getattr(layers, n)
    for n in ("Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "ThresholdedReLU")
    if hasattr(layers, n)
)


class _Pairing:
    """Where the reference rows are in the paired batch: the last ``n_ref`` rows."""

    def __init__(self, single_reference: bool) -> None:
        self.single = single_reference

    def split(self, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(input rows, reference rows broadcastable to the input rows)."""
        n = tf.shape(z)[0] - 1 if self.single else tf.shape(z)[0] // 2
        return z[:n], z[n:]

    @staticmethod
    def join(g_x: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
        """Gradient for the whole batch: ``g_x`` for the input rows, zero for the references."""
        n = tf.shape(g_x)[0]
        return tf.concat([g_x, tf.zeros_like(z[n:])], axis=0)


def _sigmoid_deriv(z: tf.Tensor) -> tf.Tensor:
    s = tf.sigmoid(z)
    return s * (1.0 - s)


def _swish_deriv(z: tf.Tensor) -> tf.Tensor:
    s = tf.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


#: closed-form derivatives of common activations (others are differentiated with a tape)
_DERIVATIVES: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "relu": lambda z: tf.cast(z > 0, z.dtype),
    "relu6": lambda z: tf.cast((z > 0) & (z < 6), z.dtype),
    "sigmoid": _sigmoid_deriv,
    "swish": _swish_deriv,
    "silu": _swish_deriv,
    "tanh": lambda z: 1.0 - tf.square(tf.tanh(z)),
}


def _derivative_of(f: Any) -> Callable[[tf.Tensor], tf.Tensor] | None:
    """The closed-form derivative of an activation function or layer, if known."""
    if is_plain_relu(f):
        return _DERIVATIVES["relu"]
    if isinstance(f, layers.ReLU):
        return None
    if isinstance(f, layers.Activation):
        f = f.activation
    return _DERIVATIVES.get(getattr(f, "__name__", ""))


#: the input rows' gradient of a paired op from (z_x, z_r, y_x, y_r, dy_x): the input and
#: reference rows of its input z and output y, and the upstream gradient of the input rows
_PairedGradient = Callable[[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


def _paired_op(
    f: Callable[[tf.Tensor], tf.Tensor], pairing: _Pairing, input_grad: _PairedGradient
) -> Callable:
    """``f`` on the paired batch under ``tf.custom_gradient``: the input rows get
    ``input_grad(z_x, z_r, y_x, y_r, dy_x)``, the reference rows a zero gradient."""

    @tf.custom_gradient
    def op(z: tf.Tensor) -> Any:
        y = f(z)

        def grad(dy: tf.Tensor) -> tf.Tensor:
            zx, zr = pairing.split(z)
            yx, yr = pairing.split(y)
            dyx, _ = pairing.split(dy)
            return _Pairing.join(input_grad(zx, zr, yx, yr, dyx), z)

        return y, grad

    return op


def _rescale_op(f: Callable[[tf.Tensor], tf.Tensor], pairing: _Pairing) -> Callable:
    """``f`` with the Rescale multiplier (f(z) − f(z'))/(z − z') as its gradient."""
    known = _derivative_of(f)

    def derivative(z: tf.Tensor) -> tf.Tensor:
        if known is not None:
            return known(z)
        with tf.GradientTape() as tape:
            tape.watch(z)
            fz = f(z)
        return tape.gradient(fz, z)

    def input_grad(zx: tf.Tensor, zr: tf.Tensor, yx: tf.Tensor, yr: tf.Tensor,
                   dyx: tf.Tensor) -> tf.Tensor:
        dz = zx - zr
        small = tf.abs(dz) < EPS_ELEMENTWISE
        quotient = (yx - yr) / tf.where(small, tf.ones_like(dz), dz)
        return dyx * tf.where(small, derivative(zx), quotient)

    return _paired_op(f, pairing, input_grad)


def _maxpool_op(pool: Callable[[tf.Tensor], tf.Tensor], pairing: _Pairing) -> Callable:
    """Max pooling whose multipliers route y − y' to the input's or the reference's argmax."""

    def input_grad(zx: tf.Tensor, zr: tf.Tensor, yx: tf.Tensor, yr: tf.Tensor,
                   dyx: tf.Tensor) -> tf.Tensor:
        zr = tf.broadcast_to(zr, tf.shape(zx))
        cross = tf.maximum(yx, yr)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([zx, zr])
            px, pr = pool(zx), pool(zr)
        at_x = tape.gradient(px, zx, output_gradients=dyx * (cross - yr))
        at_r = tape.gradient(pr, zr, output_gradients=dyx * (yx - cross))
        del tape
        dz = zx - zr
        small = tf.abs(dz) < EPS_POOL
        return tf.where(small, tf.zeros_like(dz), (at_x + at_r) / tf.where(small, 1.0, dz))

    return _paired_op(pool, pairing, input_grad)


def _product_op(pairing: _Pairing) -> Callable:
    """``a · b`` with multipliers ½(b + b') for a and ½(a + a') for b (exact for products)."""

    @tf.custom_gradient
    def op(a: tf.Tensor, b: tf.Tensor) -> Any:
        y = a * b

        def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            ax, ar = pairing.split(a)
            bx, br = pairing.split(b)
            dyx, _ = pairing.split(dy)
            ga = _unbroadcast(dyx * 0.5 * (bx + br), ax)
            gb = _unbroadcast(dyx * 0.5 * (ax + ar), bx)
            return _Pairing.join(ga, a), _Pairing.join(gb, b)

        return y, grad

    return op


def _unbroadcast(g: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Sum ``g`` over the axes where ``like`` was broadcast (size 1)."""
    axes = [i for i, d in enumerate(like.shape) if i > 0 and d == 1 and g.shape[i] != 1]
    return tf.reduce_sum(g, axis=axes, keepdims=True) if axes else g


class _PoolOverride(layers.Layer):
    def __init__(self, inner: layers.Layer, pairing: _Pairing) -> None:
        super().__init__(name=f"{inner.name}_deeplift")
        self.inner = inner
        self.op = _maxpool_op(inner, pairing)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return self.op(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.inner.compute_output_shape(input_shape)


class _MultiplyOverride(layers.Layer):
    def __init__(self, inner: layers.Layer, pairing: _Pairing, unknown: list[str]) -> None:
        super().__init__(name=f"{inner.name}_deeplift")
        self.inner = inner
        self.op = _product_op(pairing)
        self.unknown = unknown

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        if len(inputs) != 2:  # seen when the rewrite first calls the layer, symbolically
            self.unknown.append(f"{self.inner.name} (Multiply of more than two inputs)")
            return self.inner(inputs)
        a, b = inputs
        return self.op(a, b)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.inner.compute_output_shape(input_shape)


def _is_linear_activation(fn: Any) -> bool:
    return fn is None or getattr(fn, "__name__", "") == "linear"


def deeplift_rewrite(backbone: Any, single_reference: bool = True,
                     warn: bool = True) -> keras.Model:
    """The backbone's logit model (layers shared) with the Rescale-rule custom gradients.

    The rewritten model must be called on a paired batch: the inputs followed by their reference
    rows (one reference row when ``single_reference``, else one per input, in the same order).
    """
    pairing = _Pairing(single_reference)
    unknown: list[str] = []

    def replace(layer: Any) -> Any:
        if isinstance(layer, _MAX_POOLS):
            return _PoolOverride(layer, pairing)
        if isinstance(layer, layers.Multiply):
            return _MultiplyOverride(layer, pairing, unknown)
        if isinstance(layer, _ELEMENTWISE_LAYERS):
            if isinstance(layer, layers.Activation) and _is_linear_activation(layer.activation):
                return None
            if isinstance(layer, layers.Activation) and getattr(
                layer.activation, "__name__", ""
            ) == "softmax":
                unknown.append(f"{layer.name} (softmax)")
                return None
            return ElementwiseOverride(_rescale_op(layer, pairing), name=f"{layer.name}_deeplift")
        if isinstance(layer, _LINEAR_LAYERS):
            act = getattr(layer, "activation", None)
            if _is_linear_activation(act):
                return None
            if getattr(act, "__name__", "") == "softmax":
                unknown.append(f"{layer.name} (fused softmax)")
                return None
            return FusedActivation(layer, _rescale_op(act, pairing))
        unknown.append(f"{layer.name} ({type(layer).__name__})")
        return None

    new = backbone.rewrite(replace, "deeplift")
    if unknown and warn:
        warnings.warn(
            f"deeplift: layer(s) {', '.join(unknown[:8])}{' ...' if len(unknown) > 8 else ''} "
            "are not handled by the Rescale rule and use their gradient; summation-to-delta "
            "may not hold",
            DeepLiftWarning,
            stacklevel=2,
        )
    return new


# --------------------------------------------------------------------------------------- refs



# --------------------------------------------------------------------------------------- method


@register
class DeepLift(Attributer):
    """DeepLIFT, Rescale rule [Shrikumar et al. 2017], against a reference image.

    Raw attribution: ``(x − x')·m`` (N, H, W, 3) with the Rescale multipliers ``m`` (see the
    module docstring); ``Σ attribution = logit_c(x) − logit_c(x')``. References (defined in
    [0,1] units, RGB): ``black`` (0, default), ``gray`` (0.5), ``blur`` (the image blurred with a
    Gaussian of σ = 5 px). Equivalent to shap's ``DeepExplainer`` with the reference as its
    single background image.
    """

    name = "deeplift"
    summary = "Rescale rule: multipliers Δy/Δx against a reference pass; sums to Δlogit [Shrikumar 2017]"
    params_spec = {
        "reference": Param("black", str, "reference input: black | gray | blur (σ=5 px)",
                           choices=("black", "gray", "blur")),
    }
    map_defaults = {"reduce": "sum", "absolute": False, "scale": "max"}

    def _setup(self) -> None:
        self._single = self.params["reference"] != "blur"
        #: the rewritten logit model (built once, cached on the attributer)
        self.model = deeplift_rewrite(self.backbone, self._single)
        self._fn = self.compile(self._core)

    def reference(self, x: tf.Tensor) -> tf.Tensor:
        """The reference rows for ``x`` in 0..255: one row, or one per image for ``blur``."""
        ref = self.params["reference"]
        if ref == "blur":
            return gaussian_blur(x, 5.0)
        value = 0.0 if ref == "black" else 127.5
        return tf.fill((1, *x.shape[1:]), tf.constant(value, tf.float32))

    def _core(self, x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        ref = self.reference(x)
        n = tf.shape(x)[0]
        with tf.GradientTape() as tape:
            tape.watch(x)
            paired = tf.concat([x, ref], axis=0)
            logits = self.model(self.backbone.preprocess(paired), training=False)
            score = target_score(logits[:n], t)
        grads = tape.gradient(score, x)
        return grads * (x - ref)

    def _attribute(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> tf.Tensor:
        return self._fn(x, targets)
