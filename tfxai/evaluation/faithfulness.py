"""Faithfulness metrics: does the explanation reflect what the model does?

* :class:`Infidelity` [Yeh, Hsieh, Suggala, Inouye & Ravikumar 2019, "On the (In)fidelity and
  Sensitivity of Explanations"]: E_I[(Iᵀ Φ(x) − (F(x) − F(x − I)))²] with Gaussian I.
* ROAD lives in :mod:`tfxai.evaluation.road` (it shares this module's helpers).
* :class:`Deletion` and :class:`Insertion` [Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling
  for Explanation of Black-box Models"]: area under the probability curve while pixels are deleted
  (set to 0) or inserted into a blurred canvas in the order of the map.

Units: images are RGB 0..255; perturbation sizes are given in [0, 1]-scaled input units, so
``sigma=0.003`` means a standard deviation of 0.003·255 in 0..255 units (docs/conventions.md, Units).
All perturbed images of a batch go through the model in batched forward passes of ``batch_size``
images (an execution parameter, not recorded).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from tfxai.attribution.base import Param, above
from tfxai.evaluation.base import EvalContext, Metric, MetricOutput, register_metric
from tfxai.primitives import blur, rank_pixels, softmax, target_probability

__all__ = [
    "Infidelity",
    "Deletion",
    "Insertion",
    "curve_auc",
    "target_logits_fn",
]

_SALT_INFIDELITY = 1_101
_SALT_ORDER = 1_103

BATCH_SIZE_PARAM = Param(64, int, "perturbed images per forward pass", **above(0), hashed=False)


# --------------------------------------------------------------------------------------- helpers


def target_logits_fn(backbone: Any) -> Any:
    """A compiled ``(images, targets) → target logits`` (the backbone's, built once)."""
    return backbone.compiled_target_logits()


def batched_target_logits(backbone: Any, images: np.ndarray, targets: np.ndarray,
                          batch_size: int) -> np.ndarray:
    """Target logits (M,) of M images in forward passes of ``batch_size`` images."""
    fn = target_logits_fn(backbone)
    out = [
        fn(tf.constant(images[i : i + batch_size], tf.float32),
           tf.constant(targets[i : i + batch_size], tf.int32)).numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def batched_scores(backbone: Any, images: np.ndarray, targets: np.ndarray, batch_size: int,
                   measure: str = "probability") -> np.ndarray:
    """Target-class probability (softmax of the logits) or top-1 correctness (1.0/0.0), (M,)."""
    logits = backbone.predict_logits(images, batch_size=batch_size).astype(np.float64)
    if measure == "accuracy":
        return (logits.argmax(axis=1) == targets).astype(np.float64)
    return target_probability(softmax(logits), targets)


def curve_auc(fractions: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Trapezoidal area under curves ``values`` (..., K) over ``fractions`` (K,), divided by the
    width of the fraction range, so a constant curve at v has area v."""
    x = np.asarray(fractions, np.float64)
    width = x[-1] - x[0]
    v = np.asarray(values, np.float64)
    area = ((v[..., 1:] + v[..., :-1]) * 0.5 * np.diff(x)).sum(axis=-1)
    return area / (width if width > 0 else 1.0)


def ranked_order(maps: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Pixel indices (N, H·W) from most to least relevant; ties broken by a seeded permutation."""
    return rank_pixels(maps, tie="seeded", seeds=seeds, salt=_SALT_ORDER)


def notes_for(ok: np.ndarray, bad_note: str) -> list[str]:
    return ["" if o else bad_note for o in ok]


# --------------------------------------------------------------------------------------- infidelity


@register_metric
class Infidelity(Metric):
    """Infidelity [Yeh et al. 2019]: E_I[(Iᵀ Φ(x) − (F(x) − F(x − I)))²] (lower is better).

    * I ∼ N(0, σ²) per input value, σ in [0, 1] input units (σ = 0.003 → 0.003·255 in 0..255 units);
      ``n_samples`` draws per image, derived from the image's seed.
    * F is the pre-softmax logit of the target class.
    * Φ is the raw attribution (signed, in input space). An (N, H, W) attribution broadcasts over the
      three channels, so Iᵀ Φ = Σ_{h,w,c} I_hwc Φ_hw.
    * ``normalize=True`` (the default) first scales Φ by the optimal β = E[Iᵀ Φ · ΔF] / E[(Iᵀ Φ)²]
      (as Captum does), which makes the score invariant to the scale of Φ: raw infidelity ranks
      methods by the size of their attributions (saliency's are tiny, Grad-CAM's large) rather
      than by their faithfulness, so only the normalised form compares methods.
      ``normalize=False`` is the raw definition of Yeh et al.

    Iᵀ Φ is a BLAS product in the attribution's precision (float32; float64 when Φ is float64); ΔF,
    β and the mean are float64. All n_samples × N perturbed images go
    through the model in batched forward passes. An image whose prediction becomes non-finite under a
    perturbation gets NaN with a note.
    """

    name = "infidelity"
    summary = "E[(IᵀΦ − (F(x) − F(x−I)))²], I ∼ N(0, σ²), F = target logit [Yeh 2019]"
    needs_model = True
    stochastic = True
    params_spec = {
        "sigma": Param(0.003, float, "std of the Gaussian perturbation, [0, 1] input units",
                       **above(0)),
        "n_samples": Param(50, int, "perturbations per image (Captum: n_perturb_samples)",
                           **above(0)),
        "normalize": Param(True, bool, "scale Φ by the optimal β before scoring (Captum), so "
                           "methods of different scales compare; false: the raw Yeh et al. form"),
        "batch_size": BATCH_SIZE_PARAM,
    }

    def noise(self, seed: int, shape: tuple[int, ...]) -> np.ndarray:
        """The (n_samples, H, W, 3) perturbations of one image, in 0..255 units."""
        rng = np.random.default_rng([int(seed), _SALT_INFIDELITY])
        n = self.params["n_samples"]
        sigma = self.params["sigma"] * 255.0
        return rng.standard_normal((n, *shape), dtype=np.float32) * np.float32(sigma)

    def _chunks(self, ctx: EvalContext) -> Iterator[np.ndarray]:
        """Indices of images whose perturbations fill about one forward batch."""
        per = max(1, self.params["batch_size"] // self.params["n_samples"])
        for i in range(0, len(ctx), per):
            yield np.arange(i, min(i + per, len(ctx)))

    def _target_logits(self, ctx: EvalContext) -> np.ndarray:
        """F(x), float64 (N,): shared with every method of the batch."""
        bs = self.params["batch_size"]
        return ctx.shared.per_image(
            ("target logit", bs), ctx.images,
            lambda miss: batched_target_logits(ctx.backbone, ctx.images[miss], ctx.targets[miss],
                                               bs).astype(np.float64),
            backbone=ctx.backbone, targets=ctx.targets)

    def _perturbed_logits(self, ctx: EvalContext, idx: np.ndarray, noise: np.ndarray
                          ) -> np.ndarray:
        """F(x − I), float64 (len(idx), n_samples), for the images ``idx`` and their
        ``noise``. It depends on the image, target, seed, σ and n, never on Φ: computed once per
        batch and reused by every other method (and by ``normalize`` true and false)."""
        n, bs = self.params["n_samples"], self.params["batch_size"]
        shape = ctx.images.shape[1:]

        def forward(miss: np.ndarray) -> np.ndarray:
            pert = (ctx.images[idx[miss], None] - noise[miss]).reshape(-1, *shape)
            f = batched_target_logits(ctx.backbone, pert, np.repeat(ctx.targets[idx[miss]], n), bs)
            return f.astype(np.float64).reshape(len(miss), n)

        kind = ("infidelity F(x-I)", _SALT_INFIDELITY, self.params["sigma"], n, bs)
        return ctx.shared.per_image(kind, ctx.images[idx], forward, backbone=ctx.backbone,
                                    targets=ctx.targets[idx], seeds=ctx.seeds[idx])

    def _evaluate(self, ctx: EvalContext) -> MetricOutput:
        n_img = len(ctx)
        n = self.params["n_samples"]
        phi = np.asarray(ctx.attributions)
        # the dot products run in BLAS in the attribution's precision (float32, or float64 when
        # given float64); ΔF and the means are float64
        dtype = np.float64 if phi.dtype == np.float64 else np.float32
        phi = phi.astype(dtype, copy=False)
        if phi.ndim == 3:
            phi = phi[..., None]
        if phi.shape[:3] != ctx.images.shape[:3]:
            raise ValueError(
                f"{self.name}: attributions of shape {phi.shape} do not match images "
                f"{ctx.images.shape}"
            )
        phi = np.broadcast_to(phi, ctx.images.shape).reshape(n_img, -1)
        f_x = self._target_logits(ctx)
        dots = np.empty((n_img, n))
        delta_f = np.empty((n_img, n))
        for idx in self._chunks(ctx):
            noise = np.stack([self.noise(ctx.seeds[i], ctx.images.shape[1:]) for i in idx])
            delta_f[idx] = f_x[idx, None] - self._perturbed_logits(ctx, idx, noise)
            flat = noise.reshape(len(idx), n, -1)
            dots[idx] = np.matmul(flat.astype(dtype, copy=False), phi[idx][..., None])[..., 0]
        if self.params["normalize"]:
            den = (dots**2).mean(axis=1)
            beta = np.where(den > 0, (dots * delta_f).mean(axis=1) / np.where(den > 0, den, 1), 0.0)
            dots = dots * beta[:, None]
        values = ((dots - delta_f) ** 2).mean(axis=1)
        ok = np.isfinite(delta_f).all(axis=1) & np.isfinite(values)
        values = np.where(ok, values, np.nan)
        return MetricOutput(
            values={"": values},
            notes={"": notes_for(ok, "non-finite prediction under perturbation")},
        )


# --------------------------------------------------------------------------------------- deletion / insertion


class _PixelCurve(Metric):
    """Shared core of deletion and insertion [Petsiuk et al. 2018]."""

    needs_model = True
    params_spec = {
        "steps": Param(20, int, "number of steps from 0 % to 100 % of the pixels",
                       **above(0)),
        "batch_size": BATCH_SIZE_PARAM,
    }
    #: True: start from the blurred image and insert pixels; False: delete pixels (set to 0)
    insert: bool = False

    def _evaluate(self, ctx: EvalContext) -> MetricOutput:
        steps = self.params["steps"]
        n_img, h, w = len(ctx), *ctx.images.shape[1:3]
        fractions = np.linspace(0.0, 1.0, steps + 1)
        counts = np.round(fractions * h * w).astype(np.int64)
        order = ranked_order(ctx.maps(scale="none"), ctx.seeds)
        # rank of every pixel: pixel j is changed at step k when rank[j] < counts[k]
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(h * w)[None], axis=1)
        canvas = None
        if self.insert:
            sig = self.params["blur_sigma"]
            canvas = blur(ctx.images, sig)
        per = max(1, self.params["batch_size"] // (steps + 1))
        scores = np.empty((n_img, steps + 1))
        for start in range(0, n_img, per):
            sl = slice(start, min(start + per, n_img))
            # (k, steps+1, H, W, 1): pixel j is changed at step s when rank[j] < counts[s]
            changed = (rank[sl, None, :] < counts[None, :, None]).reshape(-1, steps + 1, h, w, 1)
            x = ctx.images[sl, None]
            if canvas is not None:
                seq = np.where(changed, x, canvas[sl, None])
            else:
                seq = np.where(changed, np.float32(0.0), x)
            scores[sl] = batched_scores(
                ctx.backbone, seq.reshape(-1, h, w, 3).astype(np.float32),
                np.repeat(ctx.targets[sl], steps + 1), self.params["batch_size"],
            ).reshape(-1, steps + 1)
        ok = np.isfinite(scores).all(axis=1)
        pct = 100.0 * fractions
        return MetricOutput(
            values={"": np.where(ok, curve_auc(fractions, scores), np.nan)},
            notes={"": notes_for(ok, "non-finite prediction on a perturbed image")},
            extras={"": [[[float(p), float(s)] for p, s in zip(pct, row, strict=True)]
                         for row in scores]},
        )


@register_metric
class Deletion(_PixelCurve):
    """Deletion [Petsiuk et al. 2018]: area under the target-probability curve as the pixels are set
    to 0 (black) in decreasing order of the map, in ``steps`` equal steps from 0 % to 100 % (lower is
    better). The curve (``[percentage, probability]`` pairs) is stored in ``extras``."""

    name = "deletion"
    summary = "AUC of the target probability as top-ranked pixels are set to 0 [Petsiuk 2018]"
    insert = False


@register_metric
class Insertion(_PixelCurve):
    """Insertion [Petsiuk et al. 2018]: area under the target-probability curve as the original pixels
    are inserted, in decreasing order of the map, into a Gaussian-blurred copy of the image (σ =
    ``blur_sigma`` pixels), in ``steps`` equal steps (higher is better). The curve is stored in
    ``extras``."""

    name = "insertion"
    summary = "AUC of the target probability as top-ranked pixels are inserted into a blur [Petsiuk 2018]"
    insert = True
    params_spec = {
        **_PixelCurve.params_spec,
        "blur_sigma": Param(5.0, float, "std in pixels of the Gaussian blur of the insertion canvas",
                            **above(0)),
    }
