"""Shared fixtures: quiet TensorFlow, tiny models, generated images with VOC boxes."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(sub: str = "") -> Path:
    """Path into ../shared/data, skipping the test when it is absent."""
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent")
    return path


def write_voc(path: Path, width: int, height: int, objects: list[tuple[str, int, int, int, int]]) -> None:
    """Write a Pascal-VOC XML file; boxes are 1-based inclusive (xmin, ymin, xmax, ymax)."""
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects
    )
    path.write_text(
        f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth>"
        f"</size>{objs}</annotation>"
    )


def write_boxed_images(
    folder: Path,
    n: int,
    seed: int,
    box: Callable[[np.random.Generator], tuple[int, int, int, int]],
    stem: str = "img{i}",
    size: tuple[int, int] = (32, 32),
) -> Path:
    """Write ``n`` random RGB PNGs (``size`` = (width, height)) into ``folder``, each with a VOC
    file holding one tench (n01440764) box; ``stem`` names file i (``"im{i:02d}"``).

    One ``default_rng(seed)`` draws each image and then its box (``box(rng)``, 1-based inclusive
    (xmin, ymin, xmax, ymax)), so the same arguments always give the same files."""
    width, height = size
    rng = np.random.default_rng(seed)
    for i in range(n):
        name = stem.format(i=i)
        arr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{name}.png")
        write_voc(folder / f"{name}.xml", width, height, [("n01440764", *box(rng))])
    return folder


@pytest.fixture(scope="session")
def tiny_cnn_file(tmp_path_factory) -> Path:
    """A small saved CNN (32×32 RGB, 10 classes, softmax) as a .keras file."""
    from tfxai.backend import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inp, out, name="tiny_cnn")
    path = tmp_path_factory.mktemp("models") / "tiny_cnn.keras"
    model.save(path)
    return path


@pytest.fixture
def image_dir(tmp_path) -> Path:
    """Six 40×30 PNG images with VOC boxes (synset names from ImageNet) in one folder."""
    folder = tmp_path / "images"
    folder.mkdir()
    return write_boxed_images(folder, 6, seed=0, box=lambda rng: (5, 5, 20, 25), size=(40, 30))
