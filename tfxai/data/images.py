"""Image loading, colour-mode conversion and resizing (with the matching box transform).

Images come out as RGB ``float32`` in 0..255, the convention of every tfxai backbone.

Resize modes (docs/conventions.md, Resizing):

* ``squash`` (default, Gattas): resize to the input size without cropping; every box stays valid.
* ``crop``: resize so that the image covers the input size (shorter side first), then centre-crop,
  as in standard ImageNet evaluation. Boxes are scaled, shifted and clipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageLoadError",
    "BoxTransform",
    "load_image",
    "to_rgb",
    "resize_image",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
RESIZE_MODES = ("squash", "crop")

ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageLoadError(ValueError):
    """An image file that cannot be read. The message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB.

    Greyscale (L, I, I;16, F) is replicated to three channels, palette images go through RGBA,
    CMYK uses PIL's conversion, and transparency is composited onto white.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit modes are scaled by their full range whatever the content; 32-bit int and float
        # images carry no range, so values above 255 are taken as 16-bit.
        sixteen = mode.startswith("I;16") or arr.max(initial=0) > 255
        hi = 65535.0 if sixteen else 255.0
        arr = np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    return img.convert("RGB")


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read a JPEG/PNG/... file as an RGB ``uint8`` array (H, W, 3).

    Raises:
        ImageLoadError: for a missing, empty, truncated, corrupt or non-image file.
    """
    p = Path(path)
    if not p.exists():
        raise ImageLoadError(p, "file does not exist")
    if p.is_dir():
        raise ImageLoadError(p, "is a directory, not an image file")
    if p.stat().st_size == 0:
        raise ImageLoadError(p, "empty file (0 bytes)")
    try:
        with Image.open(p) as img:
            img.load()
            rgb = to_rgb(img)
            arr = np.asarray(rgb, dtype=np.uint8)
    except UnidentifiedImageError:
        raise ImageLoadError(p, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(p, f"image too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(p, f"corrupt or truncated image ({exc})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ImageLoadError(p, f"unexpected image shape {arr.shape}")
    return arr


@dataclass(frozen=True)
class BoxTransform:
    """Maps original pixel coordinates to resized ones: ``x' = x * sx - ox``, clipped to the size."""

    sx: float
    sy: float
    ox: float
    oy: float
    width: int
    height: int

    def apply(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Transform (K, 4) ``xmin, ymin, xmax, ymax`` boxes (0-based, half-open).

        Returns:
            The transformed boxes clipped to the output image, and a boolean mask of the boxes
            kept (those with positive area after clipping).
        """
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = np.empty_like(b)
        out[:, [0, 2]] = b[:, [0, 2]] * self.sx - self.ox
        out[:, [1, 3]] = b[:, [1, 3]] * self.sy - self.oy
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, self.width)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, self.height)
        keep = (out[:, 2] - out[:, 0] > 0) & (out[:, 3] - out[:, 1] > 0)
        return out.astype(np.float32), keep


def _cv_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    shrink = width < img.shape[1] and height < img.shape[0]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(img, (width, height), interpolation=interp)


def resize_image(
    img: np.ndarray, size: tuple[int, int], mode: str = "squash"
) -> tuple[np.ndarray, BoxTransform]:
    """Resize an RGB image to ``size = (H, W)``; returns float32 0..255 and the box transform."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    th, tw = int(size[0]), int(size[1])
    h, w = img.shape[:2]
    if mode == "squash":
        out = _cv_resize(img, tw, th)
        tr = BoxTransform(tw / w, th / h, 0.0, 0.0, tw, th)
    else:
        scale = max(tw / w, th / h)
        nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
        big = _cv_resize(img, nw, nh)
        x0, y0 = (nw - tw) // 2, (nh - th) // 2
        out = big[y0 : y0 + th, x0 : x0 + tw]
        tr = BoxTransform(nw / w, nh / h, float(x0), float(y0), tw, th)
    return np.ascontiguousarray(out, dtype=np.float32), tr
