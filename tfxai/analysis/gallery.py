"""The gallery's data: for the chosen images, the attribution maps of every method, the image, its
boxes and a caption per model (true and predicted class, confidence), gathered by :func:`collect_all`.

The pieces live in their own modules, and every name they define is importable from here too:

- :mod:`tfxai.analysis.stores`: reading the attribution stores (:class:`GalleryItem`,
  :func:`iter_store`) and choosing the images (:func:`select_items`);
- :mod:`tfxai.analysis.imagefiles`: finding, loading and resizing the images and their VOC boxes;
- :mod:`tfxai.analysis.display`: how each kind of map is shown (CAM heat, signed, magnitude) and the
  percentile clip.

True and predicted classes come from ``predictions.csv``; class names are ImageNet's when the model has
the 1000 ImageNet classes (ImageNet or random weights of a registered backbone), the lines of a
``classes.txt`` beside a weights file (``tfxai finetune`` writes one), else the index
(:func:`class_namer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .display import (
    CAM,
    CAM_METHODS,
    DISPLAY_PERCENTILE,
    MAGNITUDE,
    MAGNITUDE_METHODS,
    MAGNITUDE_TUNNELS,
    SIGNED,
    SIGNED_SHARE,
    display_kind,
    display_map,
    display_values,
    negative_share,
    reduce_channels,
    signed_map,
)
from .imagefiles import (
    IMAGE_SUFFIXES,
    existing_dirs,
    find_annotation,
    find_image,
    image_index,
    load_boxes,
    load_image,
    transform_boxes,
)
from .stores import GalleryItem, int_or_none, iter_store, select_items

__all__ = [
    "CAM",
    "CAM_METHODS",
    "DISPLAY_PERCENTILE",
    "IMAGE_SUFFIXES",
    "MAGNITUDE",
    "MAGNITUDE_METHODS",
    "MAGNITUDE_TUNNELS",
    "SIGNED",
    "SIGNED_SHARE",
    "Caption",
    "GalleryData",
    "GalleryItem",
    "captions",
    "class_namer",
    "collect",
    "collect_all",
    "display_kind",
    "display_map",
    "display_values",
    "find_annotation",
    "find_image",
    "image_index",
    "iter_store",
    "load_boxes",
    "load_image",
    "negative_share",
    "select_items",
    "signed_map",
    "target_name",
    "transform_boxes",
]

@dataclass
class Caption:
    """What the gallery says about one image for one model."""

    label: int | None = None
    predicted: int | None = None
    confidence: float | None = None
    label_name: str = ""
    predicted_name: str = ""

    @property
    def correct(self) -> bool | None:
        """True/False when both the label and the prediction are known, else None."""
        if self.label is None or self.predicted is None:
            return None
        return self.label == self.predicted


def _imagenet_name(index: int) -> str:
    from tfxai.data.imagenet import class_name

    return class_name(index).replace("_", " ") if 0 <= index < 1000 else f"class {index}"


def class_namer(model: str, weights: str) -> Callable[[int], str]:
    """Names of the classes of (``model``, ``weights``): a ``classes.txt`` beside a weights (or model)
    file, else ImageNet's for the ImageNet head of a registered backbone (weights ``imagenet`` or
    ``none``), else ``class <index>``."""
    for value in (weights, model):
        path = Path(str(value))
        if str(value) and path.suffix in (".keras", ".h5") and (path.parent / "classes.txt").is_file():
            names = [line.strip() for line in (path.parent / "classes.txt").read_text().splitlines()
                     if line.strip()]  # fmt: skip
            return lambda i: names[i] if 0 <= i < len(names) else f"class {i}"
    is_file = Path(str(model)).suffix in (".keras", ".h5")
    if not is_file and str(weights) in ("imagenet", "none", ""):
        return _imagenet_name
    return lambda i: f"class {i}"


def captions(
    predictions: pd.DataFrame | None, items: Sequence[GalleryItem]
) -> dict[tuple[str, str], Caption]:
    """(model_id, image_id) → :class:`Caption` for the images of ``items``, from ``predictions.csv``
    rows (columns image_id, model, weights, label, predicted, confidence). Items that do not record
    their weights (a bare HDF5 store) match the prediction rows of their model by name."""
    out: dict[tuple[str, str], Caption] = {}
    namers: dict[tuple[str, str], Callable[[int], str]] = {}
    wanted: dict[tuple[str, str, str], tuple[str, str]] = {}
    loose: dict[tuple[str, str], tuple[str, str]] = {}
    for item in items:
        key = (item.model_id or item.model, item.image_id)
        out.setdefault(key, Caption())
        namers.setdefault(key, class_namer(item.model, item.weights))
        wanted[(item.model, item.weights, item.image_id)] = key
        if not item.weights:
            loose[(item.model, item.image_id)] = key
    rows = [] if predictions is None or predictions.empty else predictions.to_dict("records")
    for row in rows:
        weights = row.get("weights", "")
        weights = "" if weights is None or (isinstance(weights, float) and pd.isna(weights)) else weights
        model, image_id = str(row.get("model", "")), str(row.get("image_id"))
        key = wanted.get((model, str(weights), image_id)) or loose.get((model, image_id))
        if key is None:
            continue
        caption = out[key]
        caption.label = int_or_none(row.get("label"))
        caption.predicted = int_or_none(row.get("predicted"))
        confidence = pd.to_numeric(pd.Series([row.get("confidence")]), errors="coerce").iloc[0]
        caption.confidence = None if pd.isna(confidence) else float(confidence)
    for key, caption in out.items():
        name = namers[key]
        caption.label_name = "" if caption.label is None else name(caption.label)
        caption.predicted_name = "" if caption.predicted is None else name(caption.predicted)
    return out


def _fill_targets(items: Sequence[GalleryItem], scores: pd.DataFrame | None) -> None:
    """Set the missing targets of ``items`` from ``scores`` rows of the same model, method and image
    (and weights, when the item records them)."""
    needed = [i for i in items if i.target is None]
    if not needed or scores is None or scores.empty or "target" not in scores.columns:
        return
    columns = [c for c in ("model", "weights", "method", "image_id", "target") if c in scores.columns]
    found: dict[tuple[str, str, str], set[int]] = {}
    exact: dict[tuple[str, str, str, str], set[int]] = {}
    for row in scores[columns].drop_duplicates().to_dict("records"):
        target = int_or_none(row.get("target"))
        if target is None:
            continue
        key = (str(row["model"]), str(row["method"]), str(row["image_id"]))
        found.setdefault(key, set()).add(target)
        exact.setdefault((*key, str(row.get("weights", ""))), set()).add(target)
    for item in needed:
        key = (item.model, item.method, item.image_id)
        targets = exact.get((*key, item.weights)) if item.weights else found.get(key)
        if targets and len(targets) == 1:
            item.target = next(iter(targets))


def target_name(item: GalleryItem) -> str:
    """The name of the class ``item`` explains ("" when unknown)."""
    if item.target is None:
        return ""
    return class_namer(item.model, item.weights)(item.target)


# --------------------------------------------------------------------------------------- collection


@dataclass
class GalleryData:
    """Everything one gallery figure needs."""

    items: list[GalleryItem]
    images: dict[str, np.ndarray | None]
    boxes: dict[str, np.ndarray | None] = field(default_factory=dict)
    captions: dict[tuple[str, str], Caption] = field(default_factory=dict)


def collect(
    store_paths: Sequence[Path],
    n_images: int,
    images_dir: Path | Sequence[Path] | None = None,
    image_ids: Sequence[str] | None = None,
    resize: str = "squash",
) -> tuple[list[GalleryItem], dict[str, np.ndarray | None]]:
    """Gallery items from every store, with the image (or None) for each chosen image id."""
    data = collect_all(store_paths, n_images, images_dir, image_ids, resize)
    return data.items, data.images


def collect_all(
    store_paths: Sequence[Path],
    n_images: int,
    images_dir: Path | Sequence[Path] | None = None,
    image_ids: Sequence[str] | None = None,
    resize: str = "squash",
    annotation_dirs: Sequence[Path] = (),
    predictions: pd.DataFrame | None = None,
    scores: pd.DataFrame | None = None,
) -> GalleryData:
    """:func:`collect` plus the boxes of each image (from its VOC XML) and the captions. An item whose
    store does not record its target takes it from the ``target`` column of ``scores``."""
    items: list[GalleryItem] = []
    for path in store_paths:
        items.extend(iter_store(Path(path)))
    kept = select_items(items, n_images, image_ids)
    _fill_targets(kept, scores)
    images: dict[str, np.ndarray | None] = {}
    boxes: dict[str, np.ndarray | None] = {}
    index = image_index(images_dir) if kept else {}
    for item in kept:
        if item.image_id in images:
            continue
        size = reduce_channels(item.load()).shape
        path = find_image(images_dir, item.image_id, index)
        images[item.image_id] = load_image(path, size, resize)
        xml = find_annotation(item.image_id, path, [*annotation_dirs, *existing_dirs(images_dir)])
        boxes[item.image_id] = load_boxes(xml, path, size, resize)
    return GalleryData(kept, images, boxes, captions(predictions, kept))
