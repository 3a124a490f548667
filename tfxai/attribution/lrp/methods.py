"""The LRP attribution methods: the rewritten logit model, the base class :class:`LRP` and the
registered methods.

Composites [Montavon et al. 2019; Kohlbrenner et al. 2020, "Towards Best Practice in Explaining
Neural Network Decisions with LRP"]: :class:`LRPEpsilonPlus`, :class:`LRPEpsilonGammaBox`,
:class:`LRPEpsilonAlpha2Beta1`; any composite through :class:`CustomLRP`. The names of tfxai 0.1,
with the meaning innvestigate 2.1.2 gave them: :class:`LRPEpsilon`, :class:`LRPZPlus`,
:class:`LRPAlphaBeta`, :class:`LRPSequentialPresetA`, :class:`DeepTaylor` [Montavon et al. 2017].
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

from tfxai.attribution.base import Attributer, Param, above, at_least, register
from tfxai.attribution.lrp.plan import LRPError, _plan
from tfxai.attribution.lrp.rules import (
    _FIRST_RULES,
    COMPOSITES,
    AlphaBeta,
    Composite,
    Epsilon,
    Gamma,
    Rule,
    z_plus,
)
from tfxai.backend import keras
from tfxai.primitives import target_score


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
            score = target_score(logits, t)
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


def _first_param(default: str) -> Param:
    return Param(default, str, "rule of the first layer on pixel input: same (the conv/dense "
                 "rule) | zb (z^B, box = preprocessed 0..255) | flat | w_square",
                 choices=tuple(_FIRST_RULES))


def _epsilon_param(default: float, doc: str = "ε of the dense layers") -> Param:
    return Param(default, float, doc, **above(0))


def _named(name: str, params: dict[str, Any], **rules: Rule) -> Composite:
    """The composite ``COMPOSITES[name]`` with ε = ``params["epsilon"]`` on dense layers, the
    ``params["first_layer"]`` rule on first layers and ``rules`` (e.g. ``conv=Gamma(0.5)``)."""
    return replace(COMPOSITES[name], dense=Epsilon(params["epsilon"]),
                   first=_FIRST_RULES[params["first_layer"]], **rules)


@register
class LRPEpsilonPlus(LRP):
    """LRP composite *EpsilonPlus* [Montavon et al. 2019; Kohlbrenner et al. 2020, "Towards
    Best Practice in Explaining Neural Network Decisions with LRP"]: z⁺ on convolutions
    (depthwise included), ε on dense layers."""

    name = "lrp_epsilon_plus"
    summary = "LRP composite: z+ (conv), ε (dense) [Montavon 2019; Kohlbrenner 2020]"
    params_spec = {"epsilon": _epsilon_param(1e-6), "first_layer": _first_param("same")}

    def composite(self) -> Composite:
        return _named("epsilon_plus", self.params)


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
        return _named("epsilon_gamma_box", self.params, conv=Gamma(self.params["gamma"]))


@register
class LRPEpsilonAlpha2Beta1(LRP):
    """LRP composite *EpsilonAlpha2Beta1* [Bach et al. 2015; Kohlbrenner et al. 2020]: α2β1 on
    convolutions (b⁺ in the positive, b⁻ in the negative denominator), ε on dense layers."""

    name = "lrp_epsilon_alpha2_beta1"
    summary = "LRP composite: α2β1 (conv), ε (dense) [Bach 2015; Kohlbrenner 2020]"
    params_spec = {"epsilon": _epsilon_param(1e-6), "first_layer": _first_param("same")}

    def composite(self) -> Composite:
        return _named("epsilon_alpha2_beta1", self.params)


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

