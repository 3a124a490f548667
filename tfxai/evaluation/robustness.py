"""Robustness metrics: is the explanation stable under small or natural changes of the input?

* :class:`MaxSensitivity`, :class:`AvgSensitivity` [Yeh, Hsieh, Suggala, Inouye & Ravikumar 2019, "On
  the (In)fidelity and Sensitivity of Explanations"]: the largest / mean change ‖Φ(x + δ) − Φ(x)‖₂ of
  the raw attribution over δ drawn uniformly from the L∞ ball of radius r.
* :class:`SSIMAugmentation` [Wang, Bovik, Sheikh & Simoncelli 2004, "Image Quality Assessment: From Error
  Visibility to Structural Similarity"; Erdem 2021]: SSIM between the map of an image and the map of
  its augmented version (rotations and G'MIC filters, :mod:`tfxai.evaluation.augment`).

Units: images are RGB 0..255; the radius r is given in [0, 1] input units (r = 0.02 means 0.02·255 in
0..255 units, docs/conventions.md, Units).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfxai.attribution.base import MAP_REDUCE, MAP_SCALE, Param, above
from tfxai.evaluation import augment as aug
from tfxai.evaluation.base import EvalContext, Metric, MetricOutput, RerunMetric, register_metric
from tfxai.primitives import target_probability

__all__ = ["MaxSensitivity", "AvgSensitivity", "SSIMAugmentation", "ssim", "GATE"]

_SALT_SENSITIVITY = 2_201

#: the prediction gate of ``ssim_augmentation``: |P_c(x) − P_c(aug(x))| must be below this
GATE = 0.05


def _probabilities(backbone: Any, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return target_probability(backbone.predict(images), targets).astype(np.float64)


# --------------------------------------------------------------------------------------- sensitivity


class _Sensitivity(RerunMetric):
    """Shared core of max- and avg-sensitivity.

    Variants: ``""`` is the absolute sensitivity (in the units of the raw attribution);
    ``"relative"`` divides it by ‖Φ(x)‖₂ (NaN with a note when Φ(x) = 0).
    """

    variants = ("", "relative")
    params_spec = {
        "radius": Param(0.02, float, "L∞ radius of the perturbation, [0, 1] input units",
                        **above(0)),
        "n_samples": Param(10, int, "perturbations per image", **above(0)),
    }
    reduce: str = "max"

    def perturbations(self, seed: int, shape: tuple[int, ...]) -> np.ndarray:
        """The (n_samples, H, W, 3) perturbations δ ∼ U([−r, r]^d) of one image, in 0..255 units."""
        rng = np.random.default_rng([int(seed), _SALT_SENSITIVITY])
        r = self.params["radius"] * 255.0
        n = self.params["n_samples"]
        return rng.uniform(-r, r, size=(n, *shape)).astype(np.float32)

    def _evaluate(self, ctx: EvalContext) -> MetricOutput:
        n_img, n = len(ctx), self.params["n_samples"]
        delta = np.stack([self.perturbations(s, ctx.images.shape[1:]) for s in ctx.seeds])
        stacked = (ctx.images[:, None] + delta).reshape(-1, *ctx.images.shape[1:])
        # one batched call: the perturbed copies of an image keep its seed, so a stochastic method
        # draws the same noise for x and x + δ
        new = ctx.attributer.attribute(stacked, np.repeat(ctx.targets, n),
                                       seeds=np.repeat(ctx.seeds, n))
        phi = np.asarray(ctx.attributions).reshape(n_img, -1)
        new = np.asarray(new).reshape(n_img, n, -1)
        if new.shape[2] != phi.shape[1]:
            raise ValueError(
                f"{self.name}: re-attribution shape {new.shape} does not match the given "
                f"attributions {np.shape(ctx.attributions)}"
            )
        # per image (not per sample), in float64
        dist = np.stack([
            np.linalg.norm(new[i].astype(np.float64) - phi[i].astype(np.float64), axis=1)
            for i in range(n_img)
        ]) if n_img else np.zeros((0, n))
        value = dist.max(axis=1) if self.reduce == "max" else dist.mean(axis=1)
        ok = np.isfinite(dist).all(axis=1)
        norm = np.linalg.norm(phi.astype(np.float64), axis=1)
        rel_ok = ok & (norm > 0)
        notes = ["" if o else "non-finite attribution of a perturbed input" for o in ok]
        rel_notes = [
            nt or ("" if r else "zero attribution norm: relative sensitivity undefined")
            for nt, r in zip(notes, rel_ok, strict=True)
        ]
        return MetricOutput(
            values={
                "": np.where(ok, value, np.nan),
                "relative": np.where(rel_ok, value / np.where(norm > 0, norm, 1.0), np.nan),
            },
            notes={"": notes, "relative": rel_notes},
        )


@register_metric
class MaxSensitivity(_Sensitivity):
    """Max-sensitivity [Yeh et al. 2019]: max over ``n_samples`` δ ∼ U(L∞ ball of radius r) of
    ‖Φ(x + δ) − Φ(x)‖₂ on the raw attribution (lower is better).

    r is in [0, 1] input units (default 0.02 → 0.02·255 in 0..255 units); the perturbed images are
    not clipped to 0..255. All N × n_samples perturbed images are re-attributed in one batched call
    to the attributer (so stored-only attributions are refused). Variants: ``""`` (absolute) and
    ``"relative"`` (divided by ‖Φ(x)‖₂).
    """

    name = "max_sensitivity"
    summary = "max over δ ∼ U(L∞ ball, r) of ‖Φ(x+δ) − Φ(x)‖₂; relative: / ‖Φ(x)‖₂ [Yeh 2019]"
    reduce = "max"


@register_metric
class AvgSensitivity(_Sensitivity):
    """Avg-sensitivity [Yeh et al. 2019]: :class:`MaxSensitivity` with the mean over the samples
    instead of the max (lower is better)."""

    name = "avg_sensitivity"
    summary = "mean over δ ∼ U(L∞ ball, r) of ‖Φ(x+δ) − Φ(x)‖₂; relative: / ‖Φ(x)‖₂ [Yeh 2019]"
    reduce = "mean"


# --------------------------------------------------------------------------------------- SSIM


def ssim(a: np.ndarray, b: np.ndarray, data_range: float, win_size: int = 11) -> np.ndarray:
    """SSIM [Wang et al. 2004] of pairs of (N, H, W) maps with scikit-image.

    11×11 uniform window (``gaussian_weights=False``), K1 = 0.01, K2 = 0.03, the given data range.
    The window shrinks to the largest odd size that fits maps smaller than 11 pixels.
    """
    from skimage.metrics import structural_similarity

    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    win = min(win_size, *(s if s % 2 else s - 1 for s in a.shape[1:3]))
    return np.array([
        structural_similarity(x, y, win_size=win, K1=0.01, K2=0.03, gaussian_weights=False,
                              data_range=data_range)
        for x, y in zip(a, b, strict=True)
    ])


@register_metric
class SSIMAugmentation(Metric):
    """Explanation robustness to augmentations [Erdem 2021], measured with SSIM [Wang et al. 2004].

    For each augmentation (one ``variant`` each: the four rotations and the five G'MIC filters of
    :mod:`tfxai.evaluation.augment`) the augmented images are re-attributed (one batched call per
    variant) and SSIM(map(x), map(aug(x))) is computed with an 11×11 uniform window, K1 = 0.01,
    K2 = 0.03 (higher is better).

    * Maps: by default the method's own channel reduction and absolute value, **not** rescaled per
      image (``scale="none"``), so that all maps of a model×method share one scale. The map
      convention can be set for every method alike — ``map_reduce`` (``sum``, ``max_abs``,
      ``l2``, ``mean``), ``map_absolute`` (true/false) and ``map_scale`` (``none``, ``max``,
      ``minmax``, as :func:`tfxai.to_map`) — so that methods are compared under one convention;
      set values are recorded in ``metric_params`` (the defaults are not, so results written
      before these parameters existed keep theirs).
    * Data range L: the largest |map| value of the model×method over the dataset, computed in a
      first pass (:meth:`dataset_statistic` / :meth:`combine_statistics`); it is reported in
      ``MetricOutput.recorded["data_range"]``. Without a first pass (``dataset_stat`` is None) the
      batch's own maximum is used and the note says so.
    * Gate: a pair is compared only when |P_c(x) − P_c(aug(x))| < 0.05 on the target-class
      probability; otherwise the value is NaN and the note gives ΔP.
    * Rotations: the original map is rotated by the same angle (zero fill) before comparison,
      i.e. SSIM(rotate(map(x)), map(rotate(x))).
    """

    name = "ssim_augmentation"
    summary = "SSIM(map(x), map(aug(x))) for rotations and G'MIC filters, gated at |ΔP|<0.05 [Erdem]"
    needs_model = True
    needs_attributer = True
    needs_dataset_pass = True
    variants = tuple(aug.AUGMENTATIONS)
    params_spec = {
        "gate": Param(GATE, float, "max |ΔP| of the target probability for a pair to be compared",
                      **above(0)),
        "map_reduce": Param(None, str, "channel reduction of the maps (default: the method's)",
                            choices=MAP_REDUCE, nullable=True),
        "map_absolute": Param(None, bool, "take |map| (default: the method's)", nullable=True),
        "map_scale": Param("none", str, "per-map scaling before SSIM: none (one data range L per "
                           "model×method), max, minmax", choices=MAP_SCALE),
    }

    def metric_params(self) -> dict[str, Any]:
        """Recorded parameters: the map convention only where it is set (see the class doc)."""
        out = super().metric_params()
        for name, default in (("map_reduce", None), ("map_absolute", None), ("map_scale", "none")):
            if out.get(name) == default:
                out.pop(name, None)
        return out

    def map_convention(self) -> dict[str, Any]:
        """The :func:`tfxai.to_map` overrides of this metric's maps."""
        out: dict[str, Any] = {"scale": self.params["map_scale"]}
        if self.params["map_reduce"] is not None:
            out["reduce"] = self.params["map_reduce"]
        if self.params["map_absolute"] is not None:
            out["absolute"] = self.params["map_absolute"]
        return out

    def _maps(self, attributer: Any, raw: np.ndarray) -> np.ndarray:
        if attributer is not None and hasattr(attributer, "to_map"):
            return attributer.to_map(raw, **self.map_convention())
        from tfxai.attribution.base import to_map

        return to_map(raw, **self.map_convention())

    def dataset_statistic(self, attributer: Any, attributions: np.ndarray) -> float:
        """Max |map| of a batch of raw attributions (finite values only; NaN when none)."""
        m = np.abs(self._maps(attributer, np.asarray(attributions)))
        m = m[np.isfinite(m)]
        return float(m.max()) if m.size else float("nan")

    def combine_statistics(self, stats: list[Any]) -> float:
        """The data range L: the max over the batches' statistics."""
        vals = np.asarray([s for s in stats if s is not None and np.isfinite(s)], np.float64)
        return float(vals.max()) if vals.size else float("nan")

    def _data_range(self, ctx: EvalContext, maps: np.ndarray) -> tuple[float, str]:
        stat = ctx.dataset_stat
        if stat is not None and np.isfinite(stat) and stat > 0:
            return float(stat), ""
        batch_max = float(np.abs(maps).max()) if maps.size else 0.0
        return (batch_max if batch_max > 0 else 1.0,
                "data range L from this batch (no dataset pass)")

    @staticmethod
    def _shared_probabilities(ctx: EvalContext, images: np.ndarray, variant: str) -> np.ndarray:
        """P(target | images) of the (augmented) batch, keyed by the original image and the
        variant: the gate is the same for every method, so it is computed once per batch."""
        return ctx.shared.per_image(
            ("gate probability", variant), ctx.images,
            lambda miss: _probabilities(ctx.backbone, images[miss], ctx.targets[miss]),
            backbone=ctx.backbone, targets=ctx.targets)

    def _evaluate(self, ctx: EvalContext) -> MetricOutput:
        n_img = len(ctx)
        maps = self._maps(ctx.attributer, ctx.attributions).astype(np.float64)
        data_range, range_note = self._data_range(ctx, maps)
        p_orig = self._shared_probabilities(ctx, ctx.images, "")
        out = MetricOutput(values={}, notes={}, recorded={"data_range": data_range})
        gate = self.params["gate"]
        for variant in self.variants:
            values = np.full(n_img, np.nan)
            notes = [range_note] * n_img
            x_aug = ctx.shared.per_image(("augment", variant), ctx.images,
                                         lambda miss, v=variant: aug.augment(ctx.images[miss], v))
            p_aug = self._shared_probabilities(ctx, x_aug, variant)
            dp = np.abs(p_orig - p_aug)
            passed = np.isfinite(dp) & (dp < gate)
            for i in np.flatnonzero(~passed):
                notes[i] = (
                    "non-finite prediction on the augmented image" if not np.isfinite(dp[i])
                    else f"gated out: |ΔP| = {dp[i]:.3f} ≥ {gate:g}"
                )
            idx = np.flatnonzero(passed)
            if len(idx):
                raw_aug = ctx.attributer.attribute(x_aug[idx], ctx.targets[idx], seeds=ctx.seeds[idx])
                m_aug = self._maps(ctx.attributer, raw_aug).astype(np.float64)
                m_ref = maps[idx]
                if aug.is_rotation(variant):
                    m_ref = aug.rotate(m_ref, aug.rotation_angle(variant)).astype(np.float64)
                finite = np.isfinite(m_aug).reshape(len(idx), -1).all(axis=1)
                if finite.any():
                    values[idx[finite]] = ssim(m_ref[finite], m_aug[finite], data_range)
                for i in idx[~finite]:
                    notes[i] = "non-finite attribution of the augmented image"
            out.values[variant] = values
            out.notes[variant] = notes
        return out
