"""Small operations that methods and metrics share, each defined once.

* :func:`target_score`: the explained score, the target class's logit of each row (in a graph);
  every gradient method differentiates it, every metric on logits reads it.
* :func:`softmax` and :func:`target_probability`: class probabilities from logits (max-shifted,
  in the logits' precision), and the target's probability of each row.
* :func:`top_k_mask` and :func:`rank_pixels`: the highest-scoring pixels of each map and the full
  order from most to least relevant, with an explicit tie rule: ``"index"`` (equal scores in
  raster order, the lower flat index first) or ``"seeded"`` (equal scores in a per-image random
  order drawn from ``[seed, salt]``, so no position is favoured).
* :func:`blur` (numpy: the blur fill of occlusion, LIME, the confidence metrics and the insertion
  canvas) and :func:`blur_tensor` (inside a compiled function: the blurred baselines of DeepLIFT
  and integrated gradients).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from scipy import ndimage

__all__ = ["target_score", "softmax", "target_probability", "top_k_mask", "rank_pixels",
           "TIE_RULES", "blur", "blur_tensor"]

TIE_RULES = ("index", "seeded")


def target_score(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """(N,) the logit of each row's target class: ``logits[i, targets[i]]``."""
    return tf.gather(logits, targets, batch_dims=1)


def softmax(logits: Any) -> np.ndarray:
    """Class probabilities (N, classes): the softmax of max-shifted logits, computed in the
    logits' floating precision (float64 for any other input)."""
    z = np.asarray(logits)
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def target_probability(probabilities: np.ndarray, targets: Any) -> np.ndarray:
    """(N,) the probability of each row's target class."""
    t = np.asarray(targets, np.int64)
    return np.asarray(probabilities)[np.arange(len(t)), t]


def top_k_mask(scores: np.ndarray, count: int) -> np.ndarray:
    """Boolean, shape of ``scores`` (N, ...): the ``count`` highest scores of each row, ties
    broken by the lower flat index (tie rule ``"index"``), so a row has exactly ``count``.

    Linear time per row (``np.partition``): every score above the ``count``-th largest is taken,
    then the first of the scores equal to it in raster order.
    """
    s = np.asarray(scores)
    n = len(s)
    flat = s.reshape(n, -1)
    p = flat.shape[1]
    if count <= 0:
        return np.zeros(s.shape, bool)
    if count >= p:
        return np.ones(s.shape, bool)
    kth = np.partition(flat, p - count, axis=1)[:, p - count][:, None]
    above = flat > kth
    tied = flat == kth
    need = count - above.sum(axis=1, keepdims=True)
    return (above | (tied & (np.cumsum(tied, axis=1) <= need))).reshape(s.shape)


def rank_pixels(maps: np.ndarray, tie: str = "index", seeds: Any = None,
                salt: int = 0) -> np.ndarray:
    """Flat pixel indices (N, P) of each map from the most to the least relevant (float64).

    ``tie="index"``: equal values in raster order (a stable sort). ``tie="seeded"``: equal values
    in a random order drawn from ``np.random.default_rng([seeds[i], salt])`` per image.
    """
    if tie not in TIE_RULES:
        raise ValueError(f"tie must be one of {TIE_RULES}, got {tie!r}")
    n = len(maps)
    flat = np.asarray(maps, np.float64).reshape(n, -1)
    if tie == "index":
        return np.argsort(-flat, axis=1, kind="stable")
    if seeds is None:
        raise ValueError("rank_pixels: tie='seeded' needs one seed per map")
    order = np.empty(flat.shape, dtype=np.int64)
    for i in range(n):
        rand = np.random.default_rng([int(seeds[i]), int(salt)]).random(flat.shape[1])
        order[i] = np.lexsort((rand, -flat[i]))
    return order


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over the two spatial axes of (N, H, W, C) or (H, W, C) images: σ in pixels,
    ``reflect`` borders (edge pixels repeated), kernel radius 4σ (``scipy.ndimage``); the
    image's dtype is kept."""
    x = np.asarray(images)
    spatial = (0, sigma, sigma, 0) if x.ndim == 4 else (sigma, sigma, 0)
    return ndimage.gaussian_filter(x, sigma=spatial, mode="reflect")


def blur_tensor(x: tf.Tensor, sigma: float) -> tf.Tensor:
    """In a graph: separable Gaussian blur of (N, H, W, C) images, mirror padding (TF's
    ``REFLECT``), radius ⌈3σ⌉ (capped so the padding fits the image). The blurred baselines of
    DeepLIFT and integrated gradients, built inside their compiled functions."""
    h, w = int(x.shape[1]), int(x.shape[2])
    radius = int(min(np.ceil(3 * sigma), h - 1, w - 1))
    if sigma <= 0 or radius < 1:
        return x
    t = np.arange(-radius, radius + 1, dtype=np.float32)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k = tf.constant(k / k.sum(), tf.float32)
    c = int(x.shape[-1])
    xp = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    kh = tf.tile(tf.reshape(k, (-1, 1, 1, 1)), [1, 1, c, 1])
    kw = tf.tile(tf.reshape(k, (1, -1, 1, 1)), [1, 1, c, 1])
    xp = tf.nn.depthwise_conv2d(xp, kh, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(xp, kw, [1, 1, 1, 1], "VALID")
