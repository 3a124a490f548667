"""The Study contract and what every study shares: options, the run, ``study.csv`` and ``study.json``.

A study is a named preset of a published protocol (:class:`Study`): its methods with the study's
parameters, its metrics, its default models and data, a ``--quick`` setting, and how its published
cells and findings are read back from the results. :func:`run_study` runs it:

1. the study composes tfxai runs (``tfxai.run.run_evaluate``, or ``tfxai.training`` for ROAR)
   into the output folder; they resume like every run, so re-running skips finished work;
2. it reads the results back and writes ``study.csv`` (:data:`STUDY_COLUMNS`: one row per cell of
   the study's published tables and per finding, for each of our models) and ``study.json`` (the
   protocol, the data chosen, what was run and how long it took);
3. ``tfxai analyse`` writes the usual tables and the report, whose first section shows the
   published table next to ours and which findings hold (:mod:`tfxai.analysis.study`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tfxai.studies.data import DataChoice, choose_images
from tfxai.studies.published import published, source_text

__all__ = [
    "PairedDifference",
    "paired_difference",
    "LITE_MODELS",
    "LITE_TOP1",
    "STUDY_COLUMNS",
    "Study",
    "StudyContext",
    "StudyError",
    "StudyOptions",
    "StudyResult",
    "cell_row",
    "finding_row",
    "select",
]

#: the three ImageNet models tfxai ships offline, in order of accuracy
LITE_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
#: their published ImageNet top-1 accuracy (EfficientNet-Lite; ``tfxai models``)
LITE_TOP1 = {"efficientnet_lite0": 0.751, "efficientnet_lite1": 0.767, "efficientnet_lite2": 0.776}

STUDY_COLUMNS = ("study", "table", "row", "column", "ours", "ours_ci_low", "ours_ci_high", "n",
                 "published", "model", "note")
FINDINGS = "findings"

Echo = Callable[[str], None]


class StudyError(ValueError):
    """A usage error of ``tfxai study`` (exit code 2), found before any work."""


@dataclass
class StudyOptions:
    """The options of ``tfxai study NAME`` (None: the study's default)."""

    models: Sequence[str] | None = None
    #: a subset of the study's methods (e.g. to split a long run); None = all of them
    methods: Sequence[str] | None = None
    images: str | os.PathLike | None = None
    annotations: str | os.PathLike | None = None
    labels_from_name: str | None = None
    out: str | os.PathLike | None = None
    quick: bool = False
    #: only the first N images (by id) of the study's data
    limit: int | None = None
    batch_size: int = 8
    seed: int = 0
    progress: bool = True
    report: bool = True


@dataclass
class StudyContext:
    """A study being run: its options resolved, the output folder, and what was chosen."""

    options: StudyOptions
    out: Path
    models: list[str]
    echo: Echo
    #: lines said on stderr and recorded in ``study.json``: the data chosen and why
    data: list[str] = field(default_factory=list)
    #: lines: what was run (models, methods, limits)
    run: list[str] = field(default_factory=list)
    summaries: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: extra fields for ``study.json`` (e.g. the models' accuracies)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.options.quick

    def say(self, line: str, kind: str = "run") -> None:
        (self.data if kind == "data" else self.run).append(line)
        self.echo(line)

    def choose_images(self, kind: str) -> DataChoice:
        """The study's images of ``kind`` from the options (:func:`tfxai.studies.data.
        choose_images`), said as a data line."""
        data = choose_images(kind, self.options.images, self.options.annotations,
                             self.options.labels_from_name)
        self.say(f"images: {data.description}", "data")
        return data


@dataclass
class StudyResult:
    """What :func:`run_study` did."""

    study: str
    out: Path
    rows: pd.DataFrame
    errors: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


class Study:
    """A named, documented preset of a published study. Subclasses set the class attributes and
    implement :meth:`execute` (the runs) and :meth:`rows` (``study.csv``)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: one line for ``tfxai study`` (the list)
    summary: ClassVar[str] = ""
    default_models: ClassVar[tuple[str, ...]] = LITE_MODELS
    quick_models: ClassVar[tuple[str, ...]] = ("efficientnet_lite0",)

    # ------------------------------------------------------------------ the preset
    def settings(self, quick: bool = False) -> dict[str, Any]:
        """The preset as data (methods with parameters, metrics with parameters, models, data,
        limits): what the tests hold against the study's stated parameters."""
        raise NotImplementedError

    def protocol(self) -> list[str]:
        """The protocol in words, one line each (docs, ``study.json``, the report)."""
        raise NotImplementedError

    def source(self) -> str:
        return source_text(self.name)

    def published(self) -> dict[str, Any]:
        return published(self.name)

    def methods(self, options: StudyOptions) -> dict[str, dict[str, Any]]:
        """The methods of this run: the preset's (quick or full), restricted to ``--method``."""
        preset = self.settings(options.quick)["methods"]
        if not options.methods:
            return dict(preset)
        unknown = [m for m in options.methods if m not in preset]
        if unknown:
            raise StudyError(f"--method: {', '.join(unknown)} not among the methods of "
                             f"{self.name} ({', '.join(preset)})")
        return {m: preset[m] for m in preset if m in options.methods}

    # ------------------------------------------------------------------ running
    def execute(self, ctx: StudyContext) -> None:
        """Run the study's runs into ``ctx.out`` (resumable)."""
        raise NotImplementedError

    def rows(self, ctx: StudyContext) -> list[dict[str, Any]]:
        """The ``study.csv`` rows, read from the results in ``ctx.out``."""
        raise NotImplementedError

    def analysis_options(self, ctx: StudyContext) -> dict[str, Any]:
        """Keyword arguments of :class:`tfxai.analysis.AnalysisOptions` for the report."""
        return {}

    def default_out(self, quick: bool) -> Path:
        return Path("results") / (f"study-{self.name}" + ("-quick" if quick else ""))


# --------------------------------------------------------------------------------------- rows


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def cell_row(study: str, table: str, row: str, column: str, values: Iterable[float] | pd.Series,
             published_value: Any, model: str, note: str = "",
             groups: Iterable[Any] | None = None, scale: float = 1.0,
             statistic: str = "mean") -> dict[str, Any]:
    """One published cell with our value: the mean (or ``statistic="std"``: the sample std) of
    ``values`` × ``scale``, its 95 % percentile bootstrap interval resampling ``groups`` (images;
    1000 resamples, seed 0, as ``tfxai analyse``) and n = the number of groups with a value."""
    from tfxai.analysis.summary import bootstrap_ci

    vals = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(float)
    names = None if groups is None else list(groups)
    defined = vals[~np.isnan(vals)]
    low = high = math.nan
    if statistic == "std":
        ours = float(defined.std(ddof=1)) if defined.size > 1 else math.nan
        n = int(defined.size)
    else:
        ours = float(defined.mean()) if defined.size else math.nan
        low, high, n = bootstrap_ci(vals, names)
    if names is not None and statistic == "std":
        n = len({g for g, v in zip(names, vals, strict=True) if not np.isnan(v)})
    return {"study": study, "table": table, "row": row, "column": column,
            "ours": ours * scale, "ours_ci_low": low * scale, "ours_ci_high": high * scale,
            "n": n, "published": published_value, "model": model, "note": note}


@dataclass(frozen=True)
class PairedDifference:
    """The mean of a − b over the images with both values, and its 95 % bootstrap interval over
    those images (1000 resamples, seed 0, as ``tfxai analyse``; NaN below two images)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def sign(self) -> int:
        """+1 when the interval lies above 0, −1 below it, 0 when it includes 0 (or is undefined):
        a difference within the noise of the images is no ordering."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def text(self, digits: int = 3) -> str:
        """``+0.057 [+0.021, +0.090] over 15 images``."""
        if math.isnan(self.mean):
            return "no image with both values"
        interval = ("no interval" if math.isnan(self.low)
                    else f"[{self.low:+.{digits}f}, {self.high:+.{digits}f}]")
        return f"{self.mean:+.{digits}f} {interval} over {self.n} images"


def paired_difference(a: pd.DataFrame, b: pd.DataFrame) -> PairedDifference:
    """a − b paired by ``image_id`` (score rows; several rows of an image are averaged)."""
    from tfxai.analysis.summary import bootstrap_ci

    def per_image(rows: pd.DataFrame) -> pd.Series:
        return pd.to_numeric(rows["value"], errors="coerce").groupby(rows["image_id"]).mean()

    diff = (per_image(a) - per_image(b)).dropna()
    if diff.empty:
        return PairedDifference(math.nan, math.nan, math.nan, 0)
    low, high, n = bootstrap_ci(diff.to_numpy(), list(diff.index))
    return PairedDifference(float(diff.mean()), low, high, n)


def finding_row(study: str, finding: str, statement: str, holds: bool | None, model: str,
                evidence: str) -> dict[str, Any]:
    """A finding: ``ours`` 1 (holds), 0 (does not) or NaN (not testable), the evidence as note."""
    return {"study": study, "table": FINDINGS, "row": finding, "column": "holds",
            "ours": math.nan if holds is None else float(bool(holds)), "ours_ci_low": math.nan,
            "ours_ci_high": math.nan, "n": math.nan, "published": statement, "model": model,
            "note": evidence}


def _matches(text: Any, expected: Mapping[str, Any], skip: Sequence[str] = ("background",)) -> bool:
    """True when the recorded params JSON ``text`` has the ``expected`` values (other keys and the
    ``skip`` keys are not compared)."""
    from tfxai import metadata

    found = metadata.parse_params(text) or {}
    for key, value in expected.items():
        if key in skip:
            continue
        if key not in found:
            return False
        have = found[key]
        if isinstance(value, float) or isinstance(have, float):
            if not math.isclose(_num(have), _num(value), rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif have != value and str(have) != str(value):
            return False
    return True


def recorded_metric_params(metric: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``metric_params`` a run records for ``metric`` built with ``params`` (the metric leaves
    some parameters out at their defaults), without the seed (the run's)."""
    from tfxai.evaluation.registry import get_metric

    recorded = get_metric(metric, **dict(params)).metric_params()
    return {k: v for k, v in recorded.items() if k != "seed"}


def select(scores: pd.DataFrame, method: str | None = None,
           method_params: Mapping[str, Any] | None = None, metric: str | None = None,
           metric_params: Mapping[str, Any] | None = None, model: str | None = None,
           variant: str | None = None) -> pd.DataFrame:
    """The score rows of one method / metric / model / variant whose recorded parameters have the
    given values (other parameters are not compared; with ``metric``, ``metric_params`` are
    compared in the form the metric records them)."""
    if metric is not None and metric_params:
        metric_params = recorded_metric_params(metric, metric_params)
    rows = scores
    for column, value in (("method", method), ("metric", metric), ("model", model),
                          ("variant", variant)):
        if value is not None:
            rows = rows[rows[column].astype(str) == str(value)]
    # boolean masks as arrays: an empty list would select no *columns* of an empty frame
    if method_params:
        rows = rows[np.array([_matches(t, method_params) for t in rows["method_params"]],
                             dtype=bool)]
    if metric_params:
        rows = rows[np.array([_matches(t, metric_params) for t in rows["metric_params"]],
                             dtype=bool)]
    return rows


# --------------------------------------------------------------------------------------- files


def write_rows(rows: Sequence[Mapping[str, Any]], path: Path) -> pd.DataFrame:
    """Write ``study.csv`` (atomically: a temporary file renamed)."""
    frame = pd.DataFrame(list(rows), columns=list(STUDY_COLUMNS))
    tmp = path.with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return frame


def write_json(record: Mapping[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _lite_models_csv(ctx: StudyContext) -> None:
    """``models.csv`` with the published ImageNet top-1 of the Lite models run, added to the rows
    already there (a model already listed keeps its row), so that the report knows their
    accuracies (the reliability test orders models by it)."""
    path = ctx.out / "models.csv"
    rows = [{"model": m, "accuracy": LITE_TOP1[m], "architecture": "efficientnet_lite",
             "accuracy_source": "published ImageNet top-1 (EfficientNet-Lite)"}
            for m in ctx.models if m in LITE_TOP1]
    if not rows or not ctx.out.is_dir():
        return
    old = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["model"])
    new = [r for r in rows if r["model"] not in set(old["model"].astype(str))]
    if new:
        pd.concat([old, pd.DataFrame(new)], ignore_index=True).to_csv(path, index=False)


def run_study(study: Study, options: StudyOptions, echo: Echo | None = None) -> StudyResult:
    """Run ``study`` with ``options`` (module docstring); returns what was done.

    Raises:
        StudyError, tfxai.run.ConfigError, tfxai.data.DatasetError, tfxai.models.ModelLoadError:
            usage errors, before anything is written.
    """
    echo = echo or _stderr
    if options.limit is not None and options.limit < 1:
        raise StudyError(f"--limit must be >= 1, got {options.limit}")
    out = Path(options.out) if options.out is not None else study.default_out(options.quick)
    models = list(options.models) if options.models else list(
        study.quick_models if options.quick else study.default_models)
    ctx = StudyContext(options=options, out=out, models=models, echo=echo)
    echo(f"study {study.name}: {study.title}" + (" (quick setting)" if options.quick else ""))
    t0 = time.perf_counter()
    study.execute(ctx)
    _lite_models_csv(ctx)
    interrupted = any(getattr(s, "interrupted", False) for s in ctx.summaries)
    errors = sum(int(getattr(s, "errors", 0)) for s in ctx.summaries)
    seconds = time.perf_counter() - t0
    rows = study.rows(ctx)
    out.mkdir(parents=True, exist_ok=True)
    frame = write_rows(rows, out / "study.csv")
    record = {
        "study": study.name, "title": study.title, "source": study.source(),
        "protocol": study.protocol(), "data": ctx.data, "run": ctx.run, "quick": options.quick,
        "models": models, "settings": study.settings(options.quick),
        "seconds": round(seconds, 1), **ctx.extra,
    }
    write_json(record, out / "study.json")
    files = [out / "study.csv", out / "study.json"]
    if options.report:
        from tfxai.analysis import AnalysisOptions, analyse

        analysis = analyse([out], out, AnalysisOptions(**study.analysis_options(ctx)))
        files.extend(analysis.files)
        # the analysis repeats the run's warnings (from runs.jsonl): keep each once
        ctx.notes = [n for n in ctx.notes if not any(n in a for a in analysis.notes)]
        ctx.notes.extend(analysis.notes)
    return StudyResult(study.name, out, frame, errors, interrupted, seconds, ctx.notes, files)
