"""The Metric contract, metric registry and shared input checks.

A metric is one class deriving from :class:`Metric` with:

* ``name``, ``family`` (localisation, confidence, faithfulness, robustness, randomisation,
  complexity), ``direction`` (``"higher"`` or ``"lower"`` is better);
* what it needs: ``needs_boxes``, ``needs_model`` (forward passes), ``needs_attributer``
  (re-attributes new inputs, so stored-only attributions are not enough);
* ``variants``: the ``variant`` values it reports (``("",)`` for single-valued metrics);
* ``params_spec``: validated keyword parameters (:class:`tfxai.attribution.base.Param`);
* ``_evaluate(ctx) -> MetricOutput``: the batched computation on an :class:`EvalContext`.

:meth:`Metric.evaluate` checks the inputs first: images without boxes (for metrics that need them)
and non-finite attributions become NaN rows with a note (``no boxes``, ``non-finite attribution``)
and are not passed to ``_evaluate``.

:meth:`Metric.score` is the simple API (docs/architecture.md, Contracts): it returns the (N,) values of one variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from tfxai import metadata
from tfxai.attribution.base import SEED_PARAM, Param, canonical_params, validate_params
from tfxai.evaluation.shared import SharedWork
from tfxai.evaluation.shared import resolve as resolve_shared

__all__ = [
    "Metric",
    "RerunMetric",
    "MetricOutput",
    "EvalContext",
    "MetricInputError",
    "register_metric",
    "METRICS",
]


class MetricInputError(ValueError):
    """A metric was given less than it needs (boxes, a re-runnable attributer, a model)."""


@dataclass
class MetricOutput:
    """Per-variant values (N,), notes (N,) and optional extras (N,).

    An extra is ``None`` or a dict per image: its ``"curve"`` entry (a list of ``(x, y)`` pairs,
    e.g. percentage removed × probability) is written to ``curves.csv``; the other entries go to
    the ``extra`` column of ``scores.csv`` as JSON.
    """

    values: dict[str, np.ndarray]
    notes: dict[str, list[str]] = field(default_factory=dict)
    extras: dict[str, list[Any]] = field(default_factory=dict)
    #: dataset-level facts to record in metric_params (e.g. SSIM's data range L)
    recorded: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def empty(cls, variants: Sequence[str], n: int, note: str = "") -> MetricOutput:
        return cls(
            values={v: np.full(n, np.nan) for v in variants},
            notes={v: [note] * n for v in variants},
        )


@dataclass
class EvalContext:
    """Everything a metric may use for one batch. ``attributions`` are raw (signed, input space)."""

    backbone: Any
    attributer: Any
    images: np.ndarray
    targets: np.ndarray
    attributions: np.ndarray | None
    boxes: list[np.ndarray | None] | None
    box_labels: list[np.ndarray | None] | None
    seeds: np.ndarray
    #: per-batch memo of attribution-independent work (perturbed forward passes), shared by
    #: every method and metric of a batch; a fresh one per call when None
    shared: SharedWork | None = None
    #: the metric's dataset statistic from the first pass (``needs_dataset_pass``), or None
    dataset_stat: Any = None

    def __len__(self) -> int:
        return len(self.images)

    def maps(self, **overrides: Any) -> np.ndarray:
        """Normalised maps with the attributer's defaults (see :func:`tfxai.to_map`)."""
        from tfxai.attribution.base import to_map

        if self.attributer is not None and hasattr(self.attributer, "to_map"):
            return self.attributer.to_map(self.attributions, **overrides)
        return to_map(self.attributions, **overrides)

    def subset(self, idx: np.ndarray) -> EvalContext:
        take = lambda seq: None if seq is None else [seq[i] for i in idx]  # noqa: E731
        return EvalContext(
            backbone=self.backbone,
            attributer=self.attributer,
            images=self.images[idx],
            targets=self.targets[idx],
            attributions=None if self.attributions is None else self.attributions[idx],
            boxes=take(self.boxes),
            box_labels=take(self.box_labels),
            seeds=self.seeds[idx],
            shared=self.shared,
            dataset_stat=self.dataset_stat,
        )


