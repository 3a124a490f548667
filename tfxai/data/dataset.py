"""Image datasets: discovery, labels, annotations and batch loading.

Sources:

* a folder of images (searched recursively); an ImageNet-style folder with one sub-folder per
  synset gives each image the label of its folder;
* a text file listing image paths, one per line (relative paths are relative to the list);
* an explicit list of paths.

Annotations: with an ``annotations`` folder, the VOC XML file ``<image_id>.xml`` or ``<stem>.xml``
in it; without one, the VOC XML file next to the image with the same stem (``img.jpg`` →
``img.xml``), as ImageNet's validation boxes and ``tfxai synth`` lay them out. Segmentation masks
(PNG, non-zero = object) are found the same way, next to or instead of the XML files
(:mod:`tfxai.data.masks`); a mask file next to its image is not an image.

Labels come, in that order of precedence, from a CSV ``image,label`` (label: class index or
synset), a file-name pattern (``name_pattern="sim_{synset}_"``, :mod:`tfxai.data.names`), the
VOC XML annotation, or the folder name when it is a synset (``Sample.label`` holds the CSV, name
or folder label and ``Sample.label_source`` where it came from; the XML is read when the image is
loaded and overrides only a folder label).
"""

from __future__ import annotations

import csv
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfxai.data.annotations import Annotation, AnnotationError, parse_voc
from tfxai.data.imagenet import parse_label, synset_to_index
from tfxai.data.images import IMAGE_EXTENSIONS, ImageLoadError, load_image, resize_image
from tfxai.data.masks import (
    MaskError,
    attach_mask,
    find_mask,
    load_mask,
    mask_files,
    transform_mask,
)
from tfxai.data.names import NamePattern, compile_name_pattern

__all__ = ["Sample", "Batch", "DatasetError", "ImageSet", "discover", "load_batch", "iter_batches",
           "load_images", "shard", "image_seeds"]


class DatasetError(ValueError):
    """A dataset source that cannot be used at all (missing folder, no images, bad CSV)."""


@dataclass
class Sample:
    """One image of a dataset, before loading."""

    image_id: str
    path: Path
    label: int | None = None
    annotation_path: Path | None = None
    #: where ``label`` came from: "csv", "name" (a file-name pattern), "folder" or "" (the XML,
    #: read at load time, overrides a folder label but not a CSV or file-name label)
    label_source: str = ""
    #: segmentation mask PNG (non-zero = object), or None
    mask_path: Path | None = None

    @property
    def has_ground_truth(self) -> bool:
        """True when the image has VOC boxes or a segmentation mask."""
        return self.annotation_path is not None or self.mask_path is not None

    @property
    def seed_key(self) -> int:
        """A stable 32-bit key of the image id, used to derive per-image random streams
        (:func:`image_seeds` gives the same keys for a list of ids)."""
        return zlib.crc32(self.image_id.encode("utf-8"))


@dataclass
class Batch:
    """Loaded, resized images with their boxes; failed images are listed in ``errors``."""

    samples: list[Sample]
    images: np.ndarray  # (N, H, W, 3) float32 0..255
    boxes: list[np.ndarray | None]
    box_labels: list[np.ndarray | None]
    labels: np.ndarray  # (N,) int, -1 when unknown
    notes: list[list[str]] = field(default_factory=list)
    errors: list[tuple[Sample, str]] = field(default_factory=list)

    @property
    def image_ids(self) -> list[str]:
        return [s.image_id for s in self.samples]


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS


def _image_id(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            rel = path.relative_to(root)
            return rel.with_suffix("").as_posix()
        except ValueError:
            pass
    return path.stem


def _read_list(list_file: Path) -> list[Path]:
    paths = []
    for line in list_file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line)
            paths.append(p if p.is_absolute() else list_file.parent / p)
    return paths


def _read_labels_csv(path: Path) -> dict[str, int | None]:
    if not path.exists():
        raise DatasetError(f"labels CSV {str(path)!r} does not exist")
    out: dict[str, int | None] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:  # Excel writes a byte-order mark
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"image", "label"} <= set(reader.fieldnames):
            raise DatasetError(f"labels CSV {str(path)!r} needs the columns 'image,label'")
        for row in reader:
            try:
                label = parse_label(row["label"])
            except ValueError as exc:
                raise DatasetError(f"{path}: {exc}") from None
            key = Path(row["image"]).with_suffix("").as_posix()
            out[key] = label
            out[Path(key).name] = label
    return out


