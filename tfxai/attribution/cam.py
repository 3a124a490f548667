"""Class activation maps.

* :class:`GradCAM` [Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization"]: α_k = spatial mean of ∂logit_c/∂A^k, map = ReLU(Σ_k α_k A^k),
  upsampled bilinearly to the input size.
* :class:`GradCAMPlusPlus` [Chattopadhay et al. 2018]: higher-order pixel weights α.
* :class:`GuidedGradCAM` [Selvaraju et al. 2017]: upsampled Grad-CAM ⊙ guided backprop.

All take a ``layer`` option (default: the backbone's last conv layer). Upsampling is
``tf.image.resize`` bilinear (half-pixel centres); tf-keras-vis uses ``scipy.ndimage.zoom``
(order 1, corner-aligned), so upsampled maps differ slightly at the borders while the
layer-resolution maps (:meth:`_CamBase.layer_map`) agree exactly.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfxai.attribution.base import Attributer, Param, register
from tfxai.primitives import target_score


def layer_activations_and_gradients(
    backbone, layer: str | None, x: tf.Tensor, targets: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Activations A of ``layer`` (N, h, w, K) and ∂logit_target/∂A in one forward/backward."""
    model = backbone.layer_model(layer)
    with tf.GradientTape() as tape:
        x_pre = backbone.preprocess(x)
        tape.watch(x_pre)  # so that A is on the tape even where no weight precedes it
        acts, logits = model(x_pre, training=False)
        score = target_score(logits, targets)
    return acts, tape.gradient(score, acts)


class _CamBase(Attributer):
    resolution = "layer"
    map_defaults = {"reduce": "sum", "absolute": False, "scale": "max"}
    params_spec = {
        "layer": Param(None, str, "conv layer (default: the backbone's last conv layer)",
                       nullable=True),
    }

    def _setup(self) -> None:
        layer = self.params["layer"] or self.backbone.last_conv_layer
        self.params["layer"] = layer
        model = self.backbone.layer_model(layer)  # validates the layer name
        if len(model.outputs[0].shape) != 4:
            raise ValueError(f"{self.name}: layer {layer!r} does not have a 4-D output")
        self._fn = self.compile(self._core)

    def _core(self, x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        return self.upsample(self.layer_map(x, t))

    def layer_map(self, x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        """The (N, h, w) map at the layer's resolution, before upsampling."""
        raise NotImplementedError

    def _attribute(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> tf.Tensor:
        return self._fn(x, targets)


@register
class GradCAM(_CamBase):
    """Grad-CAM [Selvaraju et al. 2017] on the pre-softmax logit.

    Raw attribution: the non-negative (N, H, W) map ReLU(Σ_k α_k A^k) upsampled bilinearly from
    the layer's resolution (recorded as ``resolution = "layer"``).
    """

    name = "gradcam"
    summary = "ReLU(Σ_k mean(∂logit_c/∂A^k)·A^k) at the last conv layer, upsampled [Selvaraju 2017]"

    def layer_map(self, x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        acts, grads = layer_activations_and_gradients(self.backbone, self.params["layer"], x, t)
        weights = tf.reduce_mean(grads, axis=(1, 2))
        return tf.nn.relu(tf.einsum("nhwk,nk->nhw", acts, weights))


@register
class GradCAMPlusPlus(_CamBase):
    """Grad-CAM++ [Chattopadhay et al. 2018, "Grad-CAM++: Generalized Gradient-based Visual
    Explanations for Deep Convolutional Networks"], with tf-keras-vis ``GradcamPlusPlus``
    conventions.

    With g = ∂logit_c/∂A^k at each position:
    ``α = g² / (2g² + g³·Σ_{ij} A^k)`` (α = 0 where g = 0), normalised to sum to 1 over the
    positions of each channel (tf-keras-vis), ``w_k = Σ_{ij} α·ReLU(g)`` and
    ``map = ReLU(Σ_k w_k A^k)`` upsampled bilinearly to the input size.

    The paper's exponential score ``Y = exp(S)`` multiplies every first-order weight of an image
    by the same positive ``exp(S)``, which cancels in α; it is dropped here (it overflows
    float32 for logits above ~88), so the raw map is tf-keras-vis's un-normalised map divided by
    ``exp(S)``; normalised maps are identical.
    """

    name = "gradcam_pp"
    summary = "Grad-CAM++: ReLU(Σ_k Σ_ij α_ij^k ReLU(∂S/∂A)·A^k) with 2nd/3rd-order α [Chattopadhay 2018]"

    def layer_map(self, x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        acts, grads = layer_activations_and_gradients(self.backbone, self.params["layer"], x, t)
        g2 = grads * grads
        g3 = g2 * grads
        total = tf.reduce_sum(acts, axis=(1, 2), keepdims=True)
        denom = 2.0 * g2 + g3 * total
        denom += tf.cast(g2 == 0.0, denom.dtype)
        alphas = g2 / denom
        norm = tf.reduce_sum(alphas, axis=(1, 2), keepdims=True)
        alphas /= norm + tf.cast(norm == 0.0, norm.dtype)
        weights = tf.reduce_sum(alphas * tf.nn.relu(grads), axis=(1, 2))
        return tf.nn.relu(tf.einsum("nhwk,nk->nhw", acts, weights))


@register
class GuidedGradCAM(_CamBase):
    """Guided Grad-CAM [Selvaraju et al. 2017]: the Grad-CAM map upsampled to the input size,
    multiplied pixelwise with the guided-backprop gradient [Springenberg et al. 2015].

    Raw attribution: (N, H, W, 3), signed (the Grad-CAM factor is non-negative). Computed at input
    resolution; the guided model rewrite is built once and cached on the attributer
    (``self.guided``). Default map: max over channels of |·|.
    """

    name = "guided_gradcam"
    summary = "upsampled Grad-CAM ⊙ guided backprop [Selvaraju 2017]"
    resolution = "input"
    map_defaults = {"reduce": "max_abs", "absolute": True, "scale": "max"}

    def _setup(self) -> None:
        from tfxai.attribution.guided import GuidedBackprop

        self.gradcam = GradCAM(self.backbone, layer=self.params["layer"],
                               batch_size=self.batch_size)
        self.params["layer"] = self.gradcam.params["layer"]
        self.guided = GuidedBackprop(self.backbone, batch_size=self.batch_size)
        self._fn = self.compile(self._core)

    def _core(self, x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        cam = self.upsample(self.gradcam.layer_map(x, t))
        return cam[..., None] * self.guided.core(x, t)