class Metric:
    """Base class of every metric. See the module docstring for the contract."""

    name: ClassVar[str] = ""
    #: from :mod:`tfxai.metadata` when registered (see :func:`register_metric`)
    family: ClassVar[str] = ""
    direction: ClassVar[str] = "higher"
    variant_directions: ClassVar[dict[str, str]] = {}
    summary: ClassVar[str] = ""
    needs_boxes: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False
    needs_attributer: ClassVar[bool] = False
    #: metrics that consume the raw attribution need it; maps are derived from it
    needs_attributions: ClassVar[bool] = True
    variants: ClassVar[tuple[str, ...]] = ("",)
    stochastic: ClassVar[bool] = False
    params_spec: ClassVar[dict[str, Param]] = {}
    #: True when a first pass over the dataset is needed (see :meth:`dataset_statistic`)
    needs_dataset_pass: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        spec = dict(self.params_spec)
        if self.stochastic:
            spec.setdefault("seed", SEED_PARAM)
        self._spec = spec
        self.params = validate_params(self.name, spec, params)
        self.dataset_stat: Any = None

    # ------------------------------------------------------------------ records
    def metric_params(self) -> dict[str, Any]:
        out = {k: v for k, v in self.params.items() if self._spec[k].hashed}
        return out

    def metric_params_json(self) -> str:
        return canonical_params(self.metric_params())

    # ------------------------------------------------------------------ two-pass metrics
    def dataset_statistic(self, attributer: Any, attributions: np.ndarray) -> Any:
        """Per-batch statistic of the first pass (only for ``needs_dataset_pass`` metrics)."""
        raise NotImplementedError

    def combine_statistics(self, stats: list[Any]) -> Any:
        """Combine the per-batch statistics of the first pass; the result is ``dataset_stat``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        backbone: Any,
        attributer: Any,
        images: Any,
        targets: Any,
        attributions: np.ndarray | None = None,
        boxes: list[np.ndarray | None] | None = None,
        box_labels: list[np.ndarray | None] | None = None,
        seeds: Any = None,
        shared: SharedWork | None = None,
        dataset_stat: Any = None,
    ) -> MetricOutput:
        """All variants' values, notes and extras for a batch.

        ``dataset_stat``: for a metric with ``needs_dataset_pass``, the combined statistic of the
        first pass over all images (:meth:`combine_statistics`); the pipeline passes it in. When
        None the instance's ``dataset_stat`` attribute is used (set it by hand in the Python API).

        ``shared`` is a :class:`~tfxai.evaluation.shared.SharedWork` memo: metrics store in it
        the forward passes that do not depend on the attribution, so that other methods (or other
        parameter sets drawing the same perturbations) of the same batch reuse them.
        """
        x = np.asarray(images, dtype=np.float32)
        n = len(x)
        t = np.asarray(targets).reshape(-1).astype(np.int64) if targets is not None else None
        if t is None:
            if backbone is None:
                raise MetricInputError(f"{self.name}: targets are needed when no model is given")
            t = backbone.predict_logits(x).argmax(axis=1)
        if self.needs_boxes and boxes is None:
            raise MetricInputError(
                f"metric {self.name!r} needs bounding boxes: pass boxes=... (VOC boxes or "
                "segmentation masks of the images)"
            )
        if (self.needs_model or self.needs_attributer) and backbone is None:
            raise MetricInputError(f"metric {self.name!r} needs the model")
        if self.needs_attributer and not getattr(attributer, "rerunnable", False):
            raise MetricInputError(
                f"metric {self.name!r} re-runs the attribution method on new inputs, "
                f"but method {getattr(attributer, 'key', attributer)!r} cannot be re-run "
                "(stored-only attributions); give a method that tfxai can compute"
            )
        if attributions is None and self.needs_attributions:
            if attributer is None:
                raise MetricInputError(f"metric {self.name!r} needs attributions or an attributer")
            attributions = attributer.attribute(x, t, seeds=seeds)
        s = np.arange(n, dtype=np.int64) if seeds is None else np.asarray(seeds, np.int64)
        s = s + int(self.params.get("seed", 0))
        ctx = EvalContext(backbone, attributer, x, t, attributions, boxes, box_labels, s,
                          shared=resolve_shared(shared),
                          dataset_stat=self.dataset_stat if dataset_stat is None else dataset_stat)
        variants = self.variants if backbone is None else self.variants_for(backbone)
        return self._checked(ctx, variants)

    def variants_for(self, backbone: Any) -> tuple[str, ...]:
        """The variants this metric writes for ``backbone`` (the class's ``variants``; a metric
        whose variants depend on the model, such as model_randomisation's layers, overrides
        it). The pipeline asks before scoring, to know which rows a resumed run still needs."""
        return tuple(self.variants)

    def _checked(self, ctx: EvalContext, variants: Sequence[str]) -> MetricOutput:
        n = len(ctx)
        out = MetricOutput.empty(variants, n)
        bad_note = [""] * n
        ok = np.ones(n, dtype=bool)
        if ctx.attributions is not None:
            a = np.asarray(ctx.attributions)
            finite = np.isfinite(a.reshape(n, -1)).all(axis=1) if n else np.ones(0, bool)
            for i in np.flatnonzero(~finite):
                ok[i], bad_note[i] = False, "non-finite attribution"
        if self.needs_boxes:
            for i in range(n):
                b = ctx.boxes[i] if ctx.boxes is not None else None
                if ok[i] and (b is None or len(b) == 0):
                    ok[i], bad_note[i] = False, "no boxes"
        idx = np.flatnonzero(ok)
        if len(idx):
            sub = self._evaluate(ctx.subset(idx) if len(idx) < n else ctx)
            out.recorded = sub.recorded
            for v in variants:
                out.values[v][idx] = sub.values[v]
                sub_notes = sub.notes.get(v, [""] * len(idx))
                sub_extra = sub.extras.get(v)
                if sub_extra is not None:
                    out.extras.setdefault(v, [None] * n)
                for j, i in enumerate(idx):
                    out.notes[v][i] = sub_notes[j]
                    if sub_extra is not None:
                        out.extras[v][i] = sub_extra[j]
        for v in variants:
            for i in np.flatnonzero(~ok):
                out.notes[v][i] = bad_note[i]
        return out

    def _evaluate(self, ctx: EvalContext) -> MetricOutput:
        raise NotImplementedError

    def score(
        self,
        backbone: Any,
        attributer: Any,
        images: Any,
        targets: Any,
        attributions: np.ndarray | None = None,
        boxes: list[np.ndarray | None] | None = None,
        variant: str | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """(N,) values of one variant (the first one by default)."""
        out = self.evaluate(backbone, attributer, images, targets, attributions, boxes, **kwargs)
        v = next(iter(out.values)) if variant is None else variant
        if v not in out.values:
            raise ValueError(f"{self.name}: unknown variant {v!r}; variants: {list(out.values)}")
        return out.values[v]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.metric_params_json()})"


class RerunMetric(Metric):
    """Base of the metrics that re-run the attribution method on perturbed inputs or a perturbed
    model (sensitivity, model randomisation): they need the model and a re-runnable method, and
    draw their perturbations from the images' seeds (so they take a ``seed`` parameter)."""

    needs_model = True
    needs_attributer = True
    stochastic = True


# --------------------------------------------------------------------------------------- registry

METRICS: dict[str, type[Metric]] = {}


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator adding a metric to the registry under ``cls.name``.

    Its ``family``, ``direction`` and ``variant_directions`` come from :mod:`tfxai.metadata`, the
    one table of those facts (a metric outside it, e.g. a user's own, keeps its own attributes).
    """
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    meta = metadata.get(cls.name)
    if meta is not None:
        cls.family = meta.family
        cls.direction = meta.direction
        cls.variant_directions = dict(meta.variant_directions)
    METRICS[cls.name] = cls
    return cls
