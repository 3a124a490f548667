"""Occlusion sensitivity [Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional
Networks"]: slide a square patch over the image, replace it by a fill, and record how much the
target score drops.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfxai.attribution.base import Attributer, Param, above, register
from tfxai.primitives import blur

__all__ = ["Occlusion", "window_starts", "occlusion_map"]

FILLS = ("zero", "mean", "blur")
SCORES = ("logit", "probability")


def window_starts(size: int, patch: int, stride: int) -> np.ndarray:
    """Start offsets 0, stride, 2·stride, … ≤ size − patch, plus ``size − patch`` when the
    stride does not land on it, so that every pixel is covered by at least one window."""
    if patch > size:
        raise ValueError(f"occlusion: patch {patch} is larger than the image side {size}")
    starts = np.arange(0, size - patch + 1, stride)
    if starts[-1] != size - patch:
        starts = np.append(starts, size - patch)
    return starts


def _fill_image(image: np.ndarray, fill: str, blur_sigma: float) -> np.ndarray:
    if fill in ("zero", "0"):
        return np.zeros_like(image)
    if fill == "mean":
        return np.broadcast_to(image.mean(axis=(0, 1), keepdims=True), image.shape).copy()
    if fill == "blur":
        return blur(image, blur_sigma)
    raise ValueError(f"occlusion: fill must be one of {FILLS}, got {fill!r}")


def occlusion_map(
    image: np.ndarray,
    score_fn,
    patch: int = 16,
    stride: int = 8,
    fill: str = "zero",
    blur_sigma: float = 10.0,
    chunk: int = 64,
) -> np.ndarray:
    """(H, W) mean drop of ``score_fn`` over the windows covering each pixel.

    ``score_fn(images) -> (B,)`` scores of the target. The occluded images of ``chunk`` windows
    are built in one vectorised step (separable row/column masks) and scored in one call.
    """
    h, w = image.shape[:2]
    ys, xs = window_starts(h, patch, stride), window_starts(w, patch, stride)
    wy, wx = (a.reshape(-1) for a in np.meshgrid(ys, xs, indexing="ij"))
    rows = (np.arange(h)[None] >= wy[:, None]) & (np.arange(h)[None] < wy[:, None] + patch)
    cols = (np.arange(w)[None] >= wx[:, None]) & (np.arange(w)[None] < wx[:, None] + patch)
    filled = _fill_image(image, fill, blur_sigma)
    base = float(np.asarray(score_fn(image[None]))[0])
    drops = []
    for i in range(0, len(wy), chunk):
        mask = (rows[i : i + chunk, :, None] & cols[i : i + chunk, None, :])[..., None]
        batch = np.where(mask, filled[None], image[None])
        drops.append(base - np.asarray(score_fn(batch), dtype=np.float64))
    d = np.concatenate(drops)
    r, c = rows.astype(np.float64), cols.astype(np.float64)
    total = (r.T * d) @ c  # Σ_windows drop · [pixel in window]
    count = r.T @ c
    return (total / np.maximum(count, 1)).astype(np.float32)


@register
class Occlusion(Attributer):
    """Occlusion [Zeiler & Fergus 2014], batched.

    Raw attribution: the (N, H, W) map whose value at a pixel is the mean, over the windows that
    cover it, of ``score(x) − score(x with the window filled)``. The score is the target's
    **pre-softmax logit** by default (``score="logit"``, docs/conventions.md), or its softmax
    probability (``score="probability"``). Fill: ``0`` (black), ``mean`` (the image's mean
    colour) or ``blur`` (Gaussian blur, σ = ``blur_sigma`` px, in 0..255 units of the input).
    Windows start every ``stride`` pixels, and a last window is added flush with the border when
    the stride does not reach it.
    """

    name = "occlusion"
    summary = "mean drop of the target logit when a 16 px patch (stride 8) is filled [Zeiler 2014]"
    map_defaults = {"reduce": "sum", "absolute": False, "scale": "max"}
    params_spec = {
        "patch": Param(16, int, "patch side in px", **above(0)),
        "stride": Param(8, int, "window stride in px", **above(0)),
        "fill": Param("zero", str, "patch fill: zero, mean (image channel mean) or blur",
                      choices=FILLS),
        "blur_sigma": Param(10.0, float, "σ in px of fill=blur", **above(0)),
        "score": Param("logit", str, "score whose drop is measured", choices=SCORES),
        "model_batch_size": Param(64, int, "occluded images per forward batch",
                                  **above(0), hashed=False),
    }

    def _setup(self) -> None:
        self.params["fill"] = str(self.params["fill"])
        h, w = self.backbone.input_size
        if self.params["patch"] > min(h, w):
            raise ValueError(
                f"occlusion: parameter 'patch' ({self.params['patch']}) exceeds the input size "
                f"{h}x{w}"
            )

    def _scores(self, images: np.ndarray, target: int) -> np.ndarray:
        bs = self.params["model_batch_size"]
        if self.params["score"] == "probability":
            return self.backbone.predict(images, batch_size=bs)[:, target]
        return self.backbone.predict_logits(images, batch_size=bs)[:, target]

    def _attribute(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> np.ndarray:
        p = self.params
        xs, ts = x.numpy(), targets.numpy()
        return np.stack([
            occlusion_map(xs[i], lambda b, t=int(ts[i]): self._scores(b, t), p["patch"],
                          p["stride"], p["fill"], p["blur_sigma"], p["model_batch_size"])
            for i in range(len(xs))
        ])
