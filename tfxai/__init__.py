"""tfxai: explain TensorFlow/Keras image classifiers and measure whether the explanations hold.

Python API (see DESIGN.md)::

    import tfxai
    bb = tfxai.load_model("vgg16", weights="imagenet")
    att = tfxai.get_attributer("integrated_gradients", bb, steps=50)
    raw = att.attribute(images, targets)
    maps = tfxai.to_map(raw, reduce="sum", absolute=False, scale="max")
    metric = tfxai.get_metric("infidelity", sigma=0.003, n_perturbations=50)
    scores = metric.score(bb, att, images, targets, attributions=raw)
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tfxai.attribution.base import get_attributer, list_methods, to_map  # noqa: E402
from tfxai.evaluation.base import get_metric, list_metrics  # noqa: E402
from tfxai.models import Backbone, list_models, load_model  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Backbone",
    "get_attributer",
    "get_metric",
    "list_methods",
    "list_metrics",
    "list_models",
    "load_model",
    "to_map",
    "__version__",
]
