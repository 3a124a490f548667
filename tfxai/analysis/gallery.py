"""Read attribution maps and images for the gallery (image × method maps overlaid on the images).

Maps come from the attribution store of a results folder:

- the ``attributions/`` folder written by :class:`tfxai.results.AttributionStore` (one HDF5 part file per
  batch), read through ``AttributionStore(folder).iter_items()`` and ``.load(item)``;
- a single HDF5 file (``*.h5`` in the results folder), walked directly: every dataset whose path is
  ``model/method/.../image_id`` (at least three levels) is one attribution; ``model``, ``weights``,
  ``method``, ``image_id`` and ``method_params`` attributes on the dataset or its groups override what the
  path says.

A raw attribution (H, W, C) is reduced to a display map by summing the channels, taking the absolute value
and dividing by its 99th percentile (clipping above it), so every map lies in [0, 1]: pixel-level
gradient maps are dominated by a few extreme pixels and would look black when divided by their maximum
(the usual visualisation clip of Smilkov et al. 2017). Maps with few non-zero pixels fall back to the
maximum. Images are looked up in ``--images DIR`` by the
image id (relative path without suffix, or stem), converted to RGB and resized to the map's size with the
run's resize mode (``squash`` or ``crop``, from ``runs.jsonl``); a missing image leaves the map alone.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .modelinfo import model_id_map

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class GalleryItem:
    """One stored attribution."""

    model: str
    method: str
    image_id: str
    attribution: np.ndarray | None = None
    method_params: str = ""
    weights: str = ""
    model_id: str = (
        ""  # display label: the model name, or model[weights] when one model has several
    )
    attrs: dict[str, object] = field(default_factory=dict)
    loader: Callable[[], np.ndarray] | None = None

    def load(self) -> np.ndarray:
        """The attribution array, loaded on first use."""
        if self.attribution is None:
            if self.loader is None:
                raise ValueError(
                    f"no attribution stored for {self.model}/{self.method}/{self.image_id}"
                )
            self.attribution = np.asarray(self.loader())
        return self.attribution


DISPLAY_PERCENTILE = 99.0


def display_map(attribution: np.ndarray, percentile: float = DISPLAY_PERCENTILE) -> np.ndarray:
    """Reduce a raw attribution to an (H, W) float32 map in [0, 1] (module docstring)."""
    array = np.asarray(attribution, dtype=np.float64)
    array = np.squeeze(array)
    if array.ndim == 3:
        array = array.sum(axis=-1) if array.shape[-1] <= 4 else array.sum(axis=0)
    if array.ndim != 2:
        raise ValueError(f"cannot display an attribution of shape {np.shape(attribution)}")
    array = np.abs(np.nan_to_num(array))
    peak = float(np.percentile(array, percentile)) if array.size else 0.0
    if peak <= 0:
        peak = float(array.max()) if array.size else 0.0
    return (np.clip(array / peak, 0.0, 1.0) if peak > 0 else array).astype(np.float32)


def _text(value: object) -> str:
    """Attribute values as text (h5py returns bytes for some strings)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _h5_items(path: Path) -> Iterator[GalleryItem]:
    """Walk an HDF5 store (fallback layout) and yield items without loading the arrays."""
    import h5py

    with h5py.File(path, "r") as handle:
        names: list[str] = []
        handle.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        for name in sorted(names):
            parts = name.split("/")
            if len(parts) < 3:
                continue
            attrs: dict[str, object] = {}
            for depth in range(1, len(parts) + 1):
                node = handle["/".join(parts[:depth])]
                attrs.update({k: _text(v) for k, v in node.attrs.items()})
            yield GalleryItem(
                model=str(attrs.get("model", parts[0])),
                method=str(attrs.get("method", parts[1])),
                image_id=str(attrs.get("image_id", parts[-1])),
                method_params=str(attrs.get("method_params", "")),
                weights=str(attrs.get("weights", "")),
                attrs=attrs,
                loader=functools.partial(_load_h5_array, path, name),
            )


def _load_h5_array(path: Path, name: str) -> np.ndarray:
    """Load dataset ``name`` of the HDF5 file ``path``."""
    import h5py

    with h5py.File(path, "r") as handle:
        return np.asarray(handle[name][()])


def _store_items(folder: Path) -> Iterator[GalleryItem] | None:
    """Items of a ``tfxai.results.AttributionStore`` folder, or None when that API is unavailable."""
    try:
        results = importlib.import_module("tfxai.results")
    except Exception:  # noqa: BLE001 - the store module is optional; fall back to reading HDF5 files
        return None
    store_cls = getattr(results, "AttributionStore", None)
    if store_cls is None or not hasattr(store_cls, "iter_items"):
        return None
    store = store_cls(folder)
    return (_from_stored(store, raw) for raw in store.iter_items())


