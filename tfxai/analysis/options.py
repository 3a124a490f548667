"""The options of one analysis (:class:`AnalysisOptions`), what it returns (:class:`Analysis`), and
where its gallery finds the images: ``--images`` first, then the image folders recorded in
``runs.jsonl`` (:func:`gallery_sources`), and how many images it shows (:func:`gallery_count`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .loading import Results
from .reliability import DEFAULT_MIN_PAIR_SHARE, DEFAULT_MIN_W
from .summary import DEFAULT_HIGH_CONFIDENCE, Bootstrap

#: Images in the gallery when it is drawn by default (image folder known from runs.jsonl).
DEFAULT_GALLERY = 6


@dataclass
class AnalysisOptions:
    """Options of one analysis (the ``tfxai analyse`` options)."""

    by: Sequence[str] = ("model_id", "method")
    high_confidence: float = DEFAULT_HIGH_CONFIDENCE
    accuracy: Mapping[str, float] = field(default_factory=dict)
    architecture: Mapping[str, str] = field(default_factory=dict)
    min_pair_share: float = DEFAULT_MIN_PAIR_SHARE
    min_w: float = DEFAULT_MIN_W
    #: images in the gallery; None = :data:`DEFAULT_GALLERY` when an image folder is known (``images``
    #: or runs.jsonl) and an attribution store exists, else none; 0 = no gallery
    gallery: int | None = None
    gallery_images: Sequence[str] = ()
    images: Path | None = None
    plots: bool = True
    report: bool = True
    #: the bootstrap of the confidence intervals (resamples, level, seed)
    bootstrap: Bootstrap = field(default_factory=Bootstrap)


@dataclass
class Analysis:
    """What :func:`tfxai.analysis.analyse` computed and wrote."""

    tables: dict[str, pd.DataFrame]
    files: list[Path]
    notes: list[str]


def _existing(value: object, run: object) -> Path | None:
    """``value`` as a folder that exists: as given, or relative to the results folder ``run``; a
    list file of images (``--images list.txt``) gives the folder that holds all its images."""
    if not isinstance(value, str) or not value or value == "None":
        return None
    path = Path(value)
    for candidate in (path, Path(str(run)) / path if run and not path.is_absolute() else None):
        if candidate is not None and candidate.is_dir():
            return candidate
        if candidate is not None and candidate.is_file() and candidate.suffix.lower() == ".txt":
            return _list_folder(candidate)
    return None


def _list_folder(listing: Path) -> Path | None:
    """The one folder holding every image of a list file, or None."""
    try:
        lines = [line.strip() for line in listing.read_text().splitlines()]
    except (OSError, UnicodeDecodeError):
        return None
    parents = {(listing.parent / line).parent for line in lines if line and not line.startswith("#")}
    if len(parents) == 1:
        folder = parents.pop()
        return folder if folder.is_dir() else None
    return None


def gallery_sources(results: Results, options: AnalysisOptions) -> tuple[list[Path], list[Path]]:
    """Image folders (``--images`` first, then those of runs.jsonl) and annotation folders (runs.jsonl),
    keeping only folders that exist."""
    images: list[Path] = [Path(options.images)] if options.images else []
    annotations: list[Path] = []
    for record in results.runs:
        for key, bucket in (("images", images), ("annotations", annotations)):
            found = _existing(record.get(key), record.get("run"))
            if found is not None and found not in bucket:
                bucket.append(found)
    return images, annotations


def gallery_count(results: Results, options: AnalysisOptions) -> int:
    """How many images the gallery shows (see :attr:`AnalysisOptions.gallery`)."""
    if options.gallery is not None:
        return int(options.gallery)
    if options.gallery_images:
        return len(options.gallery_images)
    if results.store_paths and gallery_sources(results, options)[0]:
        return DEFAULT_GALLERY
    return 0
