"""Occlusion-confidence metrics (the ImageNet50 study, docs/studies.md).

The explained region R of an image is the top ``percentile`` % of its map (default 50: the top
half of the pixels). Two occluded images are built from it:

* variant ``b`` keeps R and occludes the rest (the background);
* variant ``s`` occludes R (the subject).

Occluded pixels are filled with ``fill``: ``zero`` (black, 0 in the 0..255 input space),
``mean`` (the image's own per-channel mean over all its pixels) or ``blur`` (the image blurred by a
Gaussian of σ = ``blur_sigma`` pixels, ``scipy.ndimage.gaussian_filter`` with ``reflect`` borders).

Y is the model's softmax probability of the target class on the original image and O the one on
the occluded image. Per image:

* :class:`ConfidenceIncrease`: 100·1[Y < O];
* :class:`ConfidenceDrop`: 100·max(0, Y − O) / Y.

The dataset means of these are the study's ``confidence_increase_{b,s}`` and
``confidence_drop_{b,s}``. Good methods have a small drop and a large increase for ``b`` and a
large drop for ``s`` (class attribute ``variant_directions``; ``direction`` is the ``b`` one).

R has exactly round(percentile/100·H·W) pixels: pixels are ranked by map value, highest first, and
ties are broken in raster order (a stable sort), so R never grows with ties (e.g. the many zeros
of a Grad-CAM map). A constant or all-zero map has no ranking: its R is the first pixels in raster
order and the row gets the note ``constant map`` / ``all-zero map``.

Each metric runs one batched forward pass for the originals and one per variant.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from tfxai.attribution.base import MAP_REDUCE, Param, above
from tfxai.evaluation.base import EvalContext, Metric, MetricOutput, register_metric
from tfxai.evaluation.localisation import degenerate_notes, top_region
from tfxai.primitives import blur

__all__ = ["ConfidenceIncrease", "ConfidenceDrop", "top_region", "occlude", "fill_values"]


def fill_values(images: np.ndarray, fill: str, blur_sigma: float) -> np.ndarray:
    """(N, H, W, 3) values that replace occluded pixels."""
    x = np.asarray(images, dtype=np.float32)
    if fill == "zero":
        return np.zeros_like(x)
    if fill == "mean":
        return np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape)
    if fill == "blur":
        return blur(x, blur_sigma)
    raise ValueError(f"fill must be 'zero', 'mean' or 'blur', got {fill!r}")


def occlude(images: np.ndarray, region: np.ndarray, filler: np.ndarray, variant: str) -> np.ndarray:
    """Variant ``b``: keep ``region``, fill the rest; variant ``s``: fill ``region``."""
    keep = region if variant == "b" else ~region
    return np.where(keep[..., None], images, filler).astype(np.float32)


class _OcclusionConfidence(Metric):
    needs_model = True
    variants = ("b", "s")
    params_spec: ClassVar[dict[str, Param]] = {
        "percentile": Param(50.0, float, "R = the top percentile % of the map's pixels",
                            check=lambda v: 0 < v < 100, check_doc="must be in (0, 100)"),
        "fill": Param("zero", str, "occlusion fill: zero (black), mean (per-image channel mean), "
                      "blur (Gaussian)", choices=("zero", "mean", "blur")),
        "blur_sigma": Param(5.0, float, "Gaussian σ in pixels for fill='blur'",
                            **above(0)),
        "map_reduce": Param(None, str, "channel reduction of the map (default: the method's)",
                            choices=MAP_REDUCE, nullable=True),
        "map_absolute": Param(None, bool, "take |map| (default: the method's)", nullable=True),
        "batch_size": Param(32, int, "images per forward pass chunk", **above(0), hashed=False),
    }

    def _per_image(self, y: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, list[str]]:
        raise NotImplementedError

    def _evaluate(self, ctx: EvalContext) -> MetricOutput:
        over: dict[str, Any] = {}
        if self.params["map_reduce"] is not None:
            over["reduce"] = self.params["map_reduce"]
        if self.params["map_absolute"] is not None:
            over["absolute"] = self.params["map_absolute"]
        maps = np.asarray(ctx.maps(**over))
        if maps.shape != ctx.images.shape[:3]:
            raise ValueError(
                f"{self.name}: map shape {maps.shape} does not match the images {ctx.images.shape}"
            )
        n = len(ctx)
        rows = np.arange(n)
        bs = self.params["batch_size"]
        region = top_region(maps, self.params["percentile"])
        filler = fill_values(ctx.images, self.params["fill"], self.params["blur_sigma"])
        y = ctx.backbone.predict(ctx.images, batch_size=bs)[rows, ctx.targets]
        base = degenerate_notes(maps)
        out = MetricOutput(values={}, notes={})
        for v in self.variants:
            occluded = occlude(ctx.images, region, filler, v)
            o = ctx.backbone.predict(occluded, batch_size=bs)[rows, ctx.targets]
            values, notes = self._per_image(y.astype(np.float64), o.astype(np.float64))
            out.values[v] = values
            out.notes[v] = ["; ".join(s for s in (base[i], notes[i]) if s) for i in range(n)]
        return out


@register_metric
class ConfidenceIncrease(_OcclusionConfidence):
    """Confidence increase under occlusion: 100·1[Y < O] per image (ImageNet50 study).

    The mean over images is the percentage of images whose target probability rises when the
    background (``b``; higher is better) or the subject (``s``; lower is better) is occluded.
    """

    name = "confidence_increase"
    summary = "100·1[Y<O]: target probability rises after occluding background (b) / subject (s)"

    def _per_image(self, y: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, list[str]]:
        return 100.0 * (y < o).astype(np.float64), [""] * len(y)


@register_metric
class ConfidenceDrop(_OcclusionConfidence):
    """Confidence drop under occlusion: 100·max(0, Y − O)/Y per image (ImageNet50 study).

    Lower is better for ``b`` (occluded background), higher for ``s`` (occluded subject). When Y
    is 0 (softmax underflow), nothing can drop: the value is 0 with the note
    ``target probability is 0``.
    """

    name = "confidence_drop"
    summary = "100·max(0, Y−O)/Y: relative drop of the target probability after occlusion (b/s)"

    def _per_image(self, y: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, list[str]]:
        ok = y > 0
        drop = np.where(ok, np.maximum(0.0, y - o) / np.where(ok, y, 1.0), 0.0)
        return 100.0 * drop, ["" if k else "target probability is 0" for k in ok]