def _list_paths(
    source: str | os.PathLike | Sequence[str | os.PathLike],
) -> tuple[list[Path], Path | None]:
    """The image paths of ``source`` and its root folder (``None`` unless it is a folder);
    mask files in a folder are not images."""
    if not isinstance(source, (str, os.PathLike)):
        return [Path(p) for p in source], None
    src = Path(source)
    if not src.exists():
        raise DatasetError(f"image source {str(src)!r} does not exist")
    if src.is_dir():
        paths = sorted(p for p in src.rglob("*") if _is_image(p))
        masks = mask_files(paths)
        return [p for p in paths if p not in masks], src
    if src.suffix.lower() in IMAGE_EXTENSIONS:
        return [src], None
    return _read_list(src), None


def _name_pattern(name_pattern: str | None) -> NamePattern | None:
    """The compiled file-name pattern, or ``None``; a bad pattern is a :class:`DatasetError`."""
    try:
        return compile_name_pattern(name_pattern) if name_pattern else None
    except ValueError as exc:
        raise DatasetError(str(exc)) from None


def _label_of(
    path: Path, image_id: str, root: Path | None, csv_labels: dict[str, int | None],
    pattern: NamePattern | None,
) -> tuple[int | None, str]:
    """An image's label and where it came from (``"csv"``, ``"name"``, ``"folder"`` or ``""``),
    in that order of precedence."""
    label = csv_labels.get(image_id, csv_labels.get(path.stem))
    source = "csv" if label is not None else ""
    if label is None and pattern is not None:
        found = pattern.read(path.stem)
        if found.matched:  # a synset outside ImageNet-1k matches without a label
            label, source = found.label, "name"
    if label is None and not source and root is not None and path.parent != root:
        label = synset_to_index(path.parent.name)
        source = "folder" if label is not None else ""
    return label, source


def discover(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    annotations: str | os.PathLike | None = None,
    labels_csv: str | os.PathLike | None = None,
    limit: int | None = None,
    name_pattern: str | None = None,
) -> list[Sample]:
    """List the images of a source, sorted by image id, with their label, annotation and mask file.

    ``annotations``: a folder of VOC XML files and/or mask PNGs; when None, each image's XML file
    and mask are looked for next to it (same stem; :func:`tfxai.data.masks.find_mask`).
    ``labels_csv``: a CSV ``image,label`` (class index or synset). ``name_pattern``: labels from
    the file stems, e.g. ``sim_{synset}_`` (:mod:`tfxai.data.names`).

    Raises:
        DatasetError: the source does not exist or holds no image, or a bad CSV or name pattern.
    """
    paths, root = _list_paths(source)
    if not paths:
        raise DatasetError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {str(source)!r}"
        )
    ann_dir = Path(annotations) if annotations is not None else None
    if ann_dir is not None and not ann_dir.is_dir():
        raise DatasetError(f"annotations folder {str(ann_dir)!r} does not exist")
    csv_labels = _read_labels_csv(Path(labels_csv)) if labels_csv is not None else {}
    pattern = _name_pattern(name_pattern)
    samples = []
    for p in paths:
        image_id = _image_id(p, root)
        ann = _find_annotation(p, image_id, ann_dir)
        label, label_source = _label_of(p, image_id, root, csv_labels, pattern)
        samples.append(Sample(image_id=image_id, path=p, label=label, annotation_path=ann,
                              label_source=label_source))
    _make_ids_unique(samples, root)
    for s in samples:  # after the ids are final: masks may be named by image id
        s.mask_path = find_mask(s.path, s.image_id, ann_dir)
    samples.sort(key=lambda s: s.image_id)
    return samples[:limit] if limit is not None else samples


def _make_ids_unique(samples: list[Sample], root: Path | None) -> None:
    """Image ids key the results: files that would share one get longer ids.

    Colliding ids become the path relative to the common folder of the colliding files, with the
    extension (``y.jpg`` / ``y.png``; ``a/x`` / ``b/x`` for a list with ``a/x.jpg`` and
    ``b/x.jpg``). The same file listed twice is an error.
    """
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.image_id, []).append(s)
    for group in groups.values():
        if len(group) < 2:
            continue
        paths = [s.path.resolve() for s in group]
        if len(set(paths)) < len(paths):
            raise DatasetError(f"image {str(group[0].path)!r} is listed more than once")
        base = Path(os.path.commonpath([p.parent for p in paths]))
        rels = [p.relative_to(base) for p in paths]
        stems = [r.with_suffix("").as_posix() for r in rels]
        new = stems if len(set(stems)) == len(stems) else [r.as_posix() for r in rels]
        for s, n in zip(group, new, strict=True):
            s.image_id = n


