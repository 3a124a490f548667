"""Plain gradient methods and the gradient helpers shared by the path methods.

* :class:`Saliency`: the gradient of the target logit with respect to the input
  [Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks"].
* :func:`target_gradients`, :func:`accumulate_gradients`: batched gradients of a target logit,
  and sums of gradients over many samples per image in bounded memory (integrated gradients,
  gradient SHAP).
* :func:`rows_normal`, :func:`rows_uniform`: per-row seeded random tensors, so that random
  methods do not depend on how images are batched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from tfxai.attribution.base import Attributer, register
from tfxai.primitives import target_score


def input_gradients(backbone, x: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """∂ logit_target / ∂ x for a batch (one forward and one backward pass)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = backbone.logits(x)
        score = target_score(logits, targets)
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


# --------------------------------------------------------------------------------------- helpers
# Shared by the path methods (integrated gradients, gradient SHAP) and the noise tunnels.


def target_gradients(
    logits_fn: Callable[[tf.Tensor], tf.Tensor], x: tf.Tensor, targets: tf.Tensor
) -> tf.Tensor:
    """∂ logits_fn(x)[i, targets[i]] / ∂ x for a batch, for any differentiable ``logits_fn``."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = target_score(logits_fn(x), targets)
    return tape.gradient(score, x)


#: chunks of a gradient loop computed at once (tf.while_loop ``parallel_iterations``)
CHUNKS_IN_FLIGHT = 2


def accumulate_gradients(
    logits_fn: Callable[[tf.Tensor], tf.Tensor],
    like: tf.Tensor,
    targets: tf.Tensor,
    per_image: int,
    chunk: int,
    make_rows: Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]],
) -> tf.Tensor:
    """Σ_k mult_k · ∇F(points_k) over ``per_image`` samples of every image, in bounded memory.

    The N·``per_image`` (image, sample) rows are processed in flat chunks of at most ``chunk``
    rows (a ``tf.while_loop`` inside the compiled function, :data:`CHUNKS_IN_FLIGHT` chunks at
    once), so at most 2·``chunk`` images' activations are alive at once whatever the number of
    samples; a chunk may mix images.

    Args:
        logits_fn: RGB 0..255 images → logits (differentiable).
        like: the (N, H, W, C) input batch (gives N and the result's shape).
        targets: (N,) int32 class indices.
        per_image: samples per image.
        chunk: rows per forward/backward pass.
        make_rows: ``(image_index, sample_index)`` (both (R,) int32) → ``(points, mult)``:
            the (R, H, W, C) points where the gradient is taken and the factor (broadcastable
            to the points) applied to each row's gradient before summing per image.

    Returns:
        (N, H, W, C) float32 sums.
    """
    n = tf.shape(like)[0]
    total = n * per_image
    acc = tf.zeros_like(like)
    for start in tf.range(0, total, chunk):
        # at most two chunks in flight: tf.while_loop's default runs up to 10 iterations at once
        # (nothing in a chunk's pass depends on ``acc``), which kept 10 chunks' activations
        # alive (IG on 16 Lite2 images: 15 GB). One at a time was 30 % slower on 2 cores; two
        # keep the overlap (IG, 16 Lite0 images: 53 s and 2.6 GB; 10: 52 s, 3.5-9.7 GB)
        tf.autograph.experimental.set_loop_options(parallel_iterations=CHUNKS_IN_FLIGHT)
        idx = tf.range(start, tf.minimum(start + chunk, total))
        img, k = idx // per_image, idx % per_image
        points, mult = make_rows(img, k)
        grads = target_gradients(logits_fn, points, tf.gather(targets, img))
        acc += tf.math.unsorted_segment_sum(grads * mult, img, n)
    return acc


def rows_normal(seeds: tf.Tensor, salt: tf.Tensor | int, shape: Sequence[int]) -> tf.Tensor:
    """One standard normal tensor of ``shape`` per row, row r seeded by ``(seeds[r], salt[r])``.

    The stream of a row depends only on its seed pair, never on the batch it is drawn in.
    """
    pairs = _seed_pairs(seeds, salt)
    return tf.map_fn(
        lambda s: tf.random.stateless_normal(shape, seed=s), pairs,
        fn_output_signature=tf.float32,
    )


def rows_uniform(seeds: tf.Tensor, salt: tf.Tensor | int, shape: Sequence[int]) -> tf.Tensor:
    """One U[0, 1) tensor of ``shape`` per row, seeded like :func:`rows_normal`."""
    pairs = _seed_pairs(seeds, salt)
    return tf.map_fn(
        lambda s: tf.random.stateless_uniform(shape, seed=s), pairs,
        fn_output_signature=tf.float32,
    )


def _seed_pairs(seeds: tf.Tensor, salt: tf.Tensor | int) -> tf.Tensor:
    seeds = tf.cast(tf.reshape(seeds, (-1,)), tf.int64)
    salt = tf.broadcast_to(tf.cast(salt, tf.int64), tf.shape(seeds))
    return tf.stack([seeds, salt], axis=1)
