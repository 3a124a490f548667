"""LRP rules for layers with weights, and composites (which rule each layer gets).

A rule maps the relevance ``R_j`` of a layer's outputs to the relevance of its inputs, given
what it sees at one layer call (:class:`_Site`: input, pre-activation, kernel, bias). The rules
and their papers are listed in the docstring of :mod:`tfxai.attribution.lrp`: ε [Bach et al.
2015], αβ [Bach et al. 2015], z⁺ and w² and z^B [Montavon et al. 2017], γ [Montavon et al.
2019; Andéol et al. 2021], flat [Lapuschkin et al. 2019].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import tensorflow as tf

from tfxai.attribution.lrp.kinds import _DEPTHWISE
from tfxai.backend import keras

layers = keras.layers

#: additive stabiliser of every denominator that is not an ε-rule's (sign-aware, as ε)
STABILIZER = 1e-7


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

#: the first-layer rule of each value of the composites' ``first_layer`` parameter (``"same"``:
#: the layer's conv/dense rule)
_FIRST_RULES: dict[str, Rule | None] = {"same": None, "zb": ZBox(), "flat": Flat(),
                                        "w_square": WSquare()}
