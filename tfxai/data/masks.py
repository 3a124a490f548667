"""Segmentation masks: one PNG per image, non-zero pixels = the object.

Where a mask is found (:func:`find_mask`):

* in the ``annotations`` folder, when one is given: ``<image id>.png``, ``<stem>.png`` or
  ``<stem>_mask.png``;
* otherwise next to the image: ``<stem>_mask.png`` or ``<stem>.mask.png``, or ``<stem>.png`` beside
  an image of another format (``img.jpg`` + ``img.png``) when that PNG is single-channel (mode
  ``1``, ``L``, ``I``/``I;16`` or ``P``: a colour PNG there is an image of its own).

A mask file found next to an image is that image's mask, not an image: folder discovery leaves it
out (:func:`mask_files`).

Pixel values: any non-zero value is the object (a palette PNG is read by its indices, so a Pascal
VOC ``SegmentationObject`` file counts its 255 "void" border as object). A colour PNG counts a
pixel as object when any channel is non-zero. Masks carry no class: a mask is the union mask M of
the localisation metrics (``mask="union"``); ``mask="target"`` uses boxes of the target class
(the VOC boxes; for an image with a mask and no XML, the mask's component boxes, labelled with the
image's class when it is known).

The mask is resized with its image (:func:`transform_mask`: the same squash or crop, the mask
resized as a 0/1 float image with the image's interpolation and kept where ≥ 0.5), so it lies on
the image the model sees.

It travels with the boxes of its image (:class:`GroundTruth`): a float (K, 4) box array — the VOC
boxes, or without them the bounding boxes of the mask's 8-connected components — that also
carries the (H, W) boolean mask as ``.mask``. Code that knows only boxes sees boxes; the
localisation metrics take M from the mask (:func:`mask_of`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from tfxai.data.images import BoxTransform

__all__ = [
    "GroundTruth",
    "MaskError",
    "MASK_SUFFIXES",
    "attach_mask",
    "find_mask",
    "is_mask_name",
    "load_mask",
    "mask_boxes",
    "mask_files",
    "mask_of",
    "transform_mask",
]

#: stem suffixes that mark a PNG as a mask (``img_mask.png``, ``img.mask.png``)
MASK_SUFFIXES = ("_mask", ".mask")
#: PNG modes read as masks when the PNG shares its stem with an image of another format
SINGLE_CHANNEL_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L")


class MaskError(ValueError):
    """A mask file that cannot be read. The message names the file."""


def is_mask_name(path: str | os.PathLike) -> bool:
    """True for ``<stem>_mask.png`` and ``<stem>.mask.png``."""
    p = Path(path)
    return p.suffix.lower() == ".png" and p.stem.endswith(MASK_SUFFIXES)


def _single_channel_png(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            return img.format == "PNG" and img.mode in SINGLE_CHANNEL_MODES
    except (OSError, UnidentifiedImageError, ValueError):
        return False


def _beside(path: Path) -> tuple[Path, ...]:
    """Mask candidates next to an image, in order of precedence."""
    out = [path.with_name(path.stem + s + ".png") for s in MASK_SUFFIXES]
    if path.suffix.lower() != ".png":
        out.append(path.with_suffix(".png"))
    return tuple(out)


def find_mask(path: str | os.PathLike, image_id: str, annotations: str | os.PathLike | None
              ) -> Path | None:
    """The mask PNG of the image at ``path`` (see the module docstring), or None."""
    p = Path(path)
    if annotations is not None:
        folder = Path(annotations)
        cands = [folder / f"{image_id}.png", folder / f"{p.stem}.png",
                 folder / f"{p.stem}_mask.png"]
        for cand in cands:
            if cand.is_file() and cand.resolve() != p.resolve():
                return cand
        return None
    for cand in _beside(p):
        if not cand.is_file():
            continue
        if cand.suffix.lower() == ".png" and not is_mask_name(cand) and not _single_channel_png(cand):
            continue  # img.jpg + a colour img.png: two images
        return cand
    return None


def mask_files(paths: list[Path]) -> set[Path]:
    """The files among ``paths`` that are masks of other files among them (left out of a folder's
    images): ``x_mask.png``/``x.mask.png`` beside an image ``x.*``, and a single-channel ``x.png``
    beside an image ``x.<other format>``."""
    by_stem: dict[tuple[Path, str], list[Path]] = {}
    for p in paths:
        by_stem.setdefault((p.parent, p.stem), []).append(p)
    found: set[Path] = set()
    for p in paths:
        if p.suffix.lower() != ".png":
            continue
        if is_mask_name(p):
            base = p.stem[: -len(next(s for s in MASK_SUFFIXES if p.stem.endswith(s)))]
            if (p.parent, base) in by_stem:
                found.add(p)
            continue
        others = [q for q in by_stem.get((p.parent, p.stem), []) if q.suffix.lower() != ".png"]
        if others and _single_channel_png(p):
            found.add(p)
    return found


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask PNG as a boolean (H, W) array: True where the pixel value is non-zero.

    Raises:
        MaskError: the file is missing or not a readable image.
    """
    p = Path(path)
    try:
        with Image.open(p) as img:
            img.load()
            arr = np.asarray(img)
    except FileNotFoundError:
        raise MaskError(f"{p}: mask file does not exist") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise MaskError(f"{p}: not a readable mask image ({exc})") from None
    if arr.ndim == 3:
        arr = arr[..., :3].any(axis=-1) if arr.shape[-1] >= 3 else arr[..., 0]
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise MaskError(f"{p}: unexpected mask shape {arr.shape}")
    return np.asarray(arr) != 0


