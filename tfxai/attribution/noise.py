"""Noise tunnels: average any method over noisy copies of the input.

For an inner method M and ε_k ∼ N(0, σ²) (σ in [0, 1] units, i.e. σ·255 on 0..255 images; the
noisy images are not clipped), k = 1..n:

* :class:`SmoothGrad` (``method+smoothgrad``): mean_k M(x + ε_k)
  [Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise"];
* :class:`SmoothGradSq` (``method+smoothgrad_sq``): mean_k M(x + ε_k)²
  [Hooker et al. 2019, "A Benchmark for Interpretability Methods in Deep Neural Networks"];
* :class:`VarGrad` (``method+vargrad``): the population variance over k of M(x + ε_k)
  [Adebayo et al. 2018, "Local Explanation Methods for Deep Neural Networks Lack Sensitivity
  to Parameter Values"].

Noise sample k of image i is drawn from the seed pair (seed_i, k), and a stochastic inner method
gets a seed derived from (seed_i, k): results do not depend on batching. ``seed`` and
``batch_size`` given to ``method+tunnel`` belong to the tunnel. The n·N noisy images
are fed to the inner method in chunks of ``internal_batch_size`` (any mix of images), so memory
is bounded by the chunk whatever ``n``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

from tfxai.attribution.base import Attributer, Param, above, at_least, register_tunnel
from tfxai.attribution.gradients import rows_normal

__all__ = ["NoiseTunnel", "SmoothGrad", "SmoothGradSq", "VarGrad"]

_SALT_TUNNEL = 0x5A00_0000
_SEED_STRIDE = 1_000_003

#: each tunnel's statistic of M(x + ε_k) over k, from the means of M and M² (population
#: variance, clipped at 0 against round-off)
REDUCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mean": lambda mean, mean_sq: mean,
    "mean_sq": lambda mean, mean_sq: mean_sq,
    "variance": lambda mean, mean_sq: np.maximum(mean_sq - mean * mean, 0.0),
}


class NoiseTunnel(Attributer):
    """Base of the tunnels: draws the noisy copies, runs the inner method, keeps Σ M and Σ M².

    Built by :func:`tfxai.get_attributer` for ``"<method>+<tunnel>"``: ``Tunnel(inner, **params)``.
    """

    #: the statistic over the n samples, a key of :data:`REDUCTIONS`
    reduction: ClassVar[str] = ""
    stochastic = True
    params_spec = {
        "n_samples": Param(10, int, "noisy samples per image (Captum: nt_samples)", **at_least(1)),
        "sigma": Param(0.15, float, "noise σ in [0,1] units (σ·255 on 0..255 images)",
                       **at_least(0)),
        "internal_batch_size": Param(16, int, "noisy images per call of the inner method",
                                     **above(0),
                                     hashed=False),
        # listed here so that get_attributer routes them to the tunnel, not the inner method
        "seed": Param(0, int, "base random seed (drives the noise and a stochastic inner method)"),
        "batch_size": Param(16, int, "images per chunk", **above(0), hashed=False),
    }

    def __init__(self, inner: Attributer, **params: Any) -> None:
        if isinstance(inner, NoiseTunnel):
            raise ValueError(f"{self.name}: cannot wrap a noise tunnel ({inner.key})")
        self.inner = inner
        self.map_defaults = dict(inner.map_defaults)
        self.resolution = inner.resolution
        self.rerunnable = inner.rerunnable
        super().__init__(inner.backbone, **params)

    def _setup(self) -> None:
        h, w = self.backbone.input_size
        self._noisy = tf.function(
            self._make_noisy,
            input_signature=[
                tf.TensorSpec((None, h, w, 3), tf.float32),
                tf.TensorSpec((None,), tf.int64),
                tf.TensorSpec((None,), tf.int32),
            ],
        )

    @property
    def key(self) -> str:
        return f"{self.inner.key}+{self.name}"

    def check_background_ids(self, evaluated_ids: Sequence[Any]) -> None:
        """The inner method's reference set is checked (SHAP inside a tunnel)."""
        self.inner.check_background_ids(evaluated_ids)

    def method_params(self) -> dict[str, Any]:
        """The tunnel's recorded parameters with the inner method's nested under ``inner``."""
        return {**super().method_params(), "inner": self.inner.method_params()}

    # ------------------------------------------------------------------ noise
    def _make_noisy(self, x: tf.Tensor, seeds: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
        """x + σ·255·ε for rows (x, seed, sample index k)."""
        eps = rows_normal(seeds, _SALT_TUNNEL + tf.cast(k, tf.int64), x.shape[1:])
        return x + self.params["sigma"] * 255.0 * eps

    def noise(self, images: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """The noisy copies (N, n, H, W, 3) for ``seeds`` as passed to ``_attribute``
        (base seed already added). For tests and pictures; :meth:`attribute` never builds them
        all at once."""
        n = self.params["n_samples"]
        x = np.repeat(np.asarray(images, np.float32), n, axis=0)
        s = np.repeat(np.asarray(seeds, np.int64), n)
        k = np.tile(np.arange(n, dtype=np.int32), len(images))
        return self._noisy(x, s, k).numpy().reshape(len(images), n, *x.shape[1:])

    # ------------------------------------------------------------------ core
    def _attribute(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> np.ndarray:
        n, chunk = self.params["n_samples"], self.params["internal_batch_size"]
        xs = x.numpy()
        ts = targets.numpy()
        count = len(xs)
        inner_base = int(self.inner.params.get("seed", 0))
        total = count * n
        s1 = s2 = None
        for start in range(0, total, chunk):  # chunks of noisy images, not single samples
            rows = np.arange(start, min(start + chunk, total))
            img, k = rows // n, (rows % n).astype(np.int32)
            noisy = self._noisy(tf.constant(xs[img]), tf.constant(seeds[img]), tf.constant(k))
            inner_seeds = seeds[img] * _SEED_STRIDE + k + inner_base
            out = self.inner.attribute_chunk(noisy, tf.constant(ts[img], tf.int32), inner_seeds)
            out = np.asarray(out.numpy() if isinstance(out, tf.Tensor) else out, np.float64)
            if s1 is None:
                s1 = np.zeros((count, *out.shape[1:]), np.float64)
                s2 = np.zeros_like(s1)
            uniq, first = np.unique(img, return_index=True)  # rows are sorted by image
            s1[uniq] += np.add.reduceat(out, first, axis=0)
            s2[uniq] += np.add.reduceat(out * out, first, axis=0)
        return self._reduce(s1 / n, s2 / n).astype(np.float32)

    def _reduce(self, mean: np.ndarray, mean_sq: np.ndarray) -> np.ndarray:
        """The tunnel's statistic from mean_k M and mean_k M² (float64)."""
        if self.reduction not in REDUCTIONS:
            raise NotImplementedError(f"{type(self).__name__}: no reduction {self.reduction!r}")
        return REDUCTIONS[self.reduction](mean, mean_sq)


@register_tunnel
class SmoothGrad(NoiseTunnel):
    """SmoothGrad [Smilkov et al. 2017]: mean_k M(x + ε_k)."""

    name = "smoothgrad"
    summary = "mean of M(x+ε), ε∼N(0,σ²) [Smilkov 2017]"
    reduction = "mean"


@register_tunnel
class SmoothGradSq(NoiseTunnel):
    """SmoothGrad-Squared [Hooker et al. 2019]: mean_k M(x + ε_k)² (non-negative)."""

    name = "smoothgrad_sq"
    summary = "mean of M(x+ε)², ε∼N(0,σ²) [Smilkov 2017; Hooker 2019]"
    reduction = "mean_sq"


@register_tunnel
class VarGrad(NoiseTunnel):
    """VarGrad [Adebayo et al. 2018]: the variance over k of M(x + ε_k) (population variance,
    divided by n; non-negative)."""

    name = "vargrad"
    summary = "variance of M(x+ε), ε∼N(0,σ²) [Adebayo 2018]"
    reduction = "variance"
