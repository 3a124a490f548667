"""A tiny synthetic image-classification dataset: shapes on textured backgrounds, with boxes.

It lets tests, demos and the ROAR reproduction run in minutes on a CPU. The class of an image
depends **only on the shape** drawn on it: position, scale, rotation, colours and the background
texture are drawn independently of the class, so a classifier must use the shape pixels, and
removing them (ROAR [Hooker et al. 2019, "A Benchmark for Interpretability Methods in Deep Neural
Networks"]) must hurt it.

Layout written by :func:`make_synthetic_dataset` (``split=True``)::

    out_dir/train/<class>/<class>_0007.png      ImageNet-style folder per class
    out_dir/test/<class>/<class>_0000.png
    out_dir/annotations/<class>_0007.xml        Pascal-VOC box of the shape, <name> = class name
    out_dir/labels.csv                          image,label,class,split (label = sorted class index)

With ``split=False`` the class folders sit directly in ``out_dir``. Every image is drawn from its
own random stream ``default_rng([seed, crc32(class), i])``, so the output is byte-identical for a
seed and does not depend on which other classes are generated.
"""

from __future__ import annotations

import csv
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np
from PIL import Image

__all__ = ["SHAPES", "SyntheticDataset", "make_synthetic_dataset", "render_image"]

ShapeFn = Callable[[np.ndarray, np.ndarray, float, float], np.ndarray]


# --------------------------------------------------------------------------------------- shapes
# Each shape function takes coordinates (u, v) relative to the centre, already rotated, the radius
# r and returns a boolean mask. Areas are of the same order so that size does not give the class.


def _circle(u: np.ndarray, v: np.ndarray, r: float, theta: float) -> np.ndarray:
    return u**2 + v**2 <= r**2


def _square(u: np.ndarray, v: np.ndarray, r: float, theta: float) -> np.ndarray:
    h = 0.85 * r
    return (np.abs(u) <= h) & (np.abs(v) <= h)


def _triangle(u: np.ndarray, v: np.ndarray, r: float, theta: float) -> np.ndarray:
    # Equilateral triangle inscribed in the circle of radius 1.15 r (one vertex up before rotation):
    # inside when every edge's half-plane holds, i.e. the projection on each of the three inward
    # normals (at -90°, 30°, 150°) is at most the inradius.
    inradius = 0.575 * r
    angles = np.deg2rad(np.array([90.0, 210.0, 330.0]))
    proj = np.stack([u * np.cos(a) + v * np.sin(a) for a in angles])
    return np.all(proj <= inradius, axis=0)


def _cross(u: np.ndarray, v: np.ndarray, r: float, theta: float) -> np.ndarray:
    arm = 0.33 * r
    return ((np.abs(u) <= r) & (np.abs(v) <= arm)) | ((np.abs(v) <= r) & (np.abs(u) <= arm))


def _ring(u: np.ndarray, v: np.ndarray, r: float, theta: float) -> np.ndarray:
    d2 = u**2 + v**2
    return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)


SHAPES: dict[str, ShapeFn] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "cross": _cross,
    "ring": _ring,
}


# --------------------------------------------------------------------------------------- textures


