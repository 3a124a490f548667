"""The data a study needs that tfxai can reach, chosen when ``--images`` is not given, and said.

A study asks for a kind of data:

* ``imagenet-val``: ImageNet validation images with Pascal-VOC boxes next to them
  (``imagenet-val-15/`` of a shared data folder); else the six bundled sample photographs with
  their boxes (:func:`tfxai.data.samples.sample_images_dir`);
* ``imagenet50``: the ImageNet50 photographs ``sim_<synset>_<n>.jpg`` (``imagenet50/`` of a shared
  data folder), labelled from their file names with ``sim_{synset}_``; else the bundled samples.

The shared data folder is the first that exists of: ``$TFXAI_DATA``; ``shared/data`` in the
working folder or in one of its parents (a checkout beside ``../shared/data``, as the tests look
for it); the same next to the tfxai source checkout. Nothing is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DataChoice", "IMAGENET50_PATTERN", "choose_images", "shared_data_root"]

#: environment variable naming the shared data folder
DATA_ENV = "TFXAI_DATA"
#: the labels of the ImageNet50 photographs, from their file names
IMAGENET50_PATTERN = "sim_{synset}_"
_SUBFOLDERS = {"imagenet-val": "imagenet-val-15", "imagenet50": "imagenet50"}


@dataclass(frozen=True)
class DataChoice:
    """The images of a study: where, with which annotations and labels, and why (``description``)."""

    images: Path
    annotations: Path | None
    labels_from_name: str | None
    description: str
    #: ``shared``, ``bundled`` or ``given``
    origin: str


def _candidates() -> list[Path]:
    out = []
    env = os.environ.get(DATA_ENV)
    if env:
        out.append(Path(env))
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        out.append(folder / "shared" / "data")
    source = Path(__file__).resolve().parents[2]  # the checkout holding tfxai/
    for folder in (source, *source.parents):
        out.append(folder / "shared" / "data")
    return list(dict.fromkeys(out))


def shared_data_root() -> Path | None:
    """The shared data folder (module docstring), or None."""
    for cand in _candidates():
        if cand.is_dir() and any((cand / sub).is_dir() for sub in _SUBFOLDERS.values()):
            return cand
    return None


def _count_images(folder: Path) -> int:
    from tfxai.data.images import IMAGE_EXTENSIONS

    return sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def choose_images(kind: str, images: str | os.PathLike | None = None,
                  annotations: str | os.PathLike | None = None,
                  labels_from_name: str | None = None) -> DataChoice:
    """The images of a study (module docstring); ``images`` given by the user wins."""
    if kind not in _SUBFOLDERS:
        raise ValueError(f"unknown data kind {kind!r}; known: {', '.join(_SUBFOLDERS)}")
    ann = Path(annotations) if annotations else None
    if images is not None:
        what = "your images " + str(images)
        if ann is not None:
            what += f", annotations from {ann}"
        if labels_from_name:
            what += f", labels from the file names ({labels_from_name})"
        return DataChoice(Path(images), ann, labels_from_name, what + " (--images)", "given")
    root = shared_data_root()
    folder = root / _SUBFOLDERS[kind] if root is not None else None
    if folder is not None and folder.is_dir():
        n = _count_images(folder)
        if kind == "imagenet-val":
            what = (f"{n} ImageNet validation images with their VOC boxes, {folder} (shared data "
                    "folder)")
            return DataChoice(folder, ann, labels_from_name, what, "shared")
        pattern = labels_from_name or IMAGENET50_PATTERN
        what = (f"{n} ImageNet50 photographs, {folder} (shared data folder); labels from the file "
                f"names ({pattern}; synsets outside ImageNet-1k stay unlabelled)")
        return DataChoice(folder, ann, pattern, what, "shared")
    from tfxai.data.samples import SAMPLE_NAMES, sample_images_dir

    path = sample_images_dir()
    wanted = "ImageNet validation images" if kind == "imagenet-val" else "ImageNet50 photographs"
    what = (f"the {len(SAMPLE_NAMES)} bundled sample photographs with their VOC boxes, {path}: no "
            f"shared data folder with {wanted} was found (looked for $TFXAI_DATA and "
            f"shared/data/{_SUBFOLDERS[kind]} beside the working folder and the tfxai checkout)")
    return DataChoice(path, ann, labels_from_name, what, "bundled")
