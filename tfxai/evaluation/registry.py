"""The metric registry: every metric module of :mod:`tfxai.evaluation` registers its classes
(:func:`~tfxai.evaluation.base.register_metric`) when imported; this module imports them all and
builds metrics by name. Metric modules import :mod:`~tfxai.evaluation.base` only, never this
module, so the dependency goes one way."""

from __future__ import annotations

from typing import Any

from tfxai import metadata
from tfxai.evaluation.base import METRICS, Metric
from tfxai.registries import import_package_modules

__all__ = ["get_metric", "list_metrics", "metric_info"]

#: modules of the package that hold no metric
_NOT_METRICS = ("base", "registry", "augment", "shared")


def _ensure_loaded() -> None:
    """Import every metric module of the package once (each registers its classes)."""
    import_package_modules(__name__, __file__, _NOT_METRICS)


def list_metrics() -> list[str]:
    _ensure_loaded()
    return sorted(METRICS)


def get_metric(name: str, **params: Any) -> Metric:
    """Build a metric by name with validated parameters."""
    _ensure_loaded()
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}")
    return METRICS[name](**params)


def metric_info() -> list[dict[str, Any]]:
    """One row per registered metric. Family, direction (per variant) and whether values compare
    across methods come from :mod:`tfxai.metadata`, the single source of truth."""
    _ensure_loaded()
    rows = []
    for name, cls in sorted(METRICS.items()):
        needs = [k for k in ("boxes", "model", "attributer") if getattr(cls, f"needs_{k}")]
        meta = metadata.get(name)
        directions = {v: meta.direction_for(v) if meta is not None else cls.direction
                      for v in cls.variants}
        rows.append({
            "name": name,
            "family": meta.family if meta is not None else cls.family,
            # one word when every variant agrees, else "morf lower, lerf higher"
            "direction": (next(iter(directions.values())) if len(set(directions.values())) == 1
                          else ", ".join(f"{v or '(value)'} {d}" for v, d in directions.items())),
            "directions": directions,
            "comparable": meta.comparable_text if meta is not None else "unknown",
            "needs": needs,
            "variants": [v for v in cls.variants if v],
            "summary": cls.summary,
            "params": {k: p.default for k, p in cls.params_spec.items()},
        })
    return rows
