"""Layer-wise relevance propagation (LRP), native in TensorFlow on Keras 3 models.

LRP [Bach et al. 2015, "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
Layer-Wise Relevance Propagation"; Montavon et al. 2019, "Layer-Wise Relevance Propagation: An
Overview"] redistributes the target logit backwards, layer by layer, onto the input. Each layer
with weights passes the relevance ``R_j`` of its outputs to its inputs with a *rule*; a
*composite* says which rule each layer gets.

Rules (``x`` the layer input, ``w`` its weights, ``z_j = Σ_i x_i w_ij + b_j`` its pre-activation,
``stab(z) = z + s·sign(z)`` with sign(0) = +1 and ``s`` = ε or :data:`STABILIZER`):

* :class:`Epsilon` — ``R_i = x_i Σ_j w_ij R_j / stab_ε(z_j)`` [Bach 2015]. Tiny ε: LRP-0.
* :class:`AlphaBeta` — positive and negative contributions ``(x_i w_ij)^±`` normalised apart,
  ``R_i = Σ_j (α (x_i w_ij)^+ / z_j^+ − β (x_i w_ij)^- / z_j^-) R_j``, α − β = 1 [Bach 2015].
  ``bias`` says which bias the denominators hold: ``"none"``, ``"split"`` (b⁺ in z⁺, b⁻ in z⁻,
  as zennit) or ``"both"`` (the whole b in both: innvestigate 2.1.2's ``bias=True``).
* :func:`z_plus` — α = 1, β = 0, no bias [Montavon et al. 2017, "Explaining Nonlinear
  Classification Decisions with Deep Taylor Decomposition"].
* :class:`Gamma` — weights ``w + γ w⁺`` for positive outputs and ``w + γ w⁻`` for negative
  ones [Montavon 2019; the sign-generalised form of Andéol et al. 2021, as zennit's ``Gamma``];
  for non-negative inputs and positive outputs it is Montavon's LRP-γ.
* :class:`Flat` — ``R_i = Σ_j R_j / n_j`` over the ``n_j`` inputs of unit j [Lapuschkin et al.
  2019, "Unmasking Clever Hans predictors"].
* :class:`WSquare` — ``R_i = Σ_j w_ij² / Σ_i w_ij² R_j`` [Montavon 2017].
* :class:`ZBox` — z^B for the first layer on pixel input:
  ``R_i = Σ_j (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) / Σ_i (...) R_j`` with the box ``[l, h]`` = the
  backbone's preprocessing of pixel values 0 and 255, carried through the pass-through layers in
  front of the first layer [Montavon 2017].

Layers:

* ``Conv1D/2D/3D``, ``DepthwiseConv2D``, ``Dense``: the composite's rule. Their fused
  activation passes relevance through unchanged (identity).
* ``BatchNormalization`` right after such a layer (linear activation, used only by the batch
  norm) is *folded* into it: the rule sees ``w' = w·γ/σ``, ``b' = (b − μ)·γ/σ + β``
  [Montavon 2019, §10.3]. Any other batch norm (DenseNet's pre-activation ones) is a per-channel
  affine map and passes relevance through, as zennit's ``Pass`` for unmerged batch norm.
* ``AveragePooling``, ``GlobalAveragePooling``, ``Add``, ``Average``, ``Subtract``: linear maps
  without weights, the z-rule ``R_k = x_k ∂y/∂x_k · R / stab(y)`` (zennit's ``Norm``).
* ``MaxPooling``, ``GlobalMaxPooling``: winner-take-all (the gradient routes R to the argmax).
* ``Concatenate``, ``ZeroPadding``, ``Cropping``, ``Flatten``, ``Reshape``, ``Permute``,
  ``Dropout`` (inference), ``UpSampling``, ``Identity``: relevance is routed by the gradient.
* ``Multiply`` (squeeze-and-excitation): the gate is a constant, so the gated input keeps all
  the relevance and the gate branch gets none.
* Activations (any elementwise one), ``Rescaling``, ``Normalization``: pass-through.
* The output softmax is stripped: relevance starts at the target's **logit**
  (``R = logit_t`` at the target, 0 elsewhere).

Anything else (``Lambda``, ``LayerNormalization``, ``SeparableConv2D``, a softmax inside the
network, a subclassed sub-model...) is refused when the method is built, with an
:class:`LRPError` naming the layer's path and class. Nested functional/sequential sub-models are
walked (:mod:`tfxai.graph`).

Implementation: the backbone's model is rebuilt as one flat graph over its own layers (weights
shared), with every layer above replaced by one computing the same forward value under
``tf.custom_gradient``, whose backward maps output relevance to input relevance. The relevance
of the preprocessed input is then one ``tape.gradient(logit_t, x, output_gradients=logit_t)``:
one forward and one modified backward pass per batch, compiled once. Rules that need modified
weights (z⁺, αβ, γ, w², z^B) run their extra convolutions inside that backward pass; for inputs
known to be non-negative (after a ReLU, a sigmoid, pooling of those...) the negative half is
skipped, and γ skips negative outputs when a ReLU follows (their relevance is exactly 0). Relevance is computed w.r.t. the preprocessed input and each RGB channel receives the
relevance of the preprocessed channel it becomes (:func:`channel_map`); its sum over the image
is the target logit minus what biases and stabilisers absorb.

Registered methods: the composites :class:`LRPEpsilonPlus`, :class:`LRPEpsilonGammaBox`,
:class:`LRPEpsilonAlpha2Beta1`, and the names of tfxai 0.1 (which ran innvestigate 2.1.2 in a
worker) with the meaning innvestigate gave them: :class:`LRPEpsilon`, :class:`LRPZPlus`,
:class:`LRPAlphaBeta`, :class:`LRPSequentialPresetA`, :class:`DeepTaylor`. innvestigate's
results are reproduced to float32 precision on the models it supports without batch norm
(``tests/test_lrp.py``); on batch norm they differ because innvestigate 2.1.2's batch-norm
surrogate is wrong (it uses ``sqrt(var² + ε)`` and drops γ from the shift), tfxai folds it.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

from tfxai import graph as graph_lib
from tfxai.attribution.base import Attributer, Param, above, at_least, register
from tfxai.backend import keras

__all__ = [
    "LRPError",
    "LRPWarning",
    "STABILIZER",
    "Rule",
    "Epsilon",
    "AlphaBeta",
    "Gamma",
    "Flat",
    "WSquare",
    "ZBox",
    "z_plus",
    "Composite",
    "COMPOSITES",
    "lrp_model",
    "channel_map",
    "LRP",
    "CustomLRP",
    "LRPEpsilonPlus",
    "LRPEpsilonGammaBox",
    "LRPEpsilonAlpha2Beta1",
    "LRPEpsilon",
    "LRPZPlus",
    "LRPAlphaBeta",
    "LRPSequentialPresetA",
    "DeepTaylor",
]

layers = keras.layers

#: additive stabiliser of every denominator that is not an ε-rule's (sign-aware, as ε)
STABILIZER = 1e-7


class LRPError(ValueError):
    """A model LRP cannot be applied to: the message names the layer and what to do."""


class LRPWarning(UserWarning):
    """LRP runs, but not quite as asked (e.g. no first layer on pixel input for z^B)."""


def _stab(z: tf.Tensor, eps: float) -> tf.Tensor:
    """``z + eps·sign(z)`` with sign(0) = +1: the denominator never crosses or touches zero."""
    return z + eps * tf.where(z >= 0, tf.ones_like(z), -tf.ones_like(z))


# --------------------------------------------------------------------------------------- linear


class _Linear:
    """The linear part of a layer with weights: ``apply(x, kernel)`` (no bias, no activation),
    its transpose ``vjp(x, kernel, s)`` and the bias broadcast to the output."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        fmt = getattr(layer, "data_format", "channels_last")
        self.channels_first = fmt == "channels_first"
        if isinstance(layer, layers.Dense):
            self._fn = keras.ops.matmul
        elif isinstance(layer, _DEPTHWISE):
            def depthwise(x: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
                return keras.ops.depthwise_conv(
                    x, k, strides=layer.strides, padding=layer.padding,
                    dilation_rate=layer.dilation_rate, data_format=layer.data_format)

            self._fn = depthwise
        else:
            self._fn = layer.convolution_op

    def apply(self, x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return self._fn(x, kernel)

    def vjp(self, x: tf.Tensor, kernel: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
        """``(∂ apply(x, kernel)/∂x)ᵀ s``: the transposed convolution or matrix product. (The
        forward product recorded here is not needed by the gradient and is pruned from the
        compiled graph.)"""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            y = self._fn(x, kernel)
        return tape.gradient(y, x, output_gradients=s)

    def bias(self, b: tf.Tensor, rank: int) -> tf.Tensor:
        """``b`` shaped to broadcast over an output of ``rank`` dimensions."""
        if self.channels_first and rank > 2:
            return tf.reshape(b, (1, -1) + (1,) * (rank - 2))
        return b


@dataclass
class _Site:
    """What a rule sees at one layer call."""

    lin: _Linear
    x: tf.Tensor          # layer input
    z: tf.Tensor          # pre-activation output, bias included
    kernel: tf.Tensor
    bias: tf.Tensor       # shaped to broadcast over z
    nonneg: bool          # x is known to be >= 0
    positive_outputs: bool = False  # only units with z > 0 can hold relevance (a ReLU follows)
    low: tf.Tensor | None = None    # z^B box (batch dimension 1)
    high: tf.Tensor | None = None

    def vjp(self, kernel: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
        return self.lin.vjp(self.x, kernel, s)

    def apply(self, x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return self.lin.apply(x, kernel)


# --------------------------------------------------------------------------------------- rules


class Rule:
    """An LRP rule for layers with weights: maps the relevance of a layer's outputs to the
    relevance of its inputs."""

    name: ClassVar[str] = ""
    #: the rule needs the input box (z^B): only first layers on pixel input can have it
    needs_box: ClassVar[bool] = False
    #: an input equal to 0 gets no relevance (false for flat, w², z^B)
    proportional: ClassVar[bool] = True

    def relevance(self, site: _Site, r: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True)
class Epsilon(Rule):
    """LRP-ε [Bach et al. 2015]: ``R_i = x_i Σ_j w_ij R_j / (z_j + ε·sign(z_j))``.

    ``bias=True`` keeps the bias in ``z_j`` (it absorbs its share ``b_j/z_j`` of ``R_j``).
    """

    epsilon: float = 1e-6
    bias: bool = True
    name: ClassVar[str] = "epsilon"

    def relevance(self, site: _Site, r: tf.Tensor) -> tf.Tensor:
        z = site.z if self.bias else site.z - site.bias
        return site.x * site.vjp(site.kernel, r / _stab(z, self.epsilon))

    def describe(self) -> str:
        return f"ε={self.epsilon:g}" + ("" if self.bias else ", no bias")


def _bias_pair(mode: str, b: tf.Tensor) -> tuple[Any, Any]:
    """Biases of the (positive, negative) denominators of the αβ rule."""
    if mode == "none":
        return 0.0, 0.0
    if mode == "split":
        pos = tf.nn.relu(b)
        return pos, b - pos
    if mode == "both":
        return b, b
    raise ValueError(f"AlphaBeta: bias must be 'none', 'split' or 'both', got {mode!r}")


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-αβ [Bach et al. 2015]: positive contributions weighted by α, negative by β.

    ``R_i = Σ_j (α (x_i w_ij)^+ / z_j^+ − β (x_i w_ij)^- / z_j^-) R_j``; for inputs of any sign,
    ``(x w)^+`` is ``x⁺w⁺ + x⁻w⁻``. ``bias``: ``"none"``, ``"split"`` (b⁺ joins z⁺, b⁻ joins z⁻)
    or ``"both"`` (b joins both: innvestigate 2.1.2 with ``bias=True``).
    """

    alpha: float = 1.0
    beta: float = 0.0
    bias: str = "split"
    name: ClassVar[str] = "alpha_beta"

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.beta < 0 or abs(self.alpha - self.beta - 1.0) > 1e-9:
            raise ValueError(f"AlphaBeta needs α, β >= 0 and α − β = 1, got α={self.alpha}, "
                             f"β={self.beta}")
        _bias_pair(self.bias, tf.zeros(1))

    def relevance(self, site: _Site, r: tf.Tensor) -> tf.Tensor:
        kp = tf.nn.relu(site.kernel)
        kn = site.kernel - kp
        b_act, b_inh = _bias_pair(self.bias, site.bias)
        x = site.x
        if site.nonneg:
            out = self.alpha * x * site.vjp(kp, r / _stab(site.apply(x, kp) + b_act, STABILIZER))
            if self.beta:
                s = r / _stab(site.apply(x, kn) + b_inh, STABILIZER)
                out -= self.beta * x * site.vjp(kn, s)
            return out
        xp = tf.nn.relu(x)
        xn = x - xp
        s = r / _stab(site.apply(xp, kp) + site.apply(xn, kn) + b_act, STABILIZER)
        out = self.alpha * (xp * site.vjp(kp, s) + xn * site.vjp(kn, s))
        if self.beta:
            s = r / _stab(site.apply(xp, kn) + site.apply(xn, kp) + b_inh, STABILIZER)
            out -= self.beta * (xp * site.vjp(kn, s) + xn * site.vjp(kp, s))
        return out

    def describe(self) -> str:
        if (self.alpha, self.beta, self.bias) == (1.0, 0.0, "none"):
            return "z⁺"
        return f"α{self.alpha:g}β{self.beta:g} (bias {self.bias})"


def z_plus() -> AlphaBeta:
    """LRP-z⁺ [Montavon et al. 2017]: αβ with α = 1, β = 0 and no bias."""
    return AlphaBeta(1.0, 0.0, "none")


@dataclass(frozen=True)
class Gamma(Rule):
    """LRP-γ [Montavon et al. 2019], sign-generalised [Andéol et al. 2021]: positive outputs
    redistribute along ``w + γw⁺`` (bias ``b + γb⁺``), negative outputs along ``w + γw⁻``."""

    gamma: float = 0.25
    name: ClassVar[str] = "gamma"

    def relevance(self, site: _Site, r: tf.Tensor) -> tf.Tensor:
        g = self.gamma
        k, kp = site.kernel, tf.nn.relu(site.kernel)
        bp = tf.nn.relu(site.bias)
        x, z = site.x, site.z
        if site.nonneg:
            pos = site.apply(x, kp) + bp
        else:
            xp = tf.nn.relu(x)
            pos = site.apply(xp, kp) + site.apply(x - xp, k - kp) + bp
        neg = z - pos  # negative contributions, b⁻ included
        zero = tf.zeros_like(r)
        s1 = tf.where(z > 0, r / _stab(z + g * pos, STABILIZER), zero)
        if site.positive_outputs:  # R = 0 wherever z <= 0: one transposed conv fewer
            if site.nonneg:
                return x * site.vjp(k + g * kp, s1)
            g1, d = site.vjp(k, s1), site.vjp(kp, s1)
            xp = tf.nn.relu(x)
            return x * g1 + g * (xp * d + (x - xp) * (g1 - d))
        s2 = tf.where(z < 0, r / _stab(z + g * neg, STABILIZER), zero)
        if site.nonneg:
            return x * (site.vjp(k, s1 + (1.0 + g) * s2) + g * site.vjp(kp, s1 - s2))
        d = site.vjp(kp, s1 - s2)
        g1, g2 = site.vjp(k, s1), site.vjp(k, s2)
        xp = tf.nn.relu(x)
        return x * (g1 + g2) + g * (xp * (d + g2) + (x - xp) * (g1 - d))

    def describe(self) -> str:
        return f"γ={self.gamma:g}"


@dataclass(frozen=True)
class WSquare(Rule):
    """w² rule [Montavon et al. 2017]: ``R_i = Σ_j w_ij² / Σ_i w_ij² R_j`` (input-independent)."""

    name: ClassVar[str] = "w_square"
    proportional: ClassVar[bool] = False

    def _kernel(self, k: tf.Tensor) -> tf.Tensor:
        return tf.square(k)

    def relevance(self, site: _Site, r: tf.Tensor) -> tf.Tensor:
        k = self._kernel(site.kernel)
        ones = tf.ones_like(site.x[:1])
        return site.vjp(k, r / _stab(site.apply(ones, k), STABILIZER))


@dataclass(frozen=True)
class Flat(WSquare):
    """Flat rule [Lapuschkin et al. 2019]: every input of a unit gets an equal share."""

    name: ClassVar[str] = "flat"

    def _kernel(self, k: tf.Tensor) -> tf.Tensor:
        return tf.ones_like(k)


@dataclass(frozen=True)
class ZBox(Rule):
    """z^B rule for inputs bounded in ``[l, h]`` [Montavon et al. 2017]:
    ``R_i = Σ_j (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) / Σ_i (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) R_j``.

    The box is the backbone's preprocessing of pixel values 0 and 255 (per channel and position,
    zero padding included), so this rule applies only to first layers on pixel input.
    """

    name: ClassVar[str] = "zb"
    needs_box: ClassVar[bool] = True
    proportional: ClassVar[bool] = False

    def relevance(self, site: _Site, r: tf.Tensor) -> tf.Tensor:
        k = site.kernel
        kp = tf.nn.relu(k)
        kn = k - kp
        low, high = site.low, site.high
        z = site.z - site.bias - site.apply(low, kp) - site.apply(high, kn)
        s = r / _stab(z, STABILIZER)
        return site.x * site.vjp(k, s) - low * site.vjp(kp, s) - high * site.vjp(kn, s)

    def describe(self) -> str:
        return "z^B"


# --------------------------------------------------------------------------------------- composites


@dataclass(frozen=True)
class Composite:
    """Which rule each layer gets.

    Attributes:
        name: shown in messages.
        conv: rule of ``Conv1D/2D/3D`` and ``DepthwiseConv*`` layers.
        dense: rule of ``Dense`` layers.
        first: rule of the first layers on pixel input (``None``: their ``conv``/``dense`` rule).
        merge: ``"z"`` — ``Add``/``Average``/``Subtract`` and average pooling use the z-rule
            (relevance ∝ contribution); ``"gradient"`` — they pass relevance along their gradient
            (innvestigate's Deep Taylor: average pooling splits evenly, ``Add`` copies).
        relu: ``"pass"`` — separate ReLU layers pass relevance through like every activation;
            ``"gradient"`` — they gate it with their gradient 1[x > 0] (innvestigate's Deep
            Taylor).
        start: ``"logit"`` (R = logit_t) or ``"positive_logit"`` (R = max(logit_t, 0), Deep
            Taylor's positive output).
    """

    name: str
    conv: Rule
    dense: Rule
    first: Rule | None = None
    merge: str = "z"
    relu: str = "pass"
    start: str = "logit"

    def rule(self, layer: Any, first: bool) -> Rule:
        if first and self.first is not None:
            return self.first
        return self.dense if isinstance(layer, layers.Dense) else self.conv

    def describe(self) -> str:
        parts = []
        if self.first is not None:
            parts.append(f"first layer {self.first.describe()}")
        parts += [f"conv {self.conv.describe()}", f"dense {self.dense.describe()}"]
        return f"{self.name}: " + ", ".join(parts)


#: the named composites (zennit's names) with their default parameters
COMPOSITES: dict[str, Composite] = {
    "epsilon_plus": Composite("epsilon_plus", conv=z_plus(), dense=Epsilon(1e-6)),
    "epsilon_gamma_box": Composite("epsilon_gamma_box", conv=Gamma(0.25), dense=Epsilon(1e-6),
                                   first=ZBox()),
    "epsilon_alpha2_beta1": Composite("epsilon_alpha2_beta1", conv=AlphaBeta(2.0, 1.0, "split"),
                                      dense=Epsilon(1e-6)),
}

# --------------------------------------------------------------------------------------- layers

_CONV: tuple[type, ...] = tuple(
    getattr(layers, n) for n in ("Conv1D", "Conv2D", "Conv3D") if hasattr(layers, n))
_DEPTHWISE: tuple[type, ...] = tuple(
    getattr(layers, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D") if hasattr(layers, n))
_KERNEL = (*_CONV, *_DEPTHWISE, layers.Dense)


def _classes(*names: str) -> tuple[type, ...]:
    return tuple(getattr(layers, n) for n in names if hasattr(layers, n))


#: relevance routed by the ordinary gradient (relevance-preserving routing)
_ROUTE = _classes(
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "Flatten", "Reshape", "Permute", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "GaussianDropout", "GaussianNoise", "AlphaDropout", "Concatenate",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "GlobalMaxPooling3D", "Identity", "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "ActivityRegularization",
)
#: linear maps without weights: the z-rule
_MERGE = _classes("Add", "Average", "Subtract")
_AVG_POOL = _classes(
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D",
)
#: elementwise layers that pass relevance through
_ELEMENTWISE = _classes("Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "ThresholdedReLU")
_AFFINE = _classes("Rescaling", "Normalization", "BatchNormalization")
#: layers between the input and a first layer that keep pixel semantics (for the z^B box)
_PIXEL_PATH = (*_classes(
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "Flatten", "Reshape", "Permute", "Dropout", "SpatialDropout2D", "GaussianDropout",
    "GaussianNoise", "AlphaDropout", "Identity"), *_AFFINE)
#: Keras operations (``x + y``, ``keras.ops.reshape`` in a functional model) by class name
_OP_ROUTE = {"Reshape", "Squeeze", "ExpandDims", "Transpose", "Concatenate", "Flatten"}
_OP_MERGE = {"Add", "Subtract"}

_NONNEG_ACTIVATIONS = {"relu", "relu6", "sigmoid", "hard_sigmoid", "softplus", "softmax",
                       "exponential"}
_SOFTMAX_NAMES = {"softmax", "softmax_v2", "log_softmax"}


def _act_name(fn: Any) -> str:
    return getattr(fn, "__name__", "") if fn is not None else ""


def _is_linear(fn: Any) -> bool:
    return fn is None or _act_name(fn) == "linear"


def _relu_like(layer: Any) -> bool:
    if isinstance(layer, layers.ReLU):
        return float(np.asarray(layer.negative_slope)) == 0.0
    return isinstance(layer, layers.Activation) and _act_name(layer.activation) in ("relu", "relu6")


def _output_nonneg(layer: Any) -> bool | None:
    """True when the layer's output is >= 0 whatever its input; None when it depends on it."""
    if isinstance(layer, layers.ReLU):
        return (float(np.asarray(layer.negative_slope)) == 0.0
                and float(np.asarray(layer.threshold)) >= 0.0)
    if isinstance(layer, layers.Activation) or isinstance(layer, _KERNEL):
        return _act_name(layer.activation) in _NONNEG_ACTIVATIONS
    if isinstance(layer, layers.Softmax):
        return True
    if isinstance(layer, (*_ROUTE, *_MERGE, *_AVG_POOL, layers.Multiply)) and not isinstance(
            layer, layers.Subtract):
        return None
    return False


def _flat(obj: Any) -> list[Any]:
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _flat(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _flat(o)]
    return [obj] if hasattr(obj, "shape") else []


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


class _Folded(_LRPLayer):
    """A batch norm folded into the layer before it: its input is already normalised."""

    def call(self, inputs: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        return tf.identity(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


class _Pass(_LRPLayer):
    """An elementwise layer (activation, rescaling, unfolded batch norm): relevance passes."""

    def call(self, inputs: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        extra = {"training": False} if isinstance(self.inner, layers.BatchNormalization) else {}
        return _pass_through(inputs, self.inner(inputs, **extra))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


class _Logits(_LRPLayer):
    """The output softmax, skipped: relevance starts at the logits."""

    def call(self, inputs: tf.Tensor, **kwargs: Any) -> tf.Tensor:
        return tf.identity(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


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


# --------------------------------------------------------------------------------------- plan


@dataclass
class _Plan:
    """What the rewrite does with each layer of one backbone (found on its flat graph)."""

    composite: Composite
    replace: dict[int, Any] = field(default_factory=dict)  # id(layer) → replacement factory
    #: paths of the layers given the composite's first-layer rule
    first_layers: list[str] = field(default_factory=list)
    #: "batch norm path → layer path" of the folded batch norms
    folded: list[str] = field(default_factory=list)


def _softmax_head(bb: Any) -> graph_lib.Node | None:
    if bb.output != "probabilities":
        return None
    return bb.graph.producer(bb.graph.output)


def _plan(bb: Any, composite: Composite, method: str) -> _Plan:
    """Check every layer of ``bb`` and decide its replacement (raises :class:`LRPError`)."""
    g = bb.graph
    if g.opaque:
        raise LRPError(f"{method}: {', '.join(g.opaque)} in model {bb.name!r} is a subclassed "
                       "Keras model whose layers LRP cannot reach; rebuild it with the functional "
                       "API or keras.Sequential")
    nodes = g.nodes
    producer: dict[int, graph_lib.Node] = {}
    consumers: dict[int, list[graph_lib.Node]] = {}
    for node in nodes:
        for t in _flat(node.output):
            producer[id(t)] = node
        for t in _flat((node.args, node.kwargs)):
            consumers.setdefault(id(t), []).append(node)
    calls = Counter(id(n.source) for n in nodes)
    head = _softmax_head(bb)

    # tensors known to be >= 0, and tensors that are pixels seen through pass-through layers
    nonneg: set[int] = set()
    pixel: set[int] = {id(g.input)}
    for node in nodes:
        ins = [id(t) for t in _flat((node.args, node.kwargs))]
        out = [id(t) for t in _flat(node.output)]
        sign = _output_nonneg(node.source) if isinstance(node.source, layers.Layer) else False
        if sign or (sign is None and ins and all(i in nonneg for i in ins)):
            nonneg.update(out)
        if (isinstance(node.source, _PIXEL_PATH) or (
                isinstance(node.source, layers.Activation) and _is_linear(node.source.activation))
                ) and ins and all(i in pixel for i in ins):
            pixel.update(out)

    plan = _Plan(composite)
    unsupported: list[str] = []
    fold_into: dict[int, Any] = {}
    fold_out: dict[int, Any] = {}  # id(layer) → output of the batch norm folded into it
    folded_bn: set[int] = set()
    for node in nodes:  # batch norms that can be folded into the layer before them
        src = node.source
        if not isinstance(src, layers.BatchNormalization) or calls[id(src)] != 1:
            continue
        prev = producer.get(id(node.first_input))
        if prev is None or not isinstance(prev.source, _KERNEL) or calls[id(prev.source)] != 1:
            continue
        rank = len(node.shape or ())
        axis = src.axis if isinstance(src.axis, int) else (list(src.axis) + [None])[0]
        if axis is None or len(consumers.get(id(node.first_input), [])) != 1 or prev.source is (
                head.source if head is not None else None):
            continue
        channel_axis = 1 if getattr(prev.source, "data_format", "") == "channels_first" else -1
        if (axis % rank) != (channel_axis % rank) or not _is_linear(prev.source.activation):
            continue
        fold_into[id(prev.source)] = src
        folded_bn.add(id(src))
        fold_out[id(prev.source)] = node.output
        plan.folded.append(f"{node.path} → {prev.path}")

    first_nodes = [n for n in nodes if isinstance(n.source, _KERNEL)
                   and calls[id(n.source)] == 1 and id(n.first_input) in pixel]
    first_paths = {n.path for n in first_nodes} if composite.first is not None else set()
    boxes = _boxes(bb, first_nodes) if composite.first is not None and (
        composite.first.needs_box) else {}

    # relevance is exactly 0 at every unit whose output is 0 (so at a ReLU's negative inputs)
    # when every rule after the first layer is proportional to its input and merges use the z-rule
    exact_zeros = (composite.merge == "z" and composite.conv.proportional
                   and composite.dense.proportional)
    for node in nodes:
        src, path = node.source, node.path
        if id(src) in plan.replace:
            continue
        is_head = head is not None and src is head.source
        if isinstance(src, _KERNEL) and getattr(src, "padding", "") == "causal":
            unsupported.append(f"{path!r} ({type(src).__name__} with causal padding)")
        elif isinstance(src, _KERNEL):
            first = path in first_paths
            rule = composite.rule(src, first)
            if rule.needs_box and not first:
                raise LRPError(f"{method}: the {rule.describe()} rule needs the pixel range, so "
                               f"it applies only to first layers on pixel input, not to {path!r}")
            if first:
                plan.first_layers.append(path)
            box = boxes.get(path) if rule.needs_box else None
            act = src.activation
            if is_head or _is_linear(act):
                act = None
            elif _act_name(act) in _SOFTMAX_NAMES:
                unsupported.append(f"{path!r} ({type(src).__name__} with a softmax inside the "
                                   "network)")
                continue
            # a layer called more than once gets the shortcuts only if every call allows them
            keep = all(id(n.first_input) in nonneg for n in nodes if n.source is src)
            positive = exact_zeros and calls[id(src)] == 1 and _relu_follows(
                node, fold_out.get(id(src)), consumers)
            plan.replace[id(src)] = _factory(_KernelLayer, src, rule, fold_into.get(id(src)),
                                             keep, box, act, positive)
        elif is_head:
            plan.replace[id(src)] = _factory(_Logits, src)
        elif isinstance(src, layers.BatchNormalization) and id(src) in folded_bn:
            plan.replace[id(src)] = _factory(_Folded, src)
        elif isinstance(src, (*_MERGE, *_AVG_POOL)):
            if composite.merge == "z":
                plan.replace[id(src)] = _factory(_Merge, src)
        elif isinstance(src, layers.Multiply):
            gate = _gate_index(node, producer)
            if gate is None:
                unsupported.append(f"{path!r} (Multiply of {len(_flat(node.args))} inputs that "
                                   "is not a gate: LRP treats Multiply as x · constant gate)")
                continue
            plan.replace[id(src)] = _factory(_Gate, src, gate)
        elif isinstance(src, layers.Softmax) or (
                isinstance(src, layers.Activation) and _act_name(src.activation) in _SOFTMAX_NAMES):
            unsupported.append(f"{path!r} ({type(src).__name__}: a softmax inside the network)")
        elif isinstance(src, _ELEMENTWISE):
            if composite.relu == "gradient" and _relu_like(src):
                continue
            plan.replace[id(src)] = _factory(_Pass, src)
        elif isinstance(src, _AFFINE):
            plan.replace[id(src)] = _factory(_Pass, src)
        elif isinstance(src, _ROUTE):
            continue
        elif not isinstance(src, layers.Layer):
            kind = type(src).__name__
            if kind in _OP_ROUTE:
                continue
            if kind in _OP_MERGE and composite.merge == "z":
                plan.replace[id(src)] = _factory(_Merge, src, True)
            elif kind in _OP_MERGE:
                continue
            elif kind == "Multiply" and _gate_index(node, producer) is not None:
                plan.replace[id(src)] = _factory(_Gate, src, _gate_index(node, producer), True)
            else:
                unsupported.append(f"{path!r} (Keras operation {kind})")
        else:
            unsupported.append(f"{path!r} ({type(src).__name__})")
    if unsupported:
        raise LRPError(
            f"{method}: model {bb.name!r} has layer(s) LRP does not support: "
            f"{', '.join(unsupported[:6])}{' ...' if len(unsupported) > 6 else ''}. Supported: "
            "Conv1D/2D/3D, DepthwiseConv2D, Dense, BatchNormalization, pooling, Add, Average, "
            "Subtract, Concatenate, gating Multiply, activations, Rescaling, Normalization, "
            "padding, cropping, Flatten, Reshape, Permute, Dropout; use a gradient method for "
            "this model or rebuild it from these layers"
        )
    if composite.first is not None and composite.first.needs_box and not plan.first_layers:
        warnings.warn(f"{method}: no layer of model {bb.name!r} takes the pixels directly (through "
                      "rescaling/normalisation/padding only), so the z^B rule is not used",
                      LRPWarning, stacklevel=3)
    return plan


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


def _boxes(bb: Any, first: list[graph_lib.Node]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
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


def lrp_model(backbone: Any, composite: Composite, method: str = "lrp") -> keras.Model:
    """The backbone's logit model (preprocessed input → logits, layers shared) whose gradient is
    LRP with ``composite``: ``tape.gradient(logit_t, x, output_gradients=logit_t)`` is the
    relevance of the preprocessed input ``x`` (see the module docstring).

    Raises :class:`LRPError` naming the first unsupported layers.
    """
    from tfxai.models import ModelLoadError, logits_graph

    plan = _plan(backbone, composite, method)

    def replace(layer: Any) -> Any:
        make = plan.replace.get(id(layer))
        return make() if make is not None else None

    try:
        g, logits = logits_graph(backbone.keras_model, backbone.input_shape, "logits", replace)
    except ModelLoadError as exc:
        raise LRPError(f"{method}: {exc}") from None
    model = g.model(logits, name=f"{backbone.keras_model.name}_lrp")
    model._tfxai_plan = plan  # noqa: SLF001 - read by tests and describe()
    return model


# --------------------------------------------------------------------------------------- channels


def channel_map(backbone: Any) -> np.ndarray:
    """For each RGB input channel, the preprocessed channel it becomes
    (:meth:`tfxai.models.Backbone.channel_map`); LRP relevance of a preprocessed value is the
    relevance of the input value it came from. A preprocessing that is not a per-channel affine
    map raises :class:`LRPError`."""
    try:
        return backbone.channel_map()
    except ValueError as exc:
        raise LRPError(f"LRP: {exc}") from None


# --------------------------------------------------------------------------------------- methods


class LRP(Attributer):
    """Base class of the LRP methods: subclasses give :meth:`composite`.

    Raw attribution: (N, H, W, 3), the relevance of each input value for the target's
    pre-softmax logit (see the module docstring). The model is rewritten once per attributer.
    """

    map_defaults = {"reduce": "sum", "absolute": False, "scale": "max"}
    params_spec: ClassVar[dict[str, Param]] = {}

    def composite(self) -> Composite:
        raise NotImplementedError

    def _setup(self) -> None:
        self._composite = self.composite()
        self._channels = channel_map(self.backbone)
        #: the rewritten logit model (built once, cached on the attributer)
        self.model = lrp_model(self.backbone, self._composite, self.name)
        self._fn = self.compile(self._core)

    def describe(self) -> str:
        """The rules in use, e.g. ``"epsilon_plus: conv z⁺, dense ε=1e-06"``."""
        return self._composite.describe()

    def _core(self, x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        xp = self.backbone.preprocess(x)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(xp)
            logits = self.model(xp, training=False)
            score = tf.gather(logits, t, batch_dims=1)
        start = tf.stop_gradient(score)
        if self._composite.start == "positive_logit":
            start = tf.nn.relu(start)
        rel = tape.gradient(score, xp, output_gradients=start)
        return tf.gather(rel, self._channels, axis=-1)

    def _attribute(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> tf.Tensor:
        return self._fn(x, targets)


class CustomLRP(LRP):
    """LRP with any :class:`Composite` (Python API; not in the registry)::

        comp = Composite("mine", conv=Gamma(0.5), dense=Epsilon(0.1), first=Flat())
        CustomLRP(backbone, composite=comp).attribute(images, targets)
    """

    name = "lrp_custom"

    def __init__(self, backbone: Any, composite: Composite, **params: Any) -> None:
        self._given = composite
        super().__init__(backbone, **params)

    def composite(self) -> Composite:
        return self._given

    def method_params(self) -> dict[str, Any]:
        return {**super().method_params(), "composite": self._given.describe()}


_FIRST_RULES: dict[str, Rule | None] = {"same": None, "zb": ZBox(), "flat": Flat(),
                                        "w_square": WSquare()}


def _first_param(default: str) -> Param:
    return Param(default, str, "rule of the first layer on pixel input: same (the conv/dense "
                 "rule) | zb (z^B, box = preprocessed 0..255) | flat | w_square",
                 choices=tuple(_FIRST_RULES))


def _epsilon_param(default: float, doc: str = "ε of the dense layers") -> Param:
    return Param(default, float, doc, **above(0))


@register
class LRPEpsilonPlus(LRP):
    """LRP composite *EpsilonPlus* [Montavon et al. 2019; Kohlbrenner et al. 2020, "Towards
    Best Practice in Explaining Neural Network Decisions with LRP"]: z⁺ on convolutions
    (depthwise included), ε on dense layers."""

    name = "lrp_epsilon_plus"
    summary = "LRP composite: z+ (conv), ε (dense) [Montavon 2019; Kohlbrenner 2020]"
    params_spec = {"epsilon": _epsilon_param(1e-6), "first_layer": _first_param("same")}

    def composite(self) -> Composite:
        base = COMPOSITES["epsilon_plus"]
        return replace(base, dense=Epsilon(self.params["epsilon"]),
                       first=_FIRST_RULES[self.params["first_layer"]])


@register
class LRPEpsilonGammaBox(LRP):
    """LRP composite *EpsilonGammaBox* [Montavon et al. 2019]: z^B on the first layer (box = the
    preprocessed pixel range 0..255), γ on the other convolutions, ε on dense layers."""

    name = "lrp_epsilon_gamma_box"
    summary = "LRP composite: z^B (first layer), γ (conv), ε (dense) [Montavon 2019]"
    params_spec = {
        "epsilon": _epsilon_param(1e-6),
        "gamma": Param(0.25, float, "γ of the convolutions", **at_least(0)),
        "first_layer": _first_param("zb"),
    }

    def composite(self) -> Composite:
        base = COMPOSITES["epsilon_gamma_box"]
        return replace(base, conv=Gamma(self.params["gamma"]),
                       dense=Epsilon(self.params["epsilon"]),
                       first=_FIRST_RULES[self.params["first_layer"]])


@register
class LRPEpsilonAlpha2Beta1(LRP):
    """LRP composite *EpsilonAlpha2Beta1* [Bach et al. 2015; Kohlbrenner et al. 2020]: α2β1 on
    convolutions (b⁺ in the positive, b⁻ in the negative denominator), ε on dense layers."""

    name = "lrp_epsilon_alpha2_beta1"
    summary = "LRP composite: α2β1 (conv), ε (dense) [Bach 2015; Kohlbrenner 2020]"
    params_spec = {"epsilon": _epsilon_param(1e-6), "first_layer": _first_param("same")}

    def composite(self) -> Composite:
        base = COMPOSITES["epsilon_alpha2_beta1"]
        return replace(base, dense=Epsilon(self.params["epsilon"]),
                       first=_FIRST_RULES[self.params["first_layer"]])


# ------------------------------------------------------------- tfxai 0.1 names (innvestigate's)

_TIMEOUT = Param(900.0, float, "ignored (tfxai 0.1 ran LRP in an innvestigate worker; kept so "
                 "old commands still parse)", **above(0), hashed=False)


class _Legacy(LRP):
    """A tfxai 0.1 method: same name, parameters and result as its innvestigate 2.1.2 analyzer
    (``neuron_selection_mode="index"``), computed natively."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.params_spec = {**cls.params_spec, "timeout": _TIMEOUT}


@register
class LRPEpsilon(_Legacy):
    """LRP-ε [Bach et al. 2015] on every layer with weights, biases included: innvestigate's
    ``lrp.epsilon``."""

    name = "lrp_epsilon"
    summary = "LRP-ε (ε=1e-7) on every layer [Bach 2015]"
    params_spec = {"epsilon": Param(1e-7, float, "stabiliser ε", **above(0))}

    def composite(self) -> Composite:
        rule = Epsilon(self.params["epsilon"], bias=True)
        return Composite("lrp_epsilon", conv=rule, dense=rule)


@register
class LRPZPlus(_Legacy):
    """LRP-z⁺ [Bach et al. 2015; Montavon et al. 2017] on every layer with weights: positive
    contributions only, biases ignored (innvestigate's ``lrp.z_plus`` = α1β0 without bias)."""

    name = "lrp_z_plus"
    summary = "LRP-z+ on every layer, no bias [Montavon 2017]"
    params_spec = {}

    def composite(self) -> Composite:
        return Composite("lrp_z_plus", conv=z_plus(), dense=z_plus())


@register
class LRPAlphaBeta(_Legacy):
    """LRP-αβ [Bach et al. 2015] on every layer with weights, α − β = 1; default α=1, β=0.

    As innvestigate's ``lrp.alpha_1_beta_0`` / ``lrp.alpha_2_beta_1`` / ``lrp.alpha_beta``: the
    whole bias enters both the positive and the negative denominator (``bias="both"``).
    """

    name = "lrp_alpha_beta"
    summary = "LRP-αβ (α=1, β=0) on every layer [Bach 2015]"
    params_spec = {
        "alpha": Param(1.0, float, "weight of positive contributions", **at_least(1)),
        "beta": Param(0.0, float, "weight of negative contributions (α − β = 1)",
                      **at_least(0)),
    }

    def _setup(self) -> None:
        if abs(self.params["alpha"] - self.params["beta"] - 1) > 1e-9:
            raise ValueError("lrp_alpha_beta: parameters 'alpha' and 'beta' need alpha - beta = 1")
        super()._setup()

    def composite(self) -> Composite:
        rule = AlphaBeta(self.params["alpha"], self.params["beta"], "both")
        return Composite("lrp_alpha_beta", conv=rule, dense=rule)


@register
class LRPSequentialPresetA(_Legacy):
    """LRP composite preset A [Kohlbrenner et al. 2020] as innvestigate's
    ``lrp.sequential_preset_a``: ε (default 0.1) on dense layers, α1β0 on convolutions (the
    whole bias in the denominator, as innvestigate)."""

    name = "lrp_sequential_preset_a"
    summary = "LRP composite: ε (dense) + α1β0 (conv) [Kohlbrenner 2020]"
    params_spec = {"epsilon": Param(0.1, float, "ε of the dense layers", **above(0))}

    def composite(self) -> Composite:
        return Composite("lrp_sequential_preset_a", conv=AlphaBeta(1.0, 0.0, "both"),
                         dense=Epsilon(self.params["epsilon"], bias=True))


@register
class DeepTaylor(_Legacy):
    """Deep Taylor decomposition [Montavon et al. 2017] as innvestigate's ``deep_taylor``:
    relevance starts at max(logit_t, 0); z⁺ (no bias) on every layer with weights; separate
    ReLU layers gate relevance with their gradient; average pooling and ``Add`` pass it along
    their gradient. innvestigate refuses non-ReLU activations; here they pass relevance through."""

    name = "deep_taylor"
    summary = "Deep Taylor decomposition (z+ rule, positive logit) [Montavon 2017]"
    params_spec = {}

    def composite(self) -> Composite:
        return Composite("deep_taylor", conv=z_plus(), dense=z_plus(), merge="gradient",
                         relu="gradient", start="positive_logit")

