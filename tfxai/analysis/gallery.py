"""Read attribution maps, images, boxes and predictions for the gallery (image × method maps).

Maps come from the attribution store of a results folder:

- the ``attributions/`` folder written by :class:`tfxai.results.AttributionStore` (one HDF5 part file per
  batch), read through ``AttributionStore(folder).iter_items()`` and ``.load(item)``;
- a single HDF5 file (``*.h5`` in the results folder), walked directly: every dataset whose path is
  ``model/method/.../image_id`` (at least three levels) is one attribution; ``model``, ``weights``,
  ``method``, ``image_id``, ``method_params`` and ``target`` attributes on the dataset or its groups
  override what the path says.

**How a map is shown** (:func:`display_kind`), so the eye sees where the evidence is:

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

Images are looked up in the image folders (``--images``, else the ``images`` folders recorded in
``runs.jsonl``) by the image id (relative path without suffix, or stem), converted to RGB and resized
to the map's size with the run's resize mode (``squash`` or ``crop``). Boxes come from the Pascal VOC XML
of the image (``<annotations folder>/<image id or stem>.xml``, else the XML beside the image), transformed
like the image. True and predicted classes come from ``predictions.csv``; class names are ImageNet's
when the model has the 1000 ImageNet classes (ImageNet or random weights of a registered backbone),
the lines of a ``classes.txt`` beside a weights file (``tfxai finetune`` writes one), else the index.
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
from PIL import Image, UnidentifiedImageError

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


def _reduce(attribution: np.ndarray, reduce: str = "sum") -> np.ndarray:
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
    array = np.abs(_reduce(attribution, reduce))
    peak = _peak(array, percentile)
    return (np.clip(array / peak, 0.0, 1.0) if peak > 0 else array).astype(np.float32)


def signed_map(attribution: np.ndarray, percentile: float = DISPLAY_PERCENTILE) -> np.ndarray:
    """The channel sum divided by the ``percentile`` of its |value| and clipped: (H, W) in [−1, 1]."""
    array = _reduce(attribution, "sum")
    peak = _peak(np.abs(array), percentile)
    return (np.clip(array / peak, -1.0, 1.0) if peak > 0 else array).astype(np.float32)


def negative_share(attribution: np.ndarray) -> float:
    """Share of the channel-summed map's |mass| that is negative (0 for an all-zero map)."""
    array = _reduce(attribution, "sum")
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
                target=_int_or_none(attrs.get("target")),
            )


def _int_or_none(value: object) -> int | None:
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
        target=_int_or_none(getattr(raw, "target", None)),
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


def _dirs(images_dir: Path | str | Sequence[Path | str] | None) -> list[Path]:
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
    for root in _dirs(images_dir):
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
    for folder in _dirs(annotation_dirs):
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


# --------------------------------------------------------------------------------------- captions


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
        caption.label = _int_or_none(row.get("label"))
        caption.predicted = _int_or_none(row.get("predicted"))
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
        target = _int_or_none(row.get("target"))
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
        size = _reduce(item.load()).shape
        path = find_image(images_dir, item.image_id, index)
        images[item.image_id] = load_image(path, size, resize)
        xml = find_annotation(item.image_id, path, [*annotation_dirs, *_dirs(images_dir)])
        boxes[item.image_id] = load_boxes(xml, path, size, resize)
    return GalleryData(kept, images, boxes, captions(predictions, kept))
