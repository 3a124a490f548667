"""Pointing metrics: is the map's mass on the annotated object? Ground truth M and the map as in
:mod:`tfxai.evaluation.localisation` (all ↑).

* :class:`PointingGame`: is the map's maximum inside M [Zhang et al. 2018, "Top-down Neural
  Attention by Excitation Backprop"].
* :class:`EnergyPointingGame`: the share of the positive map energy inside M [Wang et al. 2020,
  "Score-CAM"].
* :class:`RelevanceRankAccuracy`: the share of the top-|M| pixels inside M [Arras et al. 2022,
  "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of neural network
  explanations"].
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import ndimage

from tfxai.attribution.base import Param, at_least
from tfxai.evaluation.base import (
    EvalContext,
    MetricOutput,
    register_metric,
)
from tfxai.evaluation.localisation import (
    MAP_AXES,
    MAP_PARAMS,
    MASK_PARAM,
    LocalisationMetric,
    safe_ratio,
)

__all__ = ["PointingGame", "EnergyPointingGame", "RelevanceRankAccuracy", "disc"]


def disc(radius: int) -> np.ndarray:
    """Boolean (2r+1, 2r+1) disc: offsets with dx² + dy² ≤ r²."""
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return xx**2 + yy**2 <= r**2


@register_metric
class PointingGame(LocalisationMetric):
    """Pointing game [Zhang et al. 2018]: 1 when the map's maximum lies in M, else 0.

    ``tolerance`` (pixels, default 0; Zhang et al. use 15): a hit when any pixel of M lies within
    Euclidean distance ``tolerance`` of the maximum (M is dilated by a disc of that radius).

    Ties (several pixels share the maximum value), ``ties``:

    * ``"mean"`` (default): the share of the tied maxima that hit, i.e. the expected hit under a
      uniformly random choice among them (1 or 0 when the maximum is unique);
    * ``"any"``: 1 when any tied maximum hits;
    * ``"first"``: the first maximum in raster order (``np.argmax``).

    A constant (or all-zero) map ties every pixel: with ``ties="mean"`` its value is the share of
    the image within tolerance of M (chance level), with a note.
    """

    name = "pointing_game"
    summary = "1 if the map's argmax lies in M (± tolerance px); ties: share of tied maxima [Zhang 2018]"
    params_spec: ClassVar[dict[str, Param]] = {
        "tolerance": Param(0, int, "hit radius in pixels around the maximum (Zhang et al.: 15)",
                           **at_least(0)),
        "ties": Param("mean", str, "tied maxima: mean (share that hit), any, first (raster order)",
                      choices=("mean", "any", "first")),
        "mask": MASK_PARAM,
        **MAP_PARAMS,
    }

    def _compute(self, m: np.ndarray, masks: np.ndarray, ctx: EvalContext) -> MetricOutput:
        r = self.params["tolerance"]
        target = masks
        if r > 0:
            target = ndimage.binary_dilation(masks, structure=disc(r)[None])
        n = len(m)
        flat = m.reshape(n, -1)
        tflat = target.reshape(n, -1)
        tied = flat == flat.max(axis=1, keepdims=True)
        ties = self.params["ties"]
        if ties == "mean":
            values = safe_ratio((tied & tflat).sum(axis=1), tied.sum(axis=1))
        elif ties == "any":
            values = (tied & tflat).any(axis=1).astype(np.float64)
        else:
            first = flat.argmax(axis=1)
            values = tflat[np.arange(n), first].astype(np.float64)
        n_tied = tied.sum(axis=1)
        notes = [f"{k} tied maxima" if 1 < k < flat.shape[1] else "" for k in n_tied]
        return MetricOutput(values={"": values}, notes={"": notes})


@register_metric
class EnergyPointingGame(LocalisationMetric):
    """Energy-based pointing game [Wang et al. 2020, Score-CAM]: Σ_M map⁺ / Σ map⁺.

    map⁺ = max(map, 0). A map without positive values (all-zero or all-negative) has no energy:
    value 0 with a note. A constant positive map gives |M| / (H·W).
    """

    name = "energy_pointing_game"
    summary = "Σ_M map⁺ / Σ map⁺: share of the positive map energy inside M [Wang 2020]"

    def _compute(self, m: np.ndarray, masks: np.ndarray, ctx: EvalContext) -> MetricOutput:
        pos = np.maximum(m, 0.0)
        total = pos.sum(axis=MAP_AXES)
        values = safe_ratio((pos * masks).sum(axis=MAP_AXES), total)
        notes = [
            "no positive map values" if t <= 0 and np.any(mi != 0) else ""
            for t, mi in zip(total, m, strict=True)
        ]
        return MetricOutput(values={"": values}, notes={"": notes})


@register_metric
class RelevanceRankAccuracy(LocalisationMetric):
    """Relevance rank accuracy [Arras et al. 2022]: the share of the top-K pixels in M, K = |M|.

    Pixels are ranked by map value (highest first). Pixels tied with the K-th value at the boundary
    count fractionally: each stands for (K − #strictly higher) / #tied of a slot, i.e. the expected
    value under a uniformly random tie-break. A constant map therefore gives |M| / (H·W).
    """

    name = "relevance_rank_accuracy"
    summary = "share of the top-|M| pixels of the map that lie in M (ties shared) [Arras 2022]"

    def _compute(self, m: np.ndarray, masks: np.ndarray, ctx: EvalContext) -> MetricOutput:
        n = len(m)
        flat = m.reshape(n, -1)
        mflat = masks.reshape(n, -1)
        k = mflat.sum(axis=1)
        ordered = -np.sort(-flat, axis=1)
        kth = np.take_along_axis(ordered, np.maximum(k - 1, 0)[:, None], axis=1)
        above = flat > kth
        tied = flat == kth
        slots = k - above.sum(axis=1)
        tied_in = safe_ratio((tied & mflat).sum(axis=1), tied.sum(axis=1))
        hits = (above & mflat).sum(axis=1) + slots * tied_in
        return MetricOutput(values={"": safe_ratio(hits, k)})
