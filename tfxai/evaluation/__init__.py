"""Evaluation metrics: one module per family, each registering its classes on import."""

from tfxai.evaluation.base import (
    EvalContext,
    Metric,
    MetricInputError,
    MetricOutput,
    register_metric,
)
from tfxai.evaluation.registry import _ensure_loaded, get_metric, list_metrics, metric_info

_ensure_loaded()

__all__ = [
    "EvalContext", "Metric", "MetricInputError", "MetricOutput", "get_metric", "list_metrics",
    "metric_info", "register_metric",
]
