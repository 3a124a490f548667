"""How an attribution map is shown in the gallery (:func:`display_kind`), so the eye sees where the
evidence is:

- ``cam`` (Grad-CAM, Grad-CAM++; smooth, non-negative, layer resolution): a heat overlay on the colour
  image, scaled to the map's maximum;
- ``signed`` (integrated gradients, DeepLIFT, LRP, guided backprop, occlusion, LIME, SHAP, ...): the
  channel sum in red (positive evidence) and blue (negative), opacity = |value| over a grey copy of the
  image, divided by the map's 99th percentile of |value| and clipped to [−1, 1] (:func:`signed_map`);
- ``magnitude`` (saliency = max over channels of |gradient| [Simonyan 2014]; SmoothGrad², VarGrad; any
  map without negative values): |map| as the opacity of one colour over the grey image, divided by its
  99th percentile and clipped to [0, 1] (:func:`display_map`).

Pixel-level maps are dominated by a few extreme pixels and look black or like a uniform speckle when
divided by their maximum: the percentile clip (Smilkov et al. 2017; Captum's ``visualize_image_attr``
does the same) is written on the figure. Maps with few non-zero pixels fall back to the maximum.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .stores import GalleryItem

DISPLAY_PERCENTILE = 99.0
CAM, SIGNED, MAGNITUDE = "cam", "signed", "magnitude"
#: Methods whose maps are smooth class activation maps (shown as a heat overlay).
CAM_METHODS = frozenset({"gradcam", "gradcam_pp"})
#: Methods whose map is a magnitude by definition (saliency: max over channels of |gradient|).
MAGNITUDE_METHODS = frozenset({"saliency"})
#: Noise-tunnel wrappers whose output is non-negative.
MAGNITUDE_TUNNELS = frozenset({"smoothgrad_sq", "vargrad"})
#: Share of |map| mass that must be negative for a map to be shown signed.
SIGNED_SHARE = 0.01


def reduce_channels(attribution: np.ndarray, reduce: str = "sum") -> np.ndarray:
    """(H, W) float64 from an (H, W), (H, W, C) or (C, H, W) attribution: channel ``sum`` or
    ``max_abs``; NaN and ±inf become 0."""
    array = np.squeeze(np.asarray(attribution, dtype=np.float64))
    if array.ndim == 3:
        axis = -1 if array.shape[-1] <= 4 else 0
        if reduce == "max_abs":
            array = np.abs(array).max(axis=axis)
        else:
            array = array.sum(axis=axis)
    if array.ndim != 2:
        raise ValueError(f"cannot display an attribution of shape {np.shape(attribution)}")
    return np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)


def _peak(magnitude: np.ndarray, percentile: float) -> float:
    """The ``percentile`` of ``magnitude`` (its maximum when that percentile is 0)."""
    if not magnitude.size:
        return 0.0
    peak = float(np.percentile(magnitude, percentile))
    return peak if peak > 0 else float(magnitude.max())


def display_map(
    attribution: np.ndarray, percentile: float = DISPLAY_PERCENTILE, reduce: str = "sum"
) -> np.ndarray:
    """|channel-reduced attribution| divided by its ``percentile`` and clipped: (H, W) float32 in [0, 1]."""
    array = np.abs(reduce_channels(attribution, reduce))
    peak = _peak(array, percentile)
    return (np.clip(array / peak, 0.0, 1.0) if peak > 0 else array).astype(np.float32)


def signed_map(attribution: np.ndarray, percentile: float = DISPLAY_PERCENTILE) -> np.ndarray:
    """The channel sum divided by the ``percentile`` of its |value| and clipped: (H, W) in [−1, 1]."""
    array = reduce_channels(attribution, "sum")
    peak = _peak(np.abs(array), percentile)
    return (np.clip(array / peak, -1.0, 1.0) if peak > 0 else array).astype(np.float32)


def negative_share(attribution: np.ndarray) -> float:
    """Share of the channel-summed map's |mass| that is negative (0 for an all-zero map)."""
    array = reduce_channels(attribution, "sum")
    total = float(np.abs(array).sum())
    return float(-array[array < 0].sum() / total) if total > 0 else 0.0


def display_kind(method: str, attributions: Sequence[np.ndarray] = ()) -> str:
    """How ``method``'s maps are shown: :data:`CAM`, :data:`MAGNITUDE` or :data:`SIGNED` (module doc).

    A method outside the named families is shown signed when any of its ``attributions`` has more than
    :data:`SIGNED_SHARE` of its mass negative, else as a magnitude.
    """
    base, _, tunnel = str(method).partition("+")
    if base in CAM_METHODS and tunnel in ("", "smoothgrad"):
        return CAM
    if base in MAGNITUDE_METHODS or tunnel in MAGNITUDE_TUNNELS:
        return MAGNITUDE
    if attributions and all(negative_share(a) <= SIGNED_SHARE for a in attributions):
        return MAGNITUDE
    return SIGNED


def display_values(item: GalleryItem, kind: str, percentile: float = DISPLAY_PERCENTILE) -> np.ndarray:
    """The (H, W) values drawn for ``item``: CAM scaled to its maximum in [0, 1], signed maps in
    [−1, 1] and magnitudes in [0, 1], both clipped at ``percentile``."""
    if kind == CAM:
        return display_map(item.load(), 100.0)
    if kind == SIGNED:
        return signed_map(item.load(), percentile)
    base = str(item.method).partition("+")[0]
    reduce = "max_abs" if base in MAGNITUDE_METHODS else "sum"
    return display_map(item.load(), percentile, reduce)

