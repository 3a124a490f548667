"""What every metric means for a reader: family, which way is better, its range, and whether its value
can be compared across attribution methods. The one source of truth for these facts (TF-free).

``tfxai metrics`` (through :func:`tfxai.evaluation.registry.metric_info`) and the Analyser
(:mod:`tfxai.analysis.directions`, the report's ranking) both read :data:`METRICS` here. The metric
classes in :mod:`tfxai.evaluation` keep their own ``family``/``direction``/``variant_directions``
attributes for the code that evaluates; a test checks that they agree with this table.

**Direction, per variant** (docs/metrics.md): ``higher`` or ``lower`` is better. Where a metric
has variants whose direction differs, :attr:`MetricMeta.variant_directions` says so:

- ``road``: ``morf`` lower (removing the most relevant pixels first should hurt), ``lerf`` higher;
- ``confidence_drop``: ``b`` (background occluded) lower, ``s`` (subject occluded) higher;
- ``confidence_increase``: ``b`` higher, ``s`` lower;
- ``model_randomisation``: every ``spearman@<layer>`` / ``ssim@<layer>`` lower (the map should change
  when the weights do).

**Comparable across methods.** A metric whose value scales with the magnitude of the attribution ranks
methods by the size of their attributions, not by their quality: saliency's gradients are tiny and
Grad-CAM's maps large. Such a value is shown but must not be used to rank methods. Scale-dependent:

- ``infidelity`` with ``normalize=false`` (the raw form of Yeh et al.): Iᵀ Φ grows with Φ; with
  ``normalize=true`` (the default) Φ is first scaled by the optimal β, which removes the scale;
- ``max_sensitivity`` / ``avg_sensitivity``, variant ``""``: ‖Φ(x+δ) − Φ(x)‖₂ is in the units of the
  raw attribution; the ``relative`` variant (÷ ‖Φ(x)‖₂), or a ``relative=true`` parameter, is not.

Every other metric depends on the map only through its ranking, its thresholds relative to its own
maximum or standard deviation, or a per-model×method data range (IoU, IoU*, box IoU, the pointing
games, relevance rank accuracy, occlusion confidence, ROAD, deletion/insertion, SSIM robustness,
model randomisation): multiplying an attribution by a positive constant leaves it unchanged.

**Range**: the interval every per-image value lies in (``-inf``/``inf`` for an open end). The report
draws error bars inside it and flags values found outside it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "HIGHER",
    "LOWER",
    "METRICS",
    "Comparability",
    "MetricMeta",
    "comparability",
    "direction",
    "get",
    "parse_params",
    "value_range",
]

HIGHER = "higher"
LOWER = "lower"
INF = math.inf


@dataclass(frozen=True)
class Comparability:
    """Whether a metric's values can rank methods, and why (``reason`` is one short phrase)."""

    comparable: bool
    reason: str

    def __bool__(self) -> bool:
        return self.comparable


@dataclass(frozen=True)
class MetricMeta:
    """Reader-facing facts of one metric. See the module docstring."""

    name: str
    family: str
    direction: str
    #: variant → direction where it differs from :attr:`direction`; a key ending in ``@`` matches
    #: every variant starting with it (``spearman@`` matches ``spearman@dense``)
    variant_directions: Mapping[str, str] = field(default_factory=dict)
    value_range: tuple[float, float] = (-INF, INF)
    #: ``invariant``: never depends on the attribution's scale; ``normalize``: only with
    #: ``normalize=true``; ``relative``: only the ``relative`` variant (or ``relative=true``)
    scale: str = "invariant"
    #: why the value is (or is not) scale-invariant, for the report and ``tfxai metrics``
    why: str = ""
    #: True when ``tfxai.evaluation`` implements it (False: a name the Analyser understands only)
    implemented: bool = True

    def direction_for(self, variant: str = "") -> str:
        """The better direction of ``variant`` ("" is the metric's own)."""
        variant = str(variant or "")
        if variant in self.variant_directions:
            return self.variant_directions[variant]
        for key, value in self.variant_directions.items():
            if key.endswith("@") and variant.startswith(key):
                return value
        return self.direction

    def comparable(self, params: Any = None, variant: str = "") -> Comparability:
        """Whether values of this metric, computed with ``params`` (a dict or its JSON), compare across
        methods. ``None`` params mean "not recorded"."""
        if self.scale == "invariant":
            return Comparability(True, self.why or "scale-invariant")
        found = parse_params(params)
        if self.scale == "normalize":
            if found is None or "normalize" not in found:
                return Comparability(False, "normalize not recorded: may be the raw, scale-dependent form")
            if _true(found["normalize"]):
                return Comparability(True, "normalize=true: Φ scaled by the optimal β")
            return Comparability(False, "normalize=false: raw value grows with the attribution's scale")
        if self.scale == "relative":
            if str(variant) == "relative" or (found is not None and _true(found.get("relative"))):
                return Comparability(True, "relative: divided by ‖Φ(x)‖₂")
            return Comparability(False, "absolute: in the units of the raw attribution")
        raise ValueError(f"{self.name}: unknown scale kind {self.scale!r}")

    @property
    def comparable_text(self) -> str:
        """A short statement for tables: when values compare across methods."""
        return {"invariant": "yes", "normalize": "if normalize",
                "relative": "relative only"}[self.scale]  # fmt: skip


