"""Evaluation metrics: one module per family, each registering its classes on import."""

import importlib
import pkgutil

from tfxai.evaluation.base import (
    EvalContext,
    Metric,
    MetricInputError,
    MetricOutput,
    get_metric,
    list_metrics,
    metric_info,
    register_metric,
)

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_") and _mod.name not in ("base", "augment"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "EvalContext", "Metric", "MetricInputError", "MetricOutput", "get_metric", "list_metrics",
    "metric_info", "register_metric",
]