def _find_annotation(path: Path, image_id: str, ann_dir: Path | None) -> Path | None:
    """The annotation file of an image: in ``ann_dir`` when given, else next to the image."""
    if ann_dir is None:
        cands: tuple[Path, ...] = (path.with_suffix(".xml"),)
    else:
        cands = (ann_dir / f"{image_id}.xml", ann_dir / f"{path.stem}.xml")
    for cand in cands:
        if cand.is_file():
            return cand
    return None


def shard(samples: list[Sample], index: int, count: int) -> list[Sample]:
    """Deterministic shard ``index`` of ``count``: images whose id hashes to that shard."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {index}/{count}")
    return [s for s in samples if s.seed_key % count == index]


def _load_one(
    sample: Sample, size: tuple[int, int], resize: str, want_boxes: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, int | None, list[str]]:
    img = load_image(sample.path)
    resized, tr = resize_image(img, size, resize)
    notes: list[str] = []
    label = sample.label
    boxes = box_labels = None
    if sample.annotation_path is not None:
        ann: Annotation = parse_voc(sample.annotation_path)
        notes.extend(ann.notes)
        ann_boxes = ann.boxes
        if ann.width and ann.height and (ann.width, ann.height) != (img.shape[1], img.shape[0]):
            scale = np.array([img.shape[1] / ann.width, img.shape[0] / ann.height] * 2)
            ann_boxes = ann_boxes * scale.astype(np.float32)
            notes.append(
                f"annotation size {ann.width}x{ann.height} differs from the image "
                f"{img.shape[1]}x{img.shape[0]}; boxes scaled to the image"
            )
        if len(ann_boxes):
            boxes, keep = tr.apply(ann_boxes)
            box_labels = ann.labels[keep]
            if not keep.all():
                notes.append(f"{int((~keep).sum())} box(es) outside the resized image dropped")
            boxes = boxes[keep]
            if not len(boxes):
                boxes = box_labels = None
        if sample.label_source not in ("csv", "name") and ann.label is not None:
            label = ann.label
    elif want_boxes and sample.mask_path is None:
        notes.append("no annotation file")
    if sample.mask_path is not None:
        mask, mask_notes = transform_mask(load_mask(sample.mask_path), tr, img.shape[:2])
        notes.extend(mask_notes)
        if mask.any():
            if boxes is None:
                box_labels = None
            boxes = attach_mask(boxes, mask)
            if box_labels is None:  # boxes of the mask's components: the image's class, if known
                box_labels = np.full(len(boxes), -1 if label is None else int(label), np.int64)
        else:
            notes.append("empty segmentation mask (after resizing)")
    return resized, boxes, box_labels, label, notes


def load_batch(
    samples: Sequence[Sample], size: tuple[int, int], resize: str = "squash"
) -> Batch:
    """Load and resize a batch. Unreadable images and broken annotations go to ``Batch.errors``."""
    ok, images, boxes, box_labels, labels, notes, errors = [], [], [], [], [], [], []
    for s in samples:
        try:
            img, b, bl, label, n = _load_one(s, size, resize, want_boxes=False)
        except (ImageLoadError, AnnotationError, MaskError) as exc:
            errors.append((s, str(exc)))
            continue
        ok.append(s)
        images.append(img)
        boxes.append(b)
        box_labels.append(bl)
        labels.append(-1 if label is None else label)
        notes.append(n)
    arr = np.stack(images) if images else np.zeros((0, *size, 3), np.float32)
    return Batch(ok, arr, boxes, box_labels, np.asarray(labels, dtype=np.int64), notes, errors)


def iter_batches(
    samples: Sequence[Sample], size: tuple[int, int], batch_size: int, resize: str = "squash"
) -> Iterator[Batch]:
    """Stream batches from disk; only one batch of images is in memory at a time."""
    for i in range(0, len(samples), batch_size):
        yield load_batch(samples[i : i + batch_size], size, resize)


def image_seeds(image_ids: Sequence[str]) -> np.ndarray:
    """The per-image seeds the CLI derives from image ids (:attr:`Sample.seed_key`), int64 (N,).

    Pass them as ``seeds=`` to ``Attributer.attribute`` and ``Metric.score``/``evaluate`` to get
    the random streams (noise, perturbations, samples) of a ``tfxai attribute``/``evaluate`` run.
    """
    return np.array([zlib.crc32(str(i).encode("utf-8")) for i in image_ids], dtype=np.int64)


@dataclass
class ImageSet:
    """Images loaded as the CLI loads them (:func:`load_images`)."""

    #: (N, H, W, 3) float32 RGB 0..255 at the requested size
    images: np.ndarray
    #: image ids, as in the ``image_id`` column of the results (sorted)
    ids: list[str]
    #: (N,) int class indices, -1 when unknown (CSV, VOC XML or synset folder)
    labels: np.ndarray
    #: per image: (K, 4) float32 boxes ``xmin, ymin, xmax, ymax`` in resized pixel coordinates
    #: (0-based, half-open), or None without an annotation; an image with a segmentation mask has
    #: a :class:`~tfxai.data.masks.GroundTruth` that also carries the mask (see :attr:`masks`)
    boxes: list[np.ndarray | None]
    #: per image: (K,) class index of each box (-1 for a name that is not an ImageNet synset)
    box_labels: list[np.ndarray | None]
    #: (N,) int64 per-image seeds, derived from the ids exactly as the CLI does
    seeds: np.ndarray
    paths: list[Path]
    #: per image: what the loader fixed or noticed (boxes clipped, annotation size, ...)
    notes: list[list[str]]
    #: images that could not be read: (path, reason); they are not in ``images``
    errors: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def masks(self) -> list[np.ndarray | None]:
        """Per image: the (H, W) boolean segmentation mask at the loaded size, or None."""
        from tfxai.data.masks import mask_of

        return [mask_of(b) for b in self.boxes]


def load_images(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    size: tuple[int, int] | Any,
    *,
    annotations: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    resize: str = "squash",
    limit: int | None = None,
    labels_from_name: str | None = None,
) -> ImageSet:
    """Load images, ids, labels, boxes and seeds exactly as ``tfxai attribute``/``evaluate`` do.

    The same discovery (sorted by image id; VOC XML and mask PNGs from ``annotations`` or next to
    each image; labels from the ``labels`` CSV, a file-name pattern, the XML or a synset folder), the same resize (``squash`` or
    ``crop``, boxes transformed with the image) and the same per-image seeds (from the image id),
    so ``att.attribute(s.images, targets, seeds=s.seeds)`` and ``metric.score(..., boxes=s.boxes,
    seeds=s.seeds)`` give the values of the CLI's ``scores.csv`` rows.

    Args:
        source: a folder (recursive), a text file listing image paths, one image, or a list of paths.
        size: ``(H, W)``, or a backbone (its ``input_size`` is used).
        annotations: a folder of VOC XML files (default: next to the images).
        labels: a CSV with columns ``image,label`` (class index or synset).
        labels_from_name: a file-name pattern such as ``sim_{synset}_`` (:mod:`tfxai.data.names`).
        resize: ``squash`` (default) or ``crop``.
        limit: only the first N images (in image-id order, as ``--limit``).

    Raises:
        DatasetError: the source does not exist or holds no image, or a bad labels CSV.

    Unreadable images are left out and listed in ``errors`` (with a warning).
    """
    import warnings

    hw = getattr(size, "input_size", size)
    try:
        h, w = (int(v) for v in hw)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (H, W) or a backbone, got {size!r}") from None
    samples = discover(source, annotations, labels, limit=limit, name_pattern=labels_from_name)
    batch = load_batch(samples, (h, w), resize)
    errors = [(s.path, msg) for s, msg in batch.errors]
    if errors:
        warnings.warn(f"{len(errors)} image(s) could not be read and are left out: "
                      + "; ".join(msg for _, msg in errors[:3]), stacklevel=2)
    ids = batch.image_ids
    return ImageSet(
        images=batch.images, ids=ids, labels=batch.labels, boxes=batch.boxes,
        box_labels=batch.box_labels, seeds=image_seeds(ids),
        paths=[s.path for s in batch.samples], notes=batch.notes, errors=errors,
    )