def _smooth_noise(rng: np.random.Generator, size: int, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Low-frequency noise blending two colours (bilinear upsampling of a coarse random grid)."""
    cells = int(rng.integers(3, 9))
    coarse = rng.random((cells, cells)).astype(np.float32)
    t = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_LINEAR)[..., None]
    return c1 * (1.0 - t) + c2 * t


def _stripes(rng: np.random.Generator, size: int, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Sinusoidal stripes of random orientation, period and phase between two colours."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0.0, np.pi)
    period = rng.uniform(0.12, 0.35) * size
    phase = rng.uniform(0.0, 2.0 * np.pi)
    wave = np.sin(2.0 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    t = (0.5 + 0.5 * wave)[..., None]
    return c1 * (1.0 - t) + c2 * t


def _checker(rng: np.random.Generator, size: int, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """A checkerboard of random cell size and offset between two colours."""
    yy, xx = np.mgrid[0:size, 0:size]
    cell = int(rng.integers(max(2, size // 16), max(3, size // 5) + 1))
    ox, oy = rng.integers(0, cell, size=2)
    t = (((xx + ox) // cell + (yy + oy) // cell) % 2).astype(np.float32)[..., None]
    return c1 * (1.0 - t) + c2 * t


TEXTURES = (_smooth_noise, _stripes, _checker)

#: Backgrounds are low-contrast textures around a near-grey colour (within ±BACKGROUND_TINT of
#: BACKGROUND_GREY per channel), shapes are saturated random colours far from it. The dataset's
#: per-channel mean — ROAR's fill value — is then close to every background, so a removed region is
#: invisible against the background and its outline does not leak the shape (on MNIST the fill is
#: close to the black background in the same way [Loreth 2023]).
BACKGROUND_GREY = 128.0
BACKGROUND_TINT = 25.0


# --------------------------------------------------------------------------------------- rendering


def _distinct_colour(rng: np.random.Generator, others: Sequence[np.ndarray], min_dist: float) -> np.ndarray:
    """A random RGB colour at least ``min_dist`` (Euclidean, 0..255) from every colour in ``others``."""
    colour = rng.uniform(0.0, 255.0, size=3)
    for _ in range(32):
        if all(np.linalg.norm(colour - o) >= min_dist for o in others):
            break
        colour = rng.uniform(0.0, 255.0, size=3)
    return colour.astype(np.float32)


def render_image(
    shape: str, size: int, rng: np.random.Generator, rotate: bool = False
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Draw one ``shape`` on a random texture.

    Returns:
        the uint8 RGB image (size, size, 3) and the shape's box ``(xmin, ymin, xmax, ymax)`` in
        0-based half-open pixel coordinates.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")
    c1 = (BACKGROUND_GREY + rng.uniform(-BACKGROUND_TINT, BACKGROUND_TINT, size=3)).astype(np.float32)
    c2 = np.clip(c1 + rng.normal(0.0, 30.0, size=3), 0.0, 255.0).astype(np.float32)
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    background = texture(rng, size, c1, c2)
    fg = _distinct_colour(rng, [c1, c2], min_dist=100.0)

    r = rng.uniform(0.16, 0.3) * size
    margin = 1.2 * r + 1.0
    cx, cy = rng.uniform(margin, size - margin, size=2)
    theta = rng.uniform(0.0, 2.0 * np.pi) if rotate else 0.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    mask = SHAPES[shape](u, v, r, theta)

    img = np.where(mask[..., None], fg, background)
    img = img + rng.normal(0.0, 6.0, size=img.shape)
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), box


def _voc_xml(filename: str, folder: str, size: int, name: str, box: tuple[int, int, int, int]) -> str:
    """Pascal-VOC XML of one object; VOC coordinates are 1-based and inclusive."""
    x0, y0, x1, y1 = box
    return (
        "<annotation>\n"
        f"  <folder>{escape(folder)}</folder>\n"
        f"  <filename>{escape(filename)}</filename>\n"
        f"  <size><width>{size}</width><height>{size}</height><depth>3</depth></size>\n"
        "  <object>\n"
        f"    <name>{escape(name)}</name>\n"
        "    <difficult>0</difficult>\n"
        f"    <bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>\n"
        "  </object>\n"
        "</annotation>\n"
    )


@dataclass
class SyntheticDataset:
    """What :func:`make_synthetic_dataset` wrote."""

    root: Path
    classes: list[str]
    n_train: int
    n_test: int

    @property
    def train_dir(self) -> Path:
        return self.root / "train" if self.n_test else self.root

    @property
    def test_dir(self) -> Path | None:
        return self.root / "test" if self.n_test else None

    @property
    def annotations_dir(self) -> Path:
        return self.root / "annotations"


def _check_args(n_per_class: int, classes: Sequence[str], size: int, test_fraction: float) -> list[str]:
    if int(n_per_class) < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class!r}")
    if int(size) < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    names = [str(c) for c in classes]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"classes must hold at least two distinct shapes, got {list(classes)!r}")
    unknown = [c for c in names if c not in SHAPES]
    if unknown:
        raise ValueError(f"classes: unknown shape(s) {unknown}; known shapes: {', '.join(SHAPES)}")
    return sorted(names)


def make_synthetic_dataset(
    out_dir: str | os.PathLike,
    n_per_class: int = 100,
    classes: Sequence[str] = ("circle", "square", "triangle"),
    size: int = 64,
    seed: int = 0,
    split: bool = True,
    test_fraction: float = 0.2,
    rotate: bool = False,
) -> SyntheticDataset:
    """Write a shapes-on-textures dataset (PNG per class folder, VOC boxes, ``labels.csv``).

    Args:
        out_dir: output folder (created; files of the same names are overwritten).
        n_per_class: images per class (train + test).
        classes: shape names, a subset of :data:`SHAPES`. Labels are indices in sorted order, the
            order in which :mod:`tfxai.training` reads class folders.
        size: image side in pixels.
        seed: the dataset seed; the same seed gives byte-identical files.
        split: write ``train/`` and ``test/`` (the first ``round(test_fraction·n)`` images of each
            class go to test); otherwise one level of class folders.
        test_fraction: share of each class in ``test/`` when ``split``.
        rotate: rotate each shape by a random angle (harder: a small CNN then needs more data).
    """
    names = _check_args(n_per_class, classes, size, test_fraction)
    root = Path(out_dir)
    ann_dir = root / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    n_test = max(1, round(test_fraction * n_per_class)) if split and n_per_class > 1 else 0
    rows = []
    for label, name in enumerate(names):
        key = zlib.crc32(name.encode("utf-8"))
        for i in range(int(n_per_class)):
            part = ("test" if i < n_test else "train") if n_test else ""
            folder = root / part / name if part else root / name
            folder.mkdir(parents=True, exist_ok=True)
            stem = f"{name}_{i:04d}"
            rng = np.random.default_rng([int(seed), key, i])
            img, box = render_image(name, int(size), rng, rotate)
            Image.fromarray(img).save(folder / f"{stem}.png", optimize=False)
            (ann_dir / f"{stem}.xml").write_text(_voc_xml(f"{stem}.png", name, int(size), name, box))
            rel = (folder / f"{stem}.png").relative_to(root).as_posix()
            rows.append((rel, label, name, part or "all"))
    with (root / "labels.csv").open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["image", "label", "class", "split"])
        writer.writerows(rows)
    n_test_total = n_test * len(names)
    return SyntheticDataset(root, names, len(rows) - n_test_total, n_test_total)
