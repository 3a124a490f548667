"""tfxai: explain TensorFlow/Keras image classifiers and measure whether the explanations hold.

Python API (docs/architecture.md; conventions in docs/conventions.md)::

    import tfxai
    bb = tfxai.load_model("vgg16", weights="imagenet")
    data = tfxai.load_images("photos/", bb.input_size)   # images, ids, labels, boxes, seeds
    att = tfxai.get_attributer("integrated_gradients", bb, steps=50)
    raw = att.attribute(data.images, targets, seeds=data.seeds)
    maps = tfxai.to_map(raw, reduce="sum", absolute=False, scale="max")
    metric = tfxai.get_metric("infidelity", sigma=0.003, n_samples=50)
    scores = metric.score(bb, att, data.images, targets, attributions=raw, seeds=data.seeds)

``load_images`` loads, resizes and annotates as the CLI does, and ``data.seeds`` are the CLI's
per-image seeds (derived from the image ids), so these values are those of the CLI's scores.csv.

TensorFlow is imported on first use of the model, method and metric names, so ``tfxai.analysis``
(and ``tfxai analyse``) and the image loader work without paying for it.
"""

from __future__ import annotations

import importlib
import os as _os
from typing import Any

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.2.0"

_LAZY = {
    "Backbone": "tfxai.models",
    "load_model": "tfxai.models",
    "list_models": "tfxai.models",
    "get_attributer": "tfxai.attribution.registry",
    "list_methods": "tfxai.attribution.registry",
    "to_map": "tfxai.attribution.base",
    "get_metric": "tfxai.evaluation.registry",
    "list_metrics": "tfxai.evaluation.registry",
    "load_images": "tfxai.data.dataset",
    "ImageSet": "tfxai.data.dataset",
    "image_seeds": "tfxai.data.dataset",
    "sample_images_dir": "tfxai.data.samples",
}

__all__ = [*_LAZY, "BackendError", "__version__"]


class BackendError(ImportError):
    """Keras is not Keras 3 on its TensorFlow backend (see :mod:`tfxai.backend`)."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tfxai' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
