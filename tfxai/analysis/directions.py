"""Which way is better for each metric (and variant): ``higher`` or ``lower``.

The facts live in :mod:`tfxai.metadata`, the one table that ``tfxai metrics`` reads too (REFERENCE.md,
"Metrics"). Sources, in order of precedence:

1. a ``direction`` column in ``scores.csv`` (values ``higher``/``lower``, also ``up``/``down``, ``↑``/``↓``);
2. :mod:`tfxai.metadata`, per variant (ROAD ``morf`` lower and ``lerf`` higher; occlusion confidence
   ``b``/``s``; every ``model_randomisation`` variant lower);
3. otherwise ``higher``, flagged as *assumed* so reports can say so.

Occlusion confidence (ImageNet50 study): good methods have a small drop and a large increase when the
background is occluded (variant ``b``) and a large drop when the subject is occluded (variant ``s``). So
``confidence_drop`` is lower-is-better for ``b`` and higher-is-better for ``s``, and ``confidence_increase``
the reverse. Metric names with the variant as suffix (``confidence_drop_s``) are understood too.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from tfxai import metadata

from .settings import base_name

HIGHER = metadata.HIGHER
LOWER = metadata.LOWER

#: Metric → its default direction, read from :mod:`tfxai.metadata` (kept for callers of this name).
DIRECTIONS: dict[str, str] = {name: meta.direction for name, meta in metadata.METRICS.items()}

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
    source: str  # "scores.csv", "tfxai.metadata" or "assumed"

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


def split_suffix(metric: str) -> tuple[str, str]:
    """Split ``confidence_drop_s`` into (``confidence_drop``, ``s``); other names get variant ""."""
    for base in ("confidence_drop", "confidence_increase"):
        for variant in ("b", "s"):
            if metric == f"{base}_{variant}":
                return base, variant
    return metric, ""


def table_direction(metric: str, variant: str = "") -> str | None:
    """Direction from :mod:`tfxai.metadata`, or ``None`` when the metric is unknown."""
    base, suffix = split_suffix(base_name(metric))
    return metadata.direction(base, variant or suffix or "")


def metric_direction(
    metric: str, variant: str = "", scores: pd.DataFrame | None = None, use_evaluation: bool = True
) -> Direction:
    """Return the :class:`Direction` of ``metric`` (and ``variant``) following the module's precedence.

    ``use_evaluation`` is accepted for compatibility and ignored: the evaluator's classes and this
    module read the same table (:mod:`tfxai.metadata`).
    """
    del use_evaluation
    if scores is not None and "direction" in scores.columns and "metric" in scores.columns:
        rows = scores[(scores["metric"] == metric) & (scores["variant"] == variant)]
        values = {parse_direction(v) for v in rows["direction"]} - {None}
        if len(values) == 1:
            return Direction(values.pop(), "scores.csv")
    found = table_direction(metric, variant)
    if found is not None:
        return Direction(found, "tfxai.metadata")
    return Direction(HIGHER, "assumed")
