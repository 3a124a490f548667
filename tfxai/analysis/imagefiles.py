"""The image files and Pascal VOC boxes the gallery draws under the maps.

Images are looked up in the image folders (``--images``, else the ``images`` folders recorded in
``runs.jsonl``) by the image id (relative path without suffix, or stem; :func:`find_image`), converted
to RGB and resized to the map's size with the run's resize mode (``squash`` or ``crop``;
:func:`load_image`). Boxes come from the Pascal VOC XML of the image (``<annotations folder>/<image id
or stem>.xml``, else the XML beside the image; :func:`find_annotation`), transformed like the image
(:func:`load_boxes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def existing_dirs(images_dir: Path | str | Sequence[Path | str] | None) -> list[Path]:
    """One folder, several, or None as a list of existing folders (order kept, duplicates dropped)."""
    if images_dir is None:
        return []
    given = [images_dir] if isinstance(images_dir, str | Path) else list(images_dir)
    out: dict[Path, None] = {}
    for folder in given:
        if folder is not None and Path(folder).is_dir():
            out.setdefault(Path(folder), None)
    return list(out)


def image_index(images_dir: Path | Sequence[Path] | None) -> dict[str, Path]:
    """Image files under ``images_dir`` (one folder or several) keyed by relative path without suffix,
    relative path and stem.

    tfxai names an image by its path relative to the image folder, without suffix (``n01440764/x``), or
    by its stem; both are keys. The first file in sorted order (first folder first) wins a key.
    """
    index: dict[str, Path] = {}
    for root in existing_dirs(images_dir):
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            rel = path.relative_to(root)
            for key in (rel.with_suffix("").as_posix(), rel.as_posix(), path.stem):
                index.setdefault(key, path)
    return index


def find_image(
    images_dir: Path | Sequence[Path] | None, image_id: str, index: dict[str, Path] | None = None
) -> Path | None:
    """The image file for ``image_id`` in ``images_dir`` (see :func:`image_index`), or None."""
    index = image_index(images_dir) if index is None else index
    return index.get(image_id) or index.get(Path(image_id).stem)


def _open_rgb(path: Path) -> Image.Image | None:
    """The image at ``path`` as RGB, or None when unreadable."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError):
        return None


def _crop_geometry(
    original: tuple[int, int], size: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """For ``crop``: the scaled (width, height) covering ``size`` = (H, W), and the (left, top) offset
    of the centred crop, as :func:`tfxai.data.images.resize_image` computes them."""
    width, height = original
    scale = max(size[0] / height, size[1] / width)
    scaled = (max(size[1], round(width * scale)), max(size[0], round(height * scale)))
    return scaled, ((scaled[0] - size[1]) // 2, (scaled[1] - size[0]) // 2)


def load_image(
    path: Path | None, size: tuple[int, int], resize: str = "squash"
) -> np.ndarray | None:
    """Load ``path`` as RGB uint8 at ``size`` = (H, W); None when absent or unreadable.

    ``resize`` follows the run's mode: ``squash`` resizes without cropping; ``crop`` scales the shorter
    side to cover ``size`` and centre-crops.
    """
    if path is None:
        return None
    rgb = _open_rgb(path)
    if rgb is None:
        return None
    height, width = size
    if resize == "crop":
        scaled, (left, top) = _crop_geometry(rgb.size, size)
        rgb = rgb.resize(scaled, Image.BILINEAR)
        return np.asarray(rgb.crop((left, top, left + width, top + height)))
    return np.asarray(rgb.resize((width, height), Image.BILINEAR))


def transform_boxes(
    boxes: np.ndarray, original: tuple[int, int], size: tuple[int, int], resize: str = "squash"
) -> np.ndarray:
    """Boxes (K, 4: xmin, ymin, xmax, ymax, half-open) of an image of ``original`` = (width, height)
    in the coordinates of the resized image of ``size`` = (H, W); boxes cropped away are dropped."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width, height = original
    if resize == "crop":
        (sw, sh), (left, top) = _crop_geometry(original, size)
        sx, sy, ox, oy = sw / width, sh / height, float(left), float(top)
    else:
        sx, sy, ox, oy = size[1] / width, size[0] / height, 0.0, 0.0
    out = np.empty_like(b)
    out[:, [0, 2]] = np.clip(b[:, [0, 2]] * sx - ox, 0, size[1])
    out[:, [1, 3]] = np.clip(b[:, [1, 3]] * sy - oy, 0, size[0])
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out[keep]


def find_annotation(
    image_id: str, image_path: Path | None, annotation_dirs: Sequence[Path] = ()
) -> Path | None:
    """The VOC XML of an image: ``<dir>/<image_id>.xml`` or ``<dir>/<stem>.xml`` in the annotation
    folders, else the XML with the image's stem beside the image."""
    stems = [image_id, Path(image_id).name]
    if image_path is not None:
        stems.append(image_path.stem)
    for folder in existing_dirs(annotation_dirs):
        for stem in stems:
            candidate = folder / f"{stem}.xml"
            if candidate.is_file():
                return candidate
    if image_path is not None and image_path.with_suffix(".xml").is_file():
        return image_path.with_suffix(".xml")
    return None


def load_boxes(
    xml: Path | None, image_path: Path | None, size: tuple[int, int], resize: str = "squash"
) -> np.ndarray | None:
    """The boxes of ``xml`` in the coordinates of the image resized to ``size``; None when there is no
    readable annotation (or the image's original size is unknown)."""
    if xml is None:
        return None
    from tfxai.data.annotations import AnnotationError, parse_voc

    try:
        annotation = parse_voc(xml)
    except AnnotationError:
        return None
    original: tuple[int, int] | None = None
    if image_path is not None:
        try:
            with Image.open(image_path) as image:
                original = image.size
        except (OSError, UnidentifiedImageError):
            original = None
    if original is None and annotation.width and annotation.height:
        original = (int(annotation.width), int(annotation.height))
    if original is None:
        return None
    return transform_boxes(annotation.boxes, original, size, resize)
