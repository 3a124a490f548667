"""Image augmentations of the augmentation-robustness study [Erdem 2021].

Nine augmentations, each a ``variant`` of the ``ssim_augmentation`` metric:

* ``rotate_-30``, ``rotate_-15``, ``rotate_15``, ``rotate_30``: rotation about the image centre by the
  angle in degrees (positive = counter-clockwise as displayed), bilinear interpolation, same size,
  black (0) fill outside the rotated picture;
* five G'MIC filters [Tschumperlé & Fourey, G'MIC, https://gmic.eu], run through the ``gmic`` Python
  package (the library the study used), with parameters tuned so that each visibly does what its name
  says on a 224×224 photograph:

  ===================== ========================================= ===========================================
  variant               G'MIC command                             effect
  ===================== ========================================= ===========================================
  ``boost_chromaticity`` ``fx_boost_chroma 70,0,0``               equalised Cb/Cr chroma (YCbCr, distinct),
                                                                  70 % blend: more saturated colours
  ``freaky_details``    ``fx_freaky_details 2,10,1,11,0,32,0``    "freaky details" (vivid-light blend of an
                                                                  inverted bilateral-filtered copy) on the
                                                                  YCbCr luminance, applied once
  ``normalize_local``   ``normalize_local 3,10``                  local contrast normalisation, radius 10
  ``mighty_details``    ``fx_mighty_details 25,1,25,1,11,0``      detail enhancement on the luminance
  ``sharpen``           ``sharpen 300``                           inverse-diffusion sharpening
  ===================== ========================================= ===========================================

All functions take RGB float images in 0..255 and return float32 RGB images of the same height and width
in 0..255 (results are clipped). Greyscale input ((H, W), (H, W, 1) or (N, H, W, 1)) is replicated to
three channels, so the output is always RGB; any other channel count raises a ``ValueError``.

This module is not a metric module: it is not auto-imported as one (see ``tfxai.evaluation``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from scipy import ndimage

__all__ = [
    "AUGMENTATIONS",
    "GMIC_COMMANDS",
    "ROTATIONS",
    "augment",
    "gmic_filter",
    "is_rotation",
    "rotate",
    "rotation_angle",
    "to_rgb_batch",
]

#: angle in degrees of each rotation variant
ROTATIONS: dict[str, float] = {
    "rotate_-30": -30.0,
    "rotate_-15": -15.0,
    "rotate_15": 15.0,
    "rotate_30": 30.0,
}

#: the G'MIC command of each filter variant (see the module docstring)
GMIC_COMMANDS: dict[str, str] = {
    "boost_chromaticity": "fx_boost_chroma 70,0,0",
    "freaky_details": "fx_freaky_details 2,10,1,11,0,32,0",
    "normalize_local": "normalize_local 3,10",
    "mighty_details": "fx_mighty_details 25,1,25,1,11,0",
    "sharpen": "sharpen 300",
}


def to_rgb_batch(images: np.ndarray) -> tuple[np.ndarray, bool]:
    """Images as a float32 (N, H, W, 3) batch, and whether the input was a single image.

    Accepts (H, W) and (H, W, 1) greyscale, (H, W, 3) RGB, (N, H, W, 1) and (N, H, W, 3).
    """
    x = np.asarray(images, dtype=np.float32)
    single = x.ndim in (2, 3)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(
            f"images must be (H, W), (H, W, C) or (N, H, W, C) with C = 1 or 3, got shape "
            f"{np.shape(images)}"
        )
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[-1] != 3:
        raise ValueError(
            f"images must have 1 (greyscale) or 3 (RGB) channels, got {x.shape[-1]} "
            f"(shape {np.shape(images)}); drop the alpha channel first"
        )
    if x.shape[1] < 2 or x.shape[2] < 2:
        raise ValueError(f"images must be at least 2×2 pixels, got shape {np.shape(images)}")
    if not np.isfinite(x).all():
        raise ValueError("images contain non-finite values")
    return x, single


def rotate(images: np.ndarray, angle: float, order: int = 1) -> np.ndarray:
    """Rotate images or maps about their centre by ``angle`` degrees, same size, zero fill.

    Works on (N, H, W) maps and (N, H, W, C) images in one call (the rotation acts on axes 1, 2).
    ``order`` is the spline order (1 = bilinear).
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim not in (3, 4):
        raise ValueError(f"rotate expects (N, H, W) or (N, H, W, C), got shape {x.shape}")
    if angle == 0:
        return x.copy()
    # axes (2, 1) = (x, y): a positive angle turns the picture counter-clockwise as displayed
    return ndimage.rotate(x, angle, axes=(2, 1), reshape=False, order=order, mode="constant",
                          cval=0.0, prefilter=False).astype(np.float32)


def _rotation(images: np.ndarray, angle: float) -> np.ndarray:
    x, single = to_rgb_batch(images)
    out = np.clip(rotate(x, angle), 0.0, 255.0)
    return out[0] if single else out


def _as_8bit(whdc: np.ndarray) -> np.ndarray:
    """A G'MIC image (``to_numpy``: width, height, depth 1, channels) as (H, W, C) float32 with
    8-bit values: clamped to 0..255 and truncated, as a filtered photo saved to an 8-bit file is
    (and as gmic's ``yxc`` view reads it; that view keeps its buffer alive after every call in
    gmic 3.6, ~100 KB per image, so a long run grew without bound)."""
    return np.floor(np.clip(whdc[:, :, 0, :].transpose(1, 0, 2), 0.0, 255.0)).astype(np.float32)


def gmic_filter(images: np.ndarray, command: str) -> np.ndarray:
    """Run one G'MIC ``command`` on every image (one ``gmic.run`` call for the whole batch).

    The result is read with 8-bit values (:func:`_as_8bit`)."""
    import gmic

    x, single = to_rgb_batch(images)
    x = np.clip(x, 0.0, 255.0)
    imgs = gmic.ImageList([gmic.Image.from_yxc(np.ascontiguousarray(im)) for im in x])
    try:
        result = gmic.run(command, imgs)
    except Exception as exc:  # noqa: BLE001 - gmic raises its own exception types
        raise ValueError(f"G'MIC command {command!r} failed: {exc}") from exc
    out = np.stack([_as_8bit(im.to_numpy()) for im in result])
    if out.shape != x.shape:
        raise ValueError(
            f"G'MIC command {command!r} changed the image shape {x.shape[1:]} → {out.shape[1:]}"
        )
    out = np.clip(out, 0.0, 255.0)
    return out[0] if single else out


#: variant name → function(images) → augmented images (same height/width, RGB, 0..255)
AUGMENTATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    **{name: partial(_rotation, angle=a) for name, a in ROTATIONS.items()},
    **{name: partial(gmic_filter, command=c) for name, c in GMIC_COMMANDS.items()},
}


def is_rotation(name: str) -> bool:
    return name in ROTATIONS


def rotation_angle(name: str) -> float:
    return ROTATIONS[name]


def augment(images: np.ndarray, name: str) -> np.ndarray:
    """Apply augmentation ``name`` to RGB 0..255 images (N, H, W, 3) → float32, same shape.

    A single image (H, W, 3) and greyscale input are accepted (greyscale becomes RGB).
    """
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}")
    return AUGMENTATIONS[name](images)
