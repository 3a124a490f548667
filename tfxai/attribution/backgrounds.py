"""Reference (background) sets of the methods that average over one: SHAP's explainers and
gradient SHAP. One definition of each way to build the set:

* :func:`synthetic_background`: ``n`` seeded smooth random colour fields, never equal to an
  evaluated photograph (the default of both methods);
* :func:`load_background_folder`: images of a folder read and resized like the evaluated ones,
  the first ``n`` by image id or, with a ``seed``, a seeded choice of ``n``.

The check that a folder shares no image with the evaluated set is SHAP's
(:func:`tfxai.attribution.shapley.check_background_overlap`).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

__all__ = ["synthetic_background", "load_background_folder"]


def synthetic_background(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``n`` seeded smooth random colour fields, (n, H, W, 3) float32 in 0..255.

    Uniform noise on a 7×7 grid upsampled bilinearly to ``size``: natural-image-like low
    frequencies, no object, and never equal to an evaluated photograph.
    """
    rng = np.random.default_rng([int(seed), 0x5A4B])
    low = rng.uniform(0, 255, (n, 7, 7, 3)).astype(np.float32)
    out = tf.image.resize(low, size, method="bilinear").numpy()
    return np.clip(out, 0, 255).astype(np.float32)


def load_background_folder(
    folder: str | os.PathLike, size: tuple[int, int], n: int | None, seed: int | None = None,
    resize: str = "squash", owner: str = "shap",
) -> tuple[np.ndarray, list[str]]:
    """Images of ``folder`` loaded and resized by :mod:`tfxai.data`: all of them, the first
    ``n`` by image id (``seed=None``), or a seeded choice of ``n`` when it holds more. Returns
    the images (float32 RGB 0..255) and their paths; errors name ``owner``'s parameter."""
    from tfxai.data import DatasetError, discover, load_batch

    try:
        samples = discover(folder)
    except DatasetError as exc:
        raise ValueError(f"{owner}: parameter 'background': {exc}") from None
    if n and len(samples) > n:
        if seed is None:
            samples = samples[:n]
        else:
            idx = np.sort(np.random.default_rng([int(seed), 0xB6]).choice(len(samples), n,
                                                                           replace=False))
            samples = [samples[i] for i in idx]
    batch = load_batch(samples, size, resize)
    if not len(batch.images):
        raise ValueError(f"{owner}: parameter 'background': no readable image in {str(folder)!r}")
    return batch.images.astype(np.float32), [str(s.path) for s in batch.samples]
