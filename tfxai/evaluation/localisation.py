"""Localisation metrics: does the attribution map fall on the annotated object?

Every metric here needs ground truth: bounding boxes or a segmentation mask. The ground-truth mask
M is:

* ``mask="union"`` (default): the image's segmentation mask when it has one (a PNG beside the
  image or in the annotations folder, :mod:`tfxai.data.masks`; it travels with the image's boxes),
  else the union of all annotated boxes (:func:`tfxai.data.boxes_to_masks`);
* ``mask="target"``: only the boxes whose class label equals the image's target (masks carry no
  class). An image with no box of the target class gets NaN with the note ``no boxes of the
  target class`` (and ``no box labels`` when its labels are missing).

The map is ``ctx.maps(...)``: the attributer's default map post-processing (see
:func:`tfxai.to_map`), or ``to_map``'s defaults (channel sum, signed, scaled by max |map|) when only
stored attributions are given. ``map_reduce`` and ``map_absolute`` override the channel reduction and
the absolute value; ``None`` keeps the default. Both are recorded in ``metric_params``.

Metrics (↑ = higher is better, all ↑):

* :class:`IoU`, :class:`IoUStar`: Gattas's IOU and IOU* with the k·σ threshold on |map|
  [Gattas 2020, "Evaluating Feature Attribution Methods", BEng thesis, Univ. of Queensland];
  ``region="top"`` selects the top ``percentile`` % of the map instead (the explained region R of
  the occlusion metrics, :mod:`tfxai.evaluation.confidence`), so the mean IOU is the mIoU of R
  against M (the ImageNet50 study).
* :class:`BoxIoU`: weakly supervised localisation box IoU of the largest connected component of
  the map thresholded at τ·max [Zhou et al. 2016, "Learning Deep Features for Discriminative
  Localization"; Choe et al. 2020, "Evaluating Weakly Supervised Object Localization Methods Right"].
* The pointing metrics (pointing game, energy pointing game, relevance rank accuracy) live in
  :mod:`tfxai.evaluation.pointing` on the same ground truth.

Degenerate maps never raise or warn: an all-zero map or a constant map gets the value the
definition gives (spelled out per metric) and the note ``all-zero map`` / ``constant map``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

from tfxai.attribution.base import MAP_REDUCE, Param, at_least
from tfxai.data.annotations import boxes_to_masks
from tfxai.data.masks import mask_of
from tfxai.evaluation.base import (
    EvalContext,
    Metric,
    MetricInputError,
    MetricOutput,
    register_metric,
)
from tfxai.primitives import top_k_mask

__all__ = [
    "IoU",
    "IoUStar",
    "BoxIoU",
    "ground_truth_masks",
    "TAU_GRID",
]

#: τ values of the ``box_iou`` sweep: 0.05, 0.10, ..., 0.95.
TAU_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))

#: 8-connectivity for connected components (diagonal neighbours are connected).
_EIGHT = np.ones((3, 3), dtype=bool)

MAP_AXES = (1, 2)


# --------------------------------------------------------------------------------------- helpers


def join_notes(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def ground_truth_masks(
    ctx: EvalContext, size: tuple[int, int], mode: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(N, H, W) bool masks, (N,) validity and (N,) notes for ``mask`` mode ``union``/``target``.

    An image is invalid (its metric value becomes NaN) when its mask is empty: no boxes, no box of
    the target class, or (``target`` mode) no box labels.
    """
    n = len(ctx)
    boxes = ctx.boxes if ctx.boxes is not None else [None] * n
    notes = [""] * n
    if mode == "union":
        masks = boxes_to_masks(boxes, size)
        for i, b in enumerate(boxes):
            seg = mask_of(b)
            if seg is None:
                continue
            if seg.shape != tuple(size):
                raise ValueError(f"segmentation mask of shape {seg.shape} does not match the "
                                 f"map size {tuple(size)}")
            masks[i] = seg
    else:
        if ctx.box_labels is None:
            raise MetricInputError(
                "mask='target' needs the class label of each box (box_labels); "
                "give box_labels or use mask='union'"
            )
        labels = list(ctx.box_labels)
        for i in range(n):
            if labels[i] is None and boxes[i] is not None and len(boxes[i]):
                notes[i] = "no box labels"
                boxes = [b if j != i else None for j, b in enumerate(boxes)]
        masks = boxes_to_masks(boxes, size, labels, ctx.targets)
    valid = masks.any(axis=MAP_AXES)
    for i in np.flatnonzero(~valid):
        if not notes[i]:
            has_boxes = boxes[i] is not None and len(boxes[i]) > 0
            notes[i] = "no boxes of the target class" if (mode == "target" and has_boxes) else (
                "no boxes" if not has_boxes else "empty box mask"
            )
    return masks, valid, notes


