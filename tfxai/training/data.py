"""Training data: an ImageNet-style folder (one sub-folder per class), its train/test split
(the folder's own, or a seeded stratified 80/20) and nested stratified subsets."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tfxai.data.images import IMAGE_EXTENSIONS, load_image, resize_image

__all__ = ["FolderData", "stratified_split", "stratified_subset", "load_image_folder"]


@dataclass
class FolderData:
    """An image-folder dataset, loaded and split. Images: float32 RGB 0..255 (N, H, W, 3)."""

    classes: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    split: str  # "folders" (train/ and test/ given) or "stratified"
    train_paths: list[Path] = field(default_factory=list)
    test_paths: list[Path] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_size(self) -> tuple[int, int]:
        return (int(self.x_train.shape[1]), int(self.x_train.shape[2]))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """Sub-folders of ``root`` holding images (others, e.g. ``annotations/``, are ignored)."""
    folders = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        images = _images_in(sub)
        if images:
            folders[sub.name] = images
    return folders


def _listing(root: Path, classes: Sequence[str] | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    folders = _class_folders(root)
    if classes is None:
        classes = sorted(folders)
        if len(classes) < 2:
            raise ValueError(
                f"data folder {str(root)!r} must hold one sub-folder of images per class "
                f"(at least two classes); found {len(classes)}"
            )
    unknown = sorted(set(folders) - set(classes))
    if unknown:
        raise ValueError(f"data folder {str(root)!r}: class folders {unknown} not in the training classes")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = folders.get(name, [])
        paths += found
        labels += [index] * len(found)
    return paths, np.asarray(labels, dtype=np.int64), list(classes)


def _load_images(paths: Sequence[Path], size: tuple[int, int], progress: bool) -> np.ndarray:
    out = np.empty((len(paths), size[0], size[1], 3), np.float32)
    for i, p in enumerate(tqdm(paths, desc="loading images", disable=not progress, file=sys.stderr)):
        img = load_image(p)
        out[i] = img if img.shape[:2] == tuple(size) else resize_image(img, size)[0]
    return out


def _first_image_size(paths: Sequence[Path]) -> tuple[int, int]:
    img = load_image(paths[0])
    return (int(img.shape[0]), int(img.shape[1]))


def stratified_split(
    labels: np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: ``round(test_fraction·n_c)`` (at least 1 when n_c ≥ 2) per class to test.

    Returns sorted index arrays ``(train, test)``.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), 0x5EED])
    test = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = round(test_fraction * len(idx))
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        test.append(idx[:k])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def stratified_subset(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Indices of a seeded stratified ``fraction`` of ``labels`` (``ceil(fraction·n_c)`` per class).

    The subsets are nested: for one seed, a larger fraction contains every smaller one.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), 0xF4AC])
    keep = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        keep.append(idx[: max(1, int(np.ceil(float(fraction) * len(idx) - 1e-9)))])
    return np.sort(np.concatenate(keep))


def load_image_folder(
    data_dir: str | os.PathLike,
    input_size: Sequence[int] | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    progress: bool = True,
) -> FolderData:
    """Load an ImageNet-style folder per class, split into train and test.

    Args:
        data_dir: a folder of class folders, or a folder with ``train/`` and ``test/`` each holding
            class folders (then that split is used).
        input_size: ``(H, W)`` to resize to (``squash``); default: the size of the first image.
        seed: seed of the stratified split.
        test_fraction: share of each class held out when the data has no split.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"data folder {str(root)!r} does not exist")
    has_split = (root / "train").is_dir() and (root / "test").is_dir()
    if has_split:
        train_paths, y_train, classes = _listing(root / "train")
        test_paths, y_test, _ = _listing(root / "test", classes)
        split = "folders"
    else:
        paths, labels, classes = _listing(root)
        tr, te = stratified_split(labels, test_fraction, seed)
        train_paths, test_paths = [paths[i] for i in tr], [paths[i] for i in te]
        y_train, y_test = labels[tr], labels[te]
        split = "stratified"
    if not test_paths:
        raise ValueError(f"data folder {str(root)!r}: the test split is empty")
    size = tuple(int(v) for v in input_size) if input_size else _first_image_size(train_paths)
    return FolderData(
        classes=classes,
        x_train=_load_images(train_paths, size, progress),
        y_train=y_train,
        x_test=_load_images(test_paths, size, progress),
        y_test=y_test,
        split=split,
        train_paths=train_paths,
        test_paths=test_paths,
    )
