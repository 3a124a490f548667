"""Plain gradient methods.

* :class:`Saliency`: the gradient of the target logit with respect to the input
  [Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks"].
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfxai.attribution.base import Attributer, register


def input_gradients(backbone, x: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """∂ logit_target / ∂ x for a batch (one forward and one backward pass)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = backbone.logits(x)
        score = tf.gather(logits, targets, batch_dims=1)
    return tape.gradient(score, x)


@register
class Saliency(Attributer):
    """Vanilla gradient saliency [Simonyan et al. 2014].

    Raw attribution: the signed gradient ∂logit_c/∂x, (N, H, W, 3). The default map is the
    maximum over channels of its absolute value, as in the paper.
    """

    name = "saliency"
    summary = "∂logit_c/∂x; map = max over channels of |grad| [Simonyan 2014]"
    params_spec = {}
    map_defaults = {"reduce": "max_abs", "absolute": True, "scale": "max"}

    def _setup(self) -> None:
        self._fn = self.compile(lambda x, t: input_gradients(self.backbone, x, t))

    def _attribute(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> tf.Tensor:
        return self._fn(x, targets)
