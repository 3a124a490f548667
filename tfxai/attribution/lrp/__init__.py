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
skipped, and γ skips negative outputs when a ReLU follows (their relevance is exactly 0).
Relevance is computed w.r.t. the preprocessed input and each RGB channel receives the
relevance of the preprocessed channel it becomes (:func:`channel_map`); its sum over the image
is the target logit minus what biases and stabilisers absorb.

Registered methods: the composites :class:`LRPEpsilonPlus`, :class:`LRPEpsilonGammaBox`,
:class:`LRPEpsilonAlpha2Beta1`, and the names of tfxai 0.1 (which ran innvestigate 2.1.2 in a
worker) with the meaning innvestigate gave them: :class:`LRPEpsilon`, :class:`LRPZPlus`,
:class:`LRPAlphaBeta`, :class:`LRPSequentialPresetA`, :class:`DeepTaylor`. innvestigate's
results are reproduced to float32 precision on the models it supports without batch norm
(``tests/test_lrp.py``); on batch norm they differ because innvestigate 2.1.2's batch-norm
surrogate is wrong (it uses ``sqrt(var² + ε)`` and drops γ from the shift), tfxai folds it.

Modules:

* :mod:`~tfxai.attribution.lrp.rules` — the rules, :class:`Composite` and :data:`COMPOSITES`;
* :mod:`~tfxai.attribution.lrp.kinds` — which kind of layer a Keras layer is;
* :mod:`~tfxai.attribution.lrp.backward` — the replacement layers and their backward pass;
* :mod:`~tfxai.attribution.lrp.plan` — the check of every layer and its replacement;
* :mod:`~tfxai.attribution.lrp.methods` — :func:`lrp_model`, :class:`LRP` and the registered
  methods.
"""

from __future__ import annotations

from tfxai.attribution.lrp.backward import _KernelLayer as _KernelLayer  # tests inspect it
from tfxai.attribution.lrp.methods import (
    LRP,
    CustomLRP,
    DeepTaylor,
    LRPAlphaBeta,
    LRPEpsilon,
    LRPEpsilonAlpha2Beta1,
    LRPEpsilonGammaBox,
    LRPEpsilonPlus,
    LRPSequentialPresetA,
    LRPZPlus,
    channel_map,
    lrp_model,
)
from tfxai.attribution.lrp.plan import LRPError, LRPWarning
from tfxai.attribution.lrp.rules import (
    COMPOSITES,
    STABILIZER,
    AlphaBeta,
    Composite,
    Epsilon,
    Flat,
    Gamma,
    Rule,
    WSquare,
    ZBox,
    z_plus,
)

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
