"""tfxai: explain TensorFlow/Keras image classifiers and measure whether the explanations hold.

Python API (see DESIGN.md)::

    import tfxai
    bb = tfxai.load_model("vgg16", weights="imagenet")
    att = tfxai.get_attributer("integrated_gradients", bb, steps=50)
    raw = att.attribute(images, targets)
    maps = tfxai.to_map(raw, reduce="sum", absolute=False, scale="max")
    metric = tfxai.get_metric("infidelity", sigma=0.003, n_perturbations=50)
    scores = metric.score(bb, att, images, targets, attributions=raw)

TensorFlow is imported on first use of these names, so ``tfxai.analysis`` (and ``tfxai analyse``)
work without paying for it.
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
    "get_attributer": "tfxai.attribution.base",
    "list_methods": "tfxai.attribution.base",
    "to_map": "tfxai.attribution.base",
    "get_metric": "tfxai.evaluation.base",
    "list_metrics": "tfxai.evaluation.base",
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