def degenerate_notes(m: np.ndarray) -> list[str]:
    """``all-zero map`` / ``constant map`` / "" per map of an (N, H, W) stack."""
    flat = m.reshape(len(m), -1)
    if flat.shape[1] == 0:
        return ["empty map"] * len(m)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    zero = (lo == 0) & (hi == 0)
    const = (lo == hi) & ~zero
    return ["all-zero map" if z else "constant map" if c else "" for z, c in zip(zero, const, strict=True)]


def safe_ratio(num: np.ndarray, den: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """num / den where den > 0, else ``fill`` (no warnings)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    ok = den > 0
    return np.where(ok, num / np.where(ok, den, 1.0), fill)


MAP_PARAMS: dict[str, Param] = {
    "map_reduce": Param(None, str, "channel reduction of the map (default: the method's)",
                        choices=MAP_REDUCE, nullable=True),
    "map_absolute": Param(None, bool, "take |map| (default: the method's)", nullable=True),
}

MASK_PARAM = Param("union", str, "ground truth: all boxes (union) or the target class's boxes",
                    choices=("union", "target"))


class LocalisationMetric(Metric):
    """Shared plumbing: maps, masks, invalid rows and notes. Subclasses implement ``_compute``."""

    needs_boxes = True
    params_spec: ClassVar[dict[str, Param]] = {"mask": MASK_PARAM, **MAP_PARAMS}

    def _map_overrides(self) -> dict[str, Any]:
        out = {}
        if self.params.get("map_reduce") is not None:
            out["reduce"] = self.params["map_reduce"]
        if self.params.get("map_absolute") is not None:
            out["absolute"] = self.params["map_absolute"]
        return out

    def _maps(self, ctx: EvalContext) -> np.ndarray:
        m = np.asarray(ctx.maps(**self._map_overrides()), dtype=np.float64)
        if m.ndim != 3 or m.shape[0] != len(ctx):
            raise ValueError(f"{self.name}: expected (N, H, W) maps, got shape {m.shape}")
        if tuple(m.shape[1:]) != tuple(ctx.images.shape[1:3]):
            raise ValueError(
                f"{self.name}: map size {m.shape[1:]} differs from the image size "
                f"{ctx.images.shape[1:3]}; boxes are in image coordinates"
            )
        return m

    def _evaluate(self, ctx: EvalContext) -> MetricOutput:
        m = self._maps(ctx)
        masks, valid, mask_notes = ground_truth_masks(ctx, m.shape[1:], self.params["mask"])
        out = self._compute(m, masks, ctx)
        base = degenerate_notes(m)
        for v in self.variants:
            vals = out.values[v].astype(np.float64)
            vals[~valid] = np.nan
            out.values[v] = vals
            extra = out.notes.get(v, [""] * len(m))
            out.notes[v] = [
                mask_notes[i] if not valid[i] else join_notes(base[i], extra[i]) for i in range(len(m))
            ]
        return out

    def _compute(self, m: np.ndarray, masks: np.ndarray, ctx: EvalContext) -> MetricOutput:
        raise NotImplementedError


# --------------------------------------------------------------------------------------- IOU / IOU*


def sigma_threshold(m: np.ndarray, k: float) -> np.ndarray:
    """Gattas's A': |map| scaled to max 1, values below k·σ(|map|) set to 0 (per image)."""
    a = np.abs(m)
    a = safe_ratio(a, a.max(axis=MAP_AXES, keepdims=True))
    sigma = a.std(axis=MAP_AXES, keepdims=True)
    return np.where(a >= k * sigma, a, 0.0)


def top_region(m: np.ndarray, percentile: float) -> np.ndarray:
    """(N, H, W) bool: the round(percentile/100·H·W) highest map values of each image; ties go to
    the first pixels in raster order (a stable sort), so the region has exactly that many pixels.
    The explained region R of :mod:`tfxai.evaluation.confidence`."""
    flat = np.asarray(m, dtype=np.float64).reshape(len(m), -1)
    count = int(round(percentile / 100.0 * flat.shape[1]))
    return top_k_mask(flat, count).reshape(np.shape(m))


class _GattasIoU(LocalisationMetric):
    params_spec: ClassVar[dict[str, Param]] = {
        "k": Param(0.5, float, "threshold multiplier: |map| < k·σ(|map|) is set to 0",
                   **at_least(0)),
        "region": Param("sigma", str, "selected pixels: sigma (|map| ≥ k·σ, Gattas) or top (the "
                        "top percentile % of the map, the occlusion metrics' region R)",
                        choices=("sigma", "top")),
        "percentile": Param(50.0, float, "region='top': the share of pixels selected, in %",
                            check=lambda v: 0 < v < 100, check_doc="must be in (0, 100)"),
        "mask": MASK_PARAM,
        **MAP_PARAMS,
    }

    def metric_params(self) -> dict[str, Any]:
        """The recorded parameters: ``region`` and ``percentile`` only with ``region="top"`` (they
        came after results were written with the σ rule: those keep their parameters and resume),
        ``k`` only with the σ rule."""
        out = super().metric_params()
        if out.get("region") == "sigma":
            out.pop("region")
            out.pop("percentile", None)
        else:
            out.pop("k", None)
        return out

    def _parts(self, m: np.ndarray, masks: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A' (|map| scaled to max 1 on the selected pixels, 0 elsewhere), |selected ∨ M| and the
        selected pixels."""
        if self.params["region"] == "top":
            selected = top_region(m, self.params["percentile"])
            a = np.abs(m)
            a = np.where(selected, safe_ratio(a, a.max(axis=MAP_AXES, keepdims=True)), 0.0)
        else:
            a = sigma_threshold(m, self.params["k"])
            selected = a > 0
        union = (selected | masks).sum(axis=MAP_AXES)
        return a, union, selected


@register_metric
class IoU(_GattasIoU):
    """Gattas IOU [Gattas 2020]: |A'>0 ∧ M| / |A'>0 ∨ M|.

    A' is |map| (the absolute value is taken first), scaled to max 1, with the values below
    k·σ(|map|) set to 0 (σ: population standard deviation over the image's pixels; values equal to
    the threshold are kept). k = 0.5. All-zero map: A' is empty, IOU = 0. Constant map: σ = 0, every
    pixel is kept, IOU = |M| / (H·W). Both get a note.

    ``region="top"``: the selected pixels are instead the top ``percentile`` % of the map
    (exactly round(percentile/100·H·W) pixels, ties in raster order; k is then unused and not
    recorded): IOU = |R ∧ M| / |R ∨ M|, the IoU of the occlusion metrics' explained region R.
    """

    name = "iou"
    summary = "|A'>0 ∧ M| / |A'>0 ∨ M|, A' = |map| below k·σ set to 0, k=0.5 [Gattas 2020]"

    def _compute(self, m: np.ndarray, masks: np.ndarray, ctx: EvalContext) -> MetricOutput:
        _, union, selected = self._parts(m, masks)
        inter = (selected & masks).sum(axis=MAP_AXES)
        return MetricOutput(values={"": safe_ratio(inter, union)})


@register_metric
class IoUStar(_GattasIoU):
    """Gattas IOU* [Gattas 2020]: Σ_M A' / |A'>0 ∨ M|, with k = 1.

    A' as in :class:`IoU` (|map| scaled to max 1, below k·σ set to 0), so IOU* weighs the selected
    pixels inside M by their attribution and lies in [0, 1]. All-zero map: 0; constant map:
    |M| / (H·W). Both get a note.
    """

    name = "iou_star"
    summary = "Σ_M A' / |A'>0 ∨ M|, A' = |map|/max below k·σ set to 0, k=1 [Gattas 2020]"
    params_spec: ClassVar[dict[str, Param]] = {
        **_GattasIoU.params_spec,
        "k": Param(1.0, float, "threshold multiplier: |map| < k·σ(|map|) is set to 0",
                   **at_least(0)),
    }

    def _compute(self, m: np.ndarray, masks: np.ndarray, ctx: EvalContext) -> MetricOutput:
        a, union, _ = self._parts(m, masks)
        inside = (a * masks).sum(axis=MAP_AXES)
        return MetricOutput(values={"": safe_ratio(inside, union)})


# --------------------------------------------------------------------------------------- box IoU


def largest_component_box(fg: np.ndarray) -> np.ndarray | None:
    """Bounding box ``[xmin, ymin, xmax, ymax]`` (half-open) of the largest 8-connected component.

    Ties between equally large components go to the one whose first pixel comes first in raster
    order. ``None`` when ``fg`` is empty.
    """
    labels, count = ndimage.label(fg, structure=_EIGHT)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    best = int(np.argmax(sizes)) + 1
    rows, cols = ndimage.find_objects(labels, max_label=best)[best - 1]
    return np.array([cols.start, rows.start, cols.stop, rows.stop], dtype=np.float64)


def box_iou_matrix(box: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of one ``[x0, y0, x1, y1]`` box with each row of ``gt`` (K, 4), half-open coordinates."""
    ix = np.clip(np.minimum(box[2], gt[:, 2]) - np.maximum(box[0], gt[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], gt[:, 3]) - np.maximum(box[1], gt[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    gt_area = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    return safe_ratio(inter, area + gt_area - inter)


@register_metric
class BoxIoU(LocalisationMetric):
    """Box IoU of weakly supervised localisation [Zhou et al. 2016; Choe et al. 2020].

    1. Foreground: pixels with map ≥ τ·max(map) (τ = 0.2).
    2. The bounding box of the largest 8-connected component of the foreground
       (``scipy.ndimage.label`` with a 3×3 structure; ties → first component in raster order).
    3. IoU with the best-matching ground-truth box (continuous half-open coordinates, boxes
       clipped to the image; ``mask="target"``: only the target class's boxes).

    Variants: ``""`` is the IoU; ``"hit"`` is 1 when the IoU ≥ ``hit_iou`` (0.5), else 0.

    ``sweep=True`` evaluates τ ∈ {0.05, 0.10, …, 0.95} and reports, per image, the best IoU (the
    smallest τ on ties): an optimistic per-image oracle. ``extras[""]`` holds, per image, the
    predicted box, the τ used and (with ``sweep``) the IoU for every τ of the grid, so a
    dataset-level best τ (Choe et al.) can be chosen afterwards.

    A map whose maximum is ≤ 0 (all-zero, or no positive value) has no foreground: IoU 0, hit 0,
    note ``all-zero map`` / ``no positive map values``. A constant positive map selects the whole
    image (note ``constant map``).
    """

    name = "box_iou"
    summary = "IoU of the largest component's box of map ≥ τ·max with the best GT box; hit at ≥ 0.5"
    variants = ("", "hit")
    params_spec: ClassVar[dict[str, Param]] = {
        "tau": Param(0.2, float, "foreground threshold as a fraction of the map's max",
                     check=lambda v: 0 <= v <= 1, check_doc="must be in [0, 1]"),
        "sweep": Param(False, bool, "report the best IoU over τ = 0.05, 0.10, ..., 0.95"),
        "hit_iou": Param(0.5, float, "IoU at which the box counts as a hit",
                         check=lambda v: 0 < v <= 1, check_doc="must be in (0, 1]"),
        "mask": MASK_PARAM,
        **MAP_PARAMS,
    }

    def _gt_boxes(self, ctx: EvalContext, i: int, size: tuple[int, int]) -> np.ndarray:
        b = ctx.boxes[i] if ctx.boxes is not None else None
        if b is None:
            return np.zeros((0, 4))
        b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
        if self.params["mask"] == "target" and ctx.box_labels is not None:
            lab = ctx.box_labels[i]
            if lab is None:
                return np.zeros((0, 4))
            b = b[np.asarray(lab).reshape(-1) == ctx.targets[i]]
        h, w = size
        return np.clip(b, 0, [w, h, w, h])

    def _compute(self, m: np.ndarray, masks: np.ndarray, ctx: EvalContext) -> MetricOutput:
        n = len(m)
        taus = TAU_GRID if self.params["sweep"] else (self.params["tau"],)
        mx = m.max(axis=MAP_AXES)
        values = np.zeros(n)
        notes = [""] * n
        extras: list[Any] = [None] * n
        for i in range(n):  # connected components are inherently per image
            gt = self._gt_boxes(ctx, i, m.shape[1:])
            if mx[i] <= 0 or len(gt) == 0:
                if mx[i] <= 0 and np.any(m[i] != 0):
                    notes[i] = "no positive map values"
                extras[i] = {"box": None, "tau": None}
                continue
            ious, boxes = [], []
            for tau in taus:
                box = largest_component_box(m[i] >= tau * mx[i])
                boxes.append(box)
                ious.append(0.0 if box is None else float(box_iou_matrix(box, gt).max()))
            j = int(np.argmax(ious))
            values[i] = ious[j]
            extras[i] = {"box": boxes[j].tolist(), "tau": taus[j]}
            if self.params["sweep"]:
                extras[i]["ious"] = dict(zip(taus, ious, strict=True))
        hit = (values >= self.params["hit_iou"]).astype(np.float64)
        return MetricOutput(
            values={"": values, "hit": hit},
            notes={"": notes, "hit": list(notes)},
            extras={"": extras},
        )