def _from_stored(store: object, raw: object) -> GalleryItem:
    """A :class:`GalleryItem` for one ``StoredItem`` of the store, loaded through ``store.load``."""
    return GalleryItem(
        model=str(raw.model),
        method=str(raw.method),
        image_id=str(raw.image_id),
        method_params=_text(getattr(raw, "method_params", "")),
        weights=str(getattr(raw, "weights", "")),
        loader=functools.partial(store.load, raw),
    )


def iter_store(path: Path) -> Iterator[GalleryItem]:
    """Yield the attributions of a store folder or HDF5 file at ``path`` (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        items = _store_items(path)
        if items is not None:
            yield from items
            return
        for part in sorted(path.rglob("*.h5")):
            yield from _h5_items(part)
        return
    yield from _h5_items(path)


def select_items(
    items: Iterable[GalleryItem], n_images: int, image_ids: Sequence[str] | None = None
) -> list[GalleryItem]:
    """Keep the items of the chosen images: ``image_ids`` if given, else the first ``n_images`` sorted ids.

    Arrays are loaded only for the kept items. For one (model, method, image) the first item wins.
    """
    listed = list(items)
    chosen = (
        list(image_ids) if image_ids else sorted({i.image_id for i in listed})[: max(n_images, 0)]
    )
    wanted = set(chosen)
    kept: dict[tuple[str, str, str, str], GalleryItem] = {}
    for item in listed:
        key = (item.model, item.weights, item.method, item.image_id)
        if item.image_id in wanted and key not in kept:
            item.load()
            kept[key] = item
    order = {image_id: k for k, image_id in enumerate(chosen)}
    ids = model_id_map(pd.DataFrame({"model": [i.model for i in kept.values()],
                                     "weights": [i.weights for i in kept.values()]}))  # fmt: skip
    for item in kept.values():
        item.model_id = ids.get((item.model, item.weights), item.model)
    return sorted(kept.values(), key=lambda i: (i.model_id, order[i.image_id], i.method))


def image_index(images_dir: Path | None) -> dict[str, Path]:
    """Image files under ``images_dir`` keyed by relative path without suffix, relative path and stem.

    tfxai names an image by its path relative to the image folder, without suffix (``n01440764/x``), or
    by its stem; both are keys. The first file in sorted order wins a key.
    """
    index: dict[str, Path] = {}
    if images_dir is None or not Path(images_dir).is_dir():
        return index
    root = Path(images_dir)
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        rel = path.relative_to(root)
        for key in (rel.with_suffix("").as_posix(), rel.as_posix(), path.stem):
            index.setdefault(key, path)
    return index


def find_image(
    images_dir: Path | None, image_id: str, index: dict[str, Path] | None = None
) -> Path | None:
    """The image file for ``image_id`` in ``images_dir`` (see :func:`image_index`), or None."""
    index = image_index(images_dir) if index is None else index
    return index.get(image_id) or index.get(Path(image_id).stem)


def load_image(
    path: Path | None, size: tuple[int, int], resize: str = "squash"
) -> np.ndarray | None:
    """Load ``path`` as RGB uint8 at ``size`` = (H, W); None when absent or unreadable.

    ``resize`` follows the run's mode: ``squash`` resizes without cropping; ``crop`` scales the shorter
    side to cover ``size`` and centre-crops.
    """
    if path is None:
        return None
    from PIL import Image, UnidentifiedImageError

    height, width = size
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if resize == "crop":
                scale = max(height / rgb.height, width / rgb.width)
                scaled = (
                    max(width, round(rgb.width * scale)),
                    max(height, round(rgb.height * scale)),
                )
                rgb = rgb.resize(scaled, Image.BILINEAR)
                left, top = (scaled[0] - width) // 2, (scaled[1] - height) // 2
                return np.asarray(rgb.crop((left, top, left + width, top + height)))
            return np.asarray(rgb.resize((width, height), Image.BILINEAR))
    except (OSError, UnidentifiedImageError):
        return None


def collect(
    store_paths: Sequence[Path],
    n_images: int,
    images_dir: Path | None = None,
    image_ids: Sequence[str] | None = None,
    resize: str = "squash",
) -> tuple[list[GalleryItem], dict[str, np.ndarray | None]]:
    """Gallery items from every store, with the image (or None) for each chosen image id."""
    items: list[GalleryItem] = []
    for path in store_paths:
        items.extend(iter_store(Path(path)))
    kept = select_items(items, n_images, image_ids)
    images: dict[str, np.ndarray | None] = {}
    index = image_index(images_dir) if kept else {}
    for item in kept:
        if item.image_id not in images:
            shape = display_map(item.load()).shape
            images[item.image_id] = load_image(
                find_image(images_dir, item.image_id, index), shape, resize
            )
    return kept, images
