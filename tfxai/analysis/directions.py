"""Which way is better for each metric: ``higher`` or ``lower``.

The table follows REFERENCE.md ("Metrics"). Sources, in order of precedence:

1. a ``direction`` column in ``scores.csv`` (values ``higher``/``lower``, also ``up``/``down``, ``↑``/``↓``);
2. the per-variant rules below (occlusion confidence, ROAD LeRF), which a per-metric answer cannot express;
3. ``tfxai.evaluation``'s metric registry when the metric's class sets its ``direction``, so the
   evaluator stays the single source of truth;
4. the table below;
5. otherwise ``higher``, flagged as *assumed* so reports can say so.

Occlusion confidence (ImageNet50 study): good methods have a small drop and a large increase when the
background is occluded (variant ``b``) and a large drop when the subject is occluded (variant ``s``). So
``confidence_drop`` is lower-is-better for ``b`` and higher-is-better for ``s``, and ``confidence_increase``
the reverse. Metric names with the variant as suffix (``confidence_drop_s``) are understood too.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

import pandas as pd

HIGHER = "higher"
LOWER = "lower"

#: Metric → direction (REFERENCE.md). ``road`` is MoRF, the default ordering.
DIRECTIONS: dict[str, str] = {
    "iou": HIGHER,
    "iou_star": HIGHER,
    "box_iou": HIGHER,
    "pointing_game": HIGHER,
    "energy_pointing_game": HIGHER,
    "relevance_rank_accuracy": HIGHER,
    "ssim_augmentation": HIGHER,
    "insertion": HIGHER,
    "confidence_increase": HIGHER,
    "sparseness": HIGHER,
    "infidelity": LOWER,
    "max_sensitivity": LOWER,
    "avg_sensitivity": LOWER,
    "deletion": LOWER,
    "road": LOWER,
    "confidence_drop": LOWER,
    "model_randomisation": LOWER,
    "complexity": LOWER,
}

#: (metric, variant) → direction, overriding :data:`DIRECTIONS` for that variant.
VARIANT_DIRECTIONS: dict[tuple[str, str], str] = {
    ("confidence_drop", "s"): HIGHER,
    ("confidence_increase", "s"): LOWER,
    ("road", "lerf"): HIGHER,
}

_ALIASES = {
    "higher": HIGHER,
    "up": HIGHER,
    "↑": HIGHER,
    "max": HIGHER,
    "lower": LOWER,
    "down": LOWER,
    "↓": LOWER,
    "min": LOWER,
}


@dataclass(frozen=True)
class Direction:
    """The direction of one metric (variant) and where it came from."""

    direction: str
    source: str  # "scores.csv", "tfxai.evaluation", "table" or "assumed"

    @property
    def higher_is_better(self) -> bool:
        """True when larger values are better."""
        return self.direction == HIGHER

    @property
    def assumed(self) -> bool:
        """True when the metric is unknown and ``higher`` was assumed."""
        return self.source == "assumed"


def parse_direction(text: object) -> str | None:
    """Map ``text`` (``higher``, ``lower``, ``↑``, ...) to :data:`HIGHER`/:data:`LOWER`, else ``None``."""
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return None
    return _ALIASES.get(str(text).strip().lower())


@functools.lru_cache(maxsize=256)
def _from_evaluation(metric: str) -> str | None:
    """Ask ``tfxai.evaluation`` for the direction of ``metric``, if it can tell; never raises.

    Reads the metric registry (``tfxai.evaluation.base.METRICS``: name → class with a ``direction``) and
    trusts a class only when it sets ``direction`` itself rather than inheriting the base default.
    """
    try:
        module = importlib.import_module("tfxai.evaluation")
        base = importlib.import_module("tfxai.evaluation.base")
    except Exception:  # noqa: BLE001 - the evaluator is optional here; any import failure means "unknown"
        return None
    registry = getattr(base, "METRICS", None)
    if isinstance(registry, dict) and metric in registry:
        cls = registry[metric]
        root = getattr(base, "Metric", object)
        for klass in getattr(cls, "__mro__", ()):
            if klass is root:
                break
            if "direction" in vars(klass):
                return parse_direction(vars(klass)["direction"])
    table = getattr(module, "METRIC_DIRECTIONS", None)
    if isinstance(table, dict):
        return parse_direction(table.get(metric))
    return None


def split_suffix(metric: str) -> tuple[str, str]:
    """Split ``confidence_drop_s`` into (``confidence_drop``, ``s``); other names get variant ""."""
    for base in ("confidence_drop", "confidence_increase"):
        for variant in ("b", "s"):
            if metric == f"{base}_{variant}":
                return base, variant
    return metric, ""


def table_direction(metric: str, variant: str = "") -> str | None:
    """Direction from the built-in tables, or ``None`` when the metric is unknown."""
    base, suffix = split_suffix(metric)
    variant = (variant or suffix or "").lower()
    if (base, variant) in VARIANT_DIRECTIONS:
        return VARIANT_DIRECTIONS[(base, variant)]
    return DIRECTIONS.get(base)


def metric_direction(
    metric: str, variant: str = "", scores: pd.DataFrame | None = None, use_evaluation: bool = True
) -> Direction:
    """Return the :class:`Direction` of ``metric`` (and ``variant``) following the module's precedence."""
    if scores is not None and "direction" in scores.columns:
        rows = scores[(scores["metric"] == metric) & (scores["variant"] == variant)]
        values = {parse_direction(v) for v in rows["direction"]} - {None}
        if len(values) == 1:
            return Direction(values.pop(), "scores.csv")
    base, suffix = split_suffix(metric)
    key = (base, (variant or suffix or "").lower())
    if key in VARIANT_DIRECTIONS:
        return Direction(VARIANT_DIRECTIONS[key], "table")
    if use_evaluation:
        found = _from_evaluation(metric)
        if found is not None:
            return Direction(found, "tfxai.evaluation")
    found = table_direction(metric, variant)
    if found is not None:
        return Direction(found, "table")
    return Direction(HIGHER, "assumed")
