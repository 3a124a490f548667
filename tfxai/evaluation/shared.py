"""Work that does not depend on the attribution, done once per batch and reused.

Several metrics pass the same perturbed images through the model for every method: infidelity's
``F(x − I)`` depends on the image, the target and the seeded noise, never on Φ; the prediction
gate of ``ssim_augmentation`` (``P(aug(x))``) and the augmented images themselves depend on the
image only. When one ``evaluate`` scores several methods (or one metric under several parameter
sets that draw the same perturbations), :class:`SharedWork` computes each of those per-image
results once and hands it to every later caller.

Entries are keyed by *content*, not by position: a digest of the image's bytes, the target, the
seed, the parameters that shape the perturbation, and the model. The same image at another
position of a sub-batch (a metric drops images without boxes) still hits; a different image
never does. The pipeline keeps one :class:`SharedWork` per loaded batch, so memory is bounded by
the batch size (the augmented copies of a batch are the largest entry: variants × batch images).

Sharing is exact: the first method of a batch computes every entry on the whole batch, in the same
forward batches as without sharing, and later methods get those arrays back bit for bit
(``tests/test_shared_work.py`` checks that one run over several methods writes the same
``scores.csv`` as one run per method).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

__all__ = ["SharedWork", "image_digest"]


def image_digest(image: np.ndarray) -> bytes:
    """A 16-byte digest of an image's shape, dtype and bytes."""
    a = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=16)
    h.update(str((a.shape, a.dtype.str)).encode())
    h.update(a.data)
    return h.digest()


def _model_key(backbone: Any) -> Hashable:
    """The model part of a key: the object (a backbone is not re-weighted between metrics)."""
    return None if backbone is None else ("model", id(backbone))


class SharedWork:
    """A per-batch memo of per-image results that every method and metric may reuse.

    ``hits`` and ``misses`` count images served from the memo and images computed.
    """

    def __init__(self) -> None:
        self._memo: dict[Hashable, np.ndarray] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._memo)

    def clear(self) -> None:
        self._memo.clear()

    def per_image(
        self,
        kind: Hashable,
        images: np.ndarray,
        compute: Callable[[np.ndarray], np.ndarray],
        *,
        backbone: Any = None,
        targets: Sequence[int] | np.ndarray | None = None,
        seeds: Sequence[int] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Per-image results, stacked along a new first axis (one row per image).

        ``kind`` names the computation and every parameter it depends on. ``compute(idx)`` gets
        the positions (into ``images``) that are not yet known and returns their results with
        ``len(idx)`` rows; it is called at most once, on all the missing images together, so the
        work stays batched. A result depends on the image, ``kind``, and, when given, the model,
        the target and the seed of each image.
        """
        n = len(images)
        model = _model_key(backbone)
        keys = [
            (kind, model, image_digest(images[i]),
             None if targets is None else int(targets[i]),
             None if seeds is None else int(seeds[i]))
            for i in range(n)
        ]
        missing = np.array([i for i, k in enumerate(keys) if k not in self._memo], dtype=np.int64)
        if len(missing):
            fresh = np.asarray(compute(missing))
            if len(fresh) != len(missing):
                raise ValueError(f"shared work {kind!r}: {len(fresh)} results for "
                                 f"{len(missing)} images")
            for j, i in enumerate(missing):
                self._memo[keys[i]] = fresh[j]
        self.misses += len(missing)
        self.hits += n - len(missing)
        if n == 0:
            return np.zeros((0,))
        return np.stack([self._memo[k] for k in keys])


def resolve(shared: SharedWork | None) -> SharedWork:
    """``shared``, or a fresh memo that lives for one call (the Python API without a pipeline)."""
    return SharedWork() if shared is None else shared
