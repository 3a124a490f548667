"""The attribution maps of a results folder, read as :class:`GalleryItem` s (arrays loaded on first use)
for the gallery, and the choice of the images it shows (:func:`select_items`).

Maps come from the attribution store of a results folder (:func:`iter_store`):

- the ``attributions/`` folder written by :class:`tfxai.results.AttributionStore` (one HDF5 part file per
  batch), read through ``AttributionStore(folder).iter_items()`` and ``.load(item)``;
- a single HDF5 file (``*.h5`` in the results folder), walked directly: every dataset whose path is
  ``model/method/.../image_id`` (at least three levels) is one attribution; ``model``, ``weights``,
  ``method``, ``image_id``, ``method_params`` and ``target`` attributes on the dataset or its groups
  override what the path says.
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
    #: the class the attribution explains (None when the store does not say)
    target: int | None = None

    def load(self) -> np.ndarray:
        """The attribution array, loaded on first use."""
        if self.attribution is None:
            if self.loader is None:
                raise ValueError(
                    f"no attribution stored for {self.model}/{self.method}/{self.image_id}"
                )
            self.attribution = np.asarray(self.loader())
        return self.attribution


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
                target=int_or_none(attrs.get("target")),
            )


def int_or_none(value: object) -> int | None:
    """``int(value)`` for a class index (negative means unknown), else None."""
    try:
        number = int(float(str(value)))
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


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
        target=int_or_none(getattr(raw, "target", None)),
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

