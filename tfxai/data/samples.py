"""The sample photographs of ``tfxai demo``, exported at run time from scikit-image and scikit-learn.

No image file is committed to tfxai: the six photographs ship inside two packages tfxai already depends
on (scikit-learn through lime), and :func:`export_sample_images` writes them as PNG files whose stems
match the Pascal-VOC boxes in the repository's ``annotations/`` folder:

=============  ==========================================  ==========================================
stem           source                                      annotated objects
=============  ==========================================  ==========================================
``chelsea``    ``skimage.data.chelsea()``                  tabby cat (n02123045)
``coffee``     ``skimage.data.coffee()``                   espresso cup (n07920052)
``rocket``     ``skimage.data.rocket()``                   launch vehicle as missile (n03773504)
``astronaut``  ``skimage.data.astronaut()``                "astronaut" (no ImageNet class), space
                                                           shuttle model (n04266014)
``china``      ``sklearn.datasets.load_sample_image``      pagoda as palace (n03877845)
``flower``     ``sklearn.datasets.load_sample_image``      two dahlias as daisy (n11939491)
=============  ==========================================  ==========================================
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["SAMPLE_NAMES", "export_sample_images", "sample_image"]

#: Stems of the sample images, in demo order; each has ``annotations/<stem>.xml``.
SAMPLE_NAMES: tuple[str, ...] = ("chelsea", "coffee", "rocket", "astronaut", "china", "flower")


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        try:
            from sklearn.datasets import load_sample_image
        except ImportError as exc:  # pragma: no cover - scikit-learn comes with lime
            raise ImportError(
                f"the sample image {filename!r} needs scikit-learn: pip install scikit-learn"
            ) from exc
        return load_sample_image(filename)

    return load


_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "astronaut": _skimage("astronaut"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}


def sample_image(name: str) -> np.ndarray:
    """One sample photograph as an RGB ``uint8`` array (H, W, 3), at its original size.

    Raises:
        ValueError: ``name`` is not one of :data:`SAMPLE_NAMES`.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown sample image {name!r}; choose from {', '.join(SAMPLE_NAMES)}")
    img = np.asarray(_LOADERS[name](), dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"sample image {name!r} is not RGB: shape {img.shape}")
    return img


def export_sample_images(
    dest_dir: str | os.PathLike, names: Iterable[str] | None = None
) -> list[Path]:
    """Write the sample photographs as ``<dest_dir>/<stem>.png`` and return their paths.

    The stems match ``annotations/<stem>.xml``, whose ``<size>`` is the original width and height, so
    the boxes apply unchanged. Existing files are overwritten; ``dest_dir`` is created if needed.

    Args:
        dest_dir: output folder.
        names: a subset of :data:`SAMPLE_NAMES` (default: all, in that order).
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SAMPLE_NAMES if names is None else tuple(names):
        path = dest / f"{name}.png"
        Image.fromarray(sample_image(name), "RGB").save(path)
        paths.append(path)
    return paths
