"""Pascal-VOC bounding boxes: parsing, conversion to tfxai's box convention, and masks.

tfxai boxes are float arrays (K, 4) of ``xmin, ymin, xmax, ymax`` in 0-based, half-open pixel
coordinates, so the mask of a box is ``M[ymin:ymax, xmin:xmax]``. VOC XML coordinates are 1-based
and inclusive: ``xmin_0 = xmin_voc - 1``, ``xmax_0 = xmax_voc``. ImageNet's XML files also contain
0 coordinates, so boxes are clipped to the image.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

from tfxai.data.imagenet import synset_to_index

__all__ = ["Annotation", "AnnotationError", "parse_voc", "boxes_to_mask", "boxes_to_masks"]


class AnnotationError(ValueError):
    """A broken annotation file. The message names the file."""


@dataclass
class Annotation:
    """Boxes of one image in original pixel coordinates (0-based, half-open)."""

    path: str
    width: int | None
    height: int | None
    boxes: np.ndarray  # (K, 4) float32
    names: list[str]  # object <name>, e.g. a WordNet synset
    labels: np.ndarray  # (K,) int: ImageNet class index, -1 when the name is not a known synset
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> int | None:
        """The image label: the class of the first object with a known class."""
        known = [int(v) for v in self.labels if v >= 0]
        return known[0] if known else None


def _int(node: ET.Element | None, tag: str, path: str) -> float:
    child = node.find(tag) if node is not None else None
    if child is None or child.text is None:
        raise AnnotationError(f"{path}: <bndbox> without <{tag}>")
    try:
        return float(child.text.strip())
    except ValueError:
        raise AnnotationError(f"{path}: <{tag}> is not a number: {child.text!r}") from None


def _read_root(path: str) -> ET.Element:
    """The root element of the XML file at ``path``; a missing or malformed file raises."""
    try:
        return ET.parse(path).getroot()
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file does not exist") from None
    except ET.ParseError as exc:
        raise AnnotationError(f"{path}: malformed XML ({exc})") from None


def _image_size(root: ET.Element, path: str) -> tuple[int | None, int | None]:
    """``(width, height)`` from ``<size>``, or ``(None, None)`` when absent or zero."""
    size = root.find("size")
    if size is None or size.find("width") is None or size.find("height") is None:
        return None, None
    width, height = int(_int(size, "width", path)), int(_int(size, "height", path))
    if width <= 0 or height <= 0:  # some tools write 0x0: treat the size as unknown
        return None, None
    return width, height


def _object_box(
    bb: ET.Element, name: str, path: str, size: tuple[int | None, int | None], notes: list[str]
) -> np.ndarray | None:
    """One ``<bndbox>`` in 0-based half-open coordinates, clipped to ``size`` when known;
    ``None`` for a zero-area box. Each fix is recorded in ``notes``."""
    x0, y0 = _int(bb, "xmin", path) - 1, _int(bb, "ymin", path) - 1
    x1, y1 = _int(bb, "xmax", path), _int(bb, "ymax", path)
    box = np.array([x0, y0, x1, y1], dtype=np.float64)
    width, height = size
    if width is not None and height is not None:
        clipped = np.clip(box, 0, [width, height, width, height])
        # ImageNet writes 0 for the first pixel (VOC is 1-based): -1 → 0 is not an overflow
        expected = np.where(box[:2] == -1, 0.0, box[:2])
        if not (np.array_equal(clipped[:2], expected) and np.array_equal(clipped[2:], box[2:])):
            notes.append(f"box of {name!r} outside the image clipped")
        box = clipped
    else:
        box = np.maximum(box, 0)
    if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
        notes.append(f"zero-area box of {name!r} dropped")
        return None
    return box


def parse_voc(path: str | os.PathLike) -> Annotation:
    """Parse a Pascal-VOC XML file with any number of ``<object>`` entries.

    Boxes are converted to 0-based half-open coordinates and clipped to ``<size>`` when present.
    Zero-area boxes are dropped and boxes outside the image are clipped; each such fix is recorded
    in ``notes``. A name that is not an ImageNet-1k synset keeps its box with label -1.

    Raises:
        AnnotationError: unreadable or malformed XML, or a box with non-numeric coordinates.
    """
    p = str(path)
    root = _read_root(p)
    width, height = _image_size(root, p)
    notes: list[str] = []
    boxes, names, labels = [], [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if bb is None:
            notes.append(f"object {name!r} without <bndbox> skipped")
            continue
        box = _object_box(bb, name, p, (width, height), notes)
        if box is None:
            continue
        idx = synset_to_index(name) if name else None
        if idx is None:
            notes.append(f"unknown synset {name!r}")
        boxes.append(box)
        names.append(name)
        labels.append(-1 if idx is None else idx)
    if not boxes:
        notes.append("no object")
    return Annotation(
        path=p,
        width=width,
        height=height,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        names=names,
        labels=np.asarray(labels, dtype=np.int64),
        notes=notes,
    )


def boxes_to_mask(
    boxes: np.ndarray,
    size: tuple[int, int],
    labels: np.ndarray | None = None,
    target: int | None = None,
) -> np.ndarray:
    """Boolean (H, W) mask: the union of the boxes, or only those whose label equals ``target``.

    Box edges are rounded to the nearest pixel boundary, halves up (``floor(x + 0.5)``), so a box
    covers the same number of pixels wherever it sits.
    """
    h, w = size
    mask = np.zeros((h, w), dtype=bool)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if labels is not None and target is not None:
        b = b[np.asarray(labels).reshape(-1) == target]
    r = np.floor(b + 0.5).astype(np.int64)
    r[:, [0, 2]] = np.clip(r[:, [0, 2]], 0, w)
    r[:, [1, 3]] = np.clip(r[:, [1, 3]], 0, h)
    for x0, y0, x1, y1 in r:
        mask[y0:y1, x0:x1] = True
    return mask


def boxes_to_masks(
    boxes: list[np.ndarray | None],
    size: tuple[int, int],
    labels: list[np.ndarray | None] | None = None,
    targets: np.ndarray | None = None,
) -> np.ndarray:
    """Stack :func:`boxes_to_mask` over a batch: (N, H, W) bool. ``None`` boxes give empty masks."""
    out = np.zeros((len(boxes), *size), dtype=bool)
    for i, b in enumerate(boxes):
        if b is None:
            continue
        lab = labels[i] if labels is not None else None
        tgt = int(targets[i]) if (targets is not None and lab is not None) else None
        out[i] = boxes_to_mask(b, size, lab, tgt)
    return out
