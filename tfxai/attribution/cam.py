"""Class activation maps.

* :class:`GradCAM` [Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization"]: α_k = spatial mean of ∂logit_c/∂A^k, map = ReLU(Σ_k α_k A^k),
  upsampled bilinearly to the input size.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfxai.attribution.base import Attributer, Param, register


def layer_activations_and_gradients(
    backbone, layer: str | None, x: tf.Tensor, targets: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Activations A of ``layer`` (N, h, w, K) and ∂logit_target/∂A in one forward/backward."""
    model = backbone.layer_model(layer)
    with tf.GradientTape() as tape:
        acts, logits = model(backbone.preprocess(x), training=False)
        score = tf.gather(logits, targets, batch_dims=1)
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

    def _core(self, x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
        acts, grads = layer_activations_and_gradients(self.backbone, self.params["layer"], x, t)
        weights = tf.reduce_mean(grads, axis=(1, 2))
        cam = tf.nn.relu(tf.einsum("nhwk,nk->nhw", acts, weights))
        return self.upsample(cam)