def _resize01(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a boolean mask as a 0/1 float image (the image's interpolation), kept where ≥ 0.5."""
    if mask.shape == (height, width):
        return mask.copy()
    src = mask.astype(np.float32)
    shrink = width < mask.shape[1] and height < mask.shape[0]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(src, (width, height), interpolation=interp) >= 0.5


def transform_mask(mask: np.ndarray, tr: BoxTransform, image_shape: tuple[int, int]
                   ) -> tuple[np.ndarray, list[str]]:
    """The mask on the resized image: the image's squash or crop (``tr``) applied to it.

    ``image_shape`` is the original image's (H, W); a mask of another size is first scaled to it
    (with a note). Returns the (tr.height, tr.width) boolean mask and the notes.
    """
    notes: list[str] = []
    h, w = image_shape
    m = np.asarray(mask, dtype=bool)
    if m.shape != (h, w):
        notes.append(f"mask size {m.shape[1]}x{m.shape[0]} differs from the image {w}x{h}; "
                     "mask scaled to the image")
        m = _resize01(m, w, h)
    nw, nh = max(1, round(w * tr.sx)), max(1, round(h * tr.sy))
    big = _resize01(m, nw, nh)
    x0, y0 = round(tr.ox), round(tr.oy)
    out = big[y0 : y0 + tr.height, x0 : x0 + tr.width]
    if out.shape != (tr.height, tr.width):  # rounding at the border: pad with background
        full = np.zeros((tr.height, tr.width), dtype=bool)
        full[: out.shape[0], : out.shape[1]] = out
        out = full
    return np.ascontiguousarray(out), notes


_EIGHT = np.ones((3, 3), dtype=bool)


def mask_boxes(mask: np.ndarray) -> np.ndarray:
    """(K, 4) float32 boxes ``xmin, ymin, xmax, ymax`` (0-based, half-open) of the 8-connected
    components of ``mask``, in raster order of their first pixel; (0, 4) for an empty mask."""
    labels, count = ndimage.label(np.asarray(mask, bool), structure=_EIGHT)
    boxes = [[s[1].start, s[0].start, s[1].stop, s[0].stop]
             for s in ndimage.find_objects(labels) if s is not None]
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


class GroundTruth(np.ndarray):
    """A (K, 4) float box array that also carries the image's segmentation ``mask`` ((H, W) bool).

    It is the ``boxes`` entry of an image that has a mask: every box consumer works unchanged, and
    the localisation metrics use the mask as M. Views and slices keep the mask.
    """

    mask: np.ndarray | None

    def __new__(cls, boxes: Any, mask: np.ndarray) -> GroundTruth:
        obj = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).view(cls)
        obj.mask = np.asarray(mask, dtype=bool)
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.mask = getattr(obj, "mask", None)

    def __reduce__(self) -> Any:  # pickling (Ray) keeps the mask
        state = super().__reduce__()
        return (*state[:2], (state[2], self.mask))

    def __setstate__(self, state: Any) -> None:
        base, mask = state
        super().__setstate__(base)
        self.mask = mask


def attach_mask(boxes: np.ndarray | None, mask: np.ndarray) -> GroundTruth:
    """``boxes`` (or, when None or empty, the mask's component boxes) carrying ``mask``."""
    if boxes is None or len(boxes) == 0:
        boxes = mask_boxes(mask)
    return GroundTruth(boxes, mask)


def mask_of(boxes: Any) -> np.ndarray | None:
    """The segmentation mask carried by an image's ``boxes`` entry, or None."""
    mask = getattr(boxes, "mask", None)
    return None if mask is None else np.asarray(mask, dtype=bool)