def _true(value: Any) -> bool:
    """JSON/CLI truthiness: true, "true", 1, "1", "yes"."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value) and value is not None


def parse_params(params: Any) -> dict[str, Any] | None:
    """``metric_params`` as a dict: a dict is returned as is, JSON text parsed; None when absent or
    unreadable (empty text, NaN, not a JSON object)."""
    if params is None:
        return None
    if isinstance(params, Mapping):
        return dict(params)
    if isinstance(params, float) and math.isnan(params):
        return None
    text = str(params).strip()
    if not text:
        return None
    try:
        found = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None
    return found if isinstance(found, dict) else None


_UNIT = (0.0, 1.0)
_RANKING = "depends only on the ranking of the map's pixels"
_RELATIVE = "thresholds relative to the map's own maximum or spread"

METRICS: dict[str, MetricMeta] = {
    m.name: m
    for m in (
        # localisation (all need boxes; all higher is better)
        MetricMeta("iou", "localisation", HIGHER, value_range=_UNIT, why=_RELATIVE),
        MetricMeta("iou_star", "localisation", HIGHER, value_range=_UNIT, why=_RELATIVE),
        MetricMeta("box_iou", "localisation", HIGHER, value_range=_UNIT, why=_RELATIVE),
        MetricMeta("pointing_game", "localisation", HIGHER, value_range=_UNIT,
                   why="depends only on where the map's maximum is"),
        MetricMeta("energy_pointing_game", "localisation", HIGHER, value_range=_UNIT,
                   why="a share of the map's own energy"),
        MetricMeta("relevance_rank_accuracy", "localisation", HIGHER, value_range=_UNIT,
                   why=_RANKING),
        # occlusion confidence (percentages)
        MetricMeta("confidence_drop", "confidence", LOWER, {"b": LOWER, "s": HIGHER},
                   (0.0, 100.0), why="occludes the top percentile of the map (a ranking)"),
        MetricMeta("confidence_increase", "confidence", HIGHER, {"b": HIGHER, "s": LOWER},
                   (0.0, 100.0), why="occludes the top percentile of the map (a ranking)"),
        # faithfulness
        MetricMeta("infidelity", "faithfulness", LOWER, value_range=(0.0, INF), scale="normalize",
                   why="scale-invariant only with normalize=true (Φ scaled by the optimal β)"),
        MetricMeta("road", "faithfulness", LOWER, {"morf": LOWER, "lerf": HIGHER}, _UNIT,
                   why=_RANKING),
        MetricMeta("deletion", "faithfulness", LOWER, value_range=_UNIT, why=_RANKING),
        MetricMeta("insertion", "faithfulness", HIGHER, value_range=_UNIT, why=_RANKING),
        # robustness
        MetricMeta("max_sensitivity", "robustness", LOWER, value_range=(0.0, INF),
                   scale="relative",
                   why="the relative variant (÷ ‖Φ(x)‖₂) only; the absolute one has Φ's units"),
        MetricMeta("avg_sensitivity", "robustness", LOWER, value_range=(0.0, INF),
                   scale="relative",
                   why="the relative variant (÷ ‖Φ(x)‖₂) only; the absolute one has Φ's units"),
        MetricMeta("ssim_augmentation", "robustness", HIGHER, value_range=(-1.0, 1.0),
                   why="SSIM with the data range L of the model×method, which scales with Φ"),
        # randomisation sanity check: lower similarity is better for every variant
        MetricMeta("model_randomisation", "randomisation", LOWER,
                   {"spearman@": LOWER, "ssim@": LOWER}, (-1.0, 1.0),
                   why="rank correlation and SSIM of min-max scaled maps"),
        # complexity (optional metrics, understood by the Analyser)
        MetricMeta("sparseness", "complexity", HIGHER, value_range=_UNIT,
                   why="Gini index of |map|, scale-invariant", implemented=False),
        MetricMeta("complexity", "complexity", LOWER, value_range=(0.0, INF),
                   why="entropy of the normalised |map|", implemented=False),
    )
}  # fmt: skip


def get(metric: str) -> MetricMeta | None:
    """The :class:`MetricMeta` of ``metric``, or None when unknown."""
    return METRICS.get(str(metric))


def direction(metric: str, variant: str = "") -> str | None:
    """``higher``/``lower`` for ``metric`` and ``variant``; None when the metric is unknown."""
    meta = get(metric)
    return None if meta is None else meta.direction_for(variant)


def comparability(metric: str, params: Any = None, variant: str = "") -> Comparability:
    """:meth:`MetricMeta.comparable`; an unknown metric is not comparable ("unknown metric")."""
    meta = get(metric)
    if meta is None:
        return Comparability(False, "unknown metric: its scale is not known")
    return meta.comparable(params, variant)


def value_range(metric: str) -> tuple[float, float]:
    """The range of ``metric``'s values; (-inf, inf) when unknown."""
    meta = get(metric)
    return (-INF, INF) if meta is None else meta.value_range


# --------------------------------------------------------------------------------------- NaN reasons

#: the reason of a NaN value whose metric wrote no note
NO_REASON = "no reason recorded"
_MEASURED = re.compile(r"\s*=\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def nan_reason(note: object) -> str:
    """Why a value is NaN, from the metric's note in ``scores.csv``: measured numbers
    (``= 0.123``) dropped and ``head: tail`` written ``head (tail)``, so that notes differing only
    by a number are one reason (``gated out: |ΔP| = 0.123 ≥ 0.05`` → ``gated out (|ΔP| ≥ 0.05)``).
    Used by the run's end-of-run summary and by the report."""
    if note is None or (isinstance(note, float) and math.isnan(note)):
        return NO_REASON
    text = _MEASURED.sub("", str(note)).strip()
    if not text:
        return NO_REASON
    head, sep, tail = text.partition(": ")
    return f"{head} ({tail})" if sep and tail else text
