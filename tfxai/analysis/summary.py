"""Summary tables: mean, standard deviation, counts, grouped by model, method, metric, variant, band.

Statistics (the column names say which):

- ``mean``: mean of the defined (non-NaN) values;
- ``std_sample``: the *sample* standard deviation (``ddof=1``, divisor n−1) of the defined values; NaN when
  fewer than two values are defined;
- ``count``: number of defined values;
- ``nan_count``: number of rows whose value is NaN (the metric was undefined; see the ``note`` column);
- ``ci_low``, ``ci_high``: a 95 % percentile bootstrap confidence interval of the mean over **images**
  (:func:`bootstrap_ci`: 1000 resamples, seeded, so the same inputs give the same interval); NaN when
  fewer than two images have a defined value;
- ``n``: the number of images the bootstrap resampled (images with at least one defined value; equal to
  ``count`` when each image has one row in the group);
- ``out_of_range``: defined values outside the metric's range (:func:`tfxai.metadata.value_range`);
  nothing is clipped, the report says so;
- ``direction`` and ``comparable`` (in :func:`summarise`): which way is better for the variant, and
  whether the values compare across methods given the recorded ``metric_params``
  (:func:`tfxai.metadata.comparability`).

Confidence band (Gattas): ``high`` when the top-1 probability is strictly greater than the threshold
(default 0.9), ``low`` when it is not, ``unknown`` when the confidence is missing. The top-1 probability is
``predictions.csv``'s ``confidence`` for that image × model, or ``scores.csv``'s where no prediction row
matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tfxai import metadata

from .directions import metric_direction
from .settings import base_name

DEFAULT_HIGH_CONFIDENCE = 0.9
#: Names accepted in ``--by``, and the column each one maps to.
GROUP_COLUMNS = {
    "model": "model_id",
    "model_id": "model_id",
    "method": "method",
    "metric": "metric",
    "variant": "variant",
    "band": "band",
    "confidence_band": "band",
    "architecture": "architecture",
    "weights": "weights",
    "run": "run",
}
STAT_COLUMNS = ("mean", "std_sample", "count", "nan_count")
#: Columns the bootstrap adds next to the mean (:func:`describe` with ``ci=``).
CI_COLUMNS = ("ci_low", "ci_high", "n", "out_of_range")
#: Columns :func:`summarise` adds after the statistics.
META_COLUMNS = ("direction", "comparable")
DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0
BAND_HIGH, BAND_LOW, BAND_UNKNOWN = "high", "low", "unknown"


def parse_by(text: str | Sequence[str] | None) -> list[str]:
    """Turn ``model,method`` into grouping columns; raise ``ValueError`` naming an unknown name."""
    if text is None:
        return ["model_id", "method"]
    names = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    columns: list[str] = []
    for name in names:
        if not name:
            continue
        if name not in GROUP_COLUMNS:
            raise ValueError(
                f"--by: unknown column {name!r}; choose from {', '.join(sorted(GROUP_COLUMNS))}"
            )
        if GROUP_COLUMNS[name] not in columns:
            columns.append(GROUP_COLUMNS[name])
    return columns


def confidence_band(confidence: pd.Series, threshold: float = DEFAULT_HIGH_CONFIDENCE) -> pd.Series:
    """``high`` where ``confidence > threshold``, ``low`` where not, ``unknown`` where NaN."""
    values = pd.to_numeric(confidence, errors="coerce")
    band = np.where(values > threshold, BAND_HIGH, BAND_LOW)
    band = np.where(values.isna(), BAND_UNKNOWN, band)
    return pd.Series(band, index=confidence.index, dtype=object)


def add_band(
    scores: pd.DataFrame,
    predictions: pd.DataFrame | None = None,
    threshold: float = DEFAULT_HIGH_CONFIDENCE,
) -> pd.DataFrame:
    """Return ``scores`` with ``top1_confidence`` and ``band`` columns (see the module docstring)."""
    out = scores.copy()
    top1 = out["confidence"] if "confidence" in out.columns else pd.Series(np.nan, index=out.index)
    if predictions is not None and not predictions.empty and "confidence" in predictions.columns:
        keys = ["image_id", "model", "weights"]
        if all(k in out.columns for k in keys):
            table = predictions.dropna(subset=["confidence"]).drop_duplicates(keys)
            lookup = table.set_index(keys)["confidence"]
            index = pd.MultiIndex.from_frame(out[keys].astype(str))
            from_predictions = pd.Series(lookup.reindex(index).to_numpy(), index=out.index)
            top1 = from_predictions.fillna(top1)
    out["top1_confidence"] = pd.to_numeric(top1, errors="coerce").astype(float)
    out["band"] = confidence_band(out["top1_confidence"], threshold)
    return out


def add_confidence_columns(
    models: pd.DataFrame, predictions: pd.DataFrame, threshold: float = DEFAULT_HIGH_CONFIDENCE
) -> pd.DataFrame:
    """Add ``mean_confidence`` and ``high_share`` (share of images with top-1 p > threshold) per model.

    ``predictions`` needs ``model_id`` and ``confidence`` columns; models without predictions get NaN.
    """
    out = models.copy()
    if predictions is None or predictions.empty or "model_id" not in predictions.columns:
        out["mean_confidence"], out["high_share"] = np.nan, np.nan
        return out
    data = predictions.dropna(subset=["confidence"])
    grouped = data.groupby("model_id")["confidence"]
    out["mean_confidence"] = out["model_id"].map(grouped.mean()).astype(float)
    out["high_share"] = (
        out["model_id"].map(grouped.apply(lambda c: float((c > threshold).mean()))).astype(float)
    )
    return out


@dataclass(frozen=True)
class Bootstrap:
    """How :func:`bootstrap_ci` resamples: ``resamples`` draws, a central ``level`` interval, ``seed``."""

    resamples: int = DEFAULT_RESAMPLES
    level: float = DEFAULT_LEVEL
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if self.resamples < 1:
            raise ValueError(f"bootstrap resamples must be at least 1, got {self.resamples}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"confidence level must be in (0, 1), got {self.level}")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray | pd.Series,
    groups: Sequence[object] | np.ndarray | pd.Series | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float, int]:
    """Percentile bootstrap interval of the mean of the defined ``values``, resampling ``groups``.

    ``groups`` names the image of each value (None: every value is its own image). Images with no
    defined value are left out; the k remaining ones, in sorted order of their names, are resampled
    with replacement: ``idx = numpy.random.default_rng(seed).integers(0, k, size=(resamples, k))``.
    Each resample's statistic is the mean of all the values of the images drawn (Σ sums / Σ counts:
    the plain mean when each image has one value). The interval is the ``(1 − level)/2`` and
    ``(1 + level)/2`` percentiles (numpy's linear interpolation) of those means.

    Returns (low, high, k); low and high are NaN when k < 2 (one image has no spread to resample).
    """
    data = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(float)
    names = np.arange(data.size) if groups is None else np.asarray(groups, dtype=object)
    keep = ~np.isnan(data)
    data, names = data[keep], names[keep]
    if data.size == 0:
        return float("nan"), float("nan"), 0
    labels = pd.Series(names).astype(str).to_numpy() if groups is not None else names
    _, inverse = np.unique(labels, return_inverse=True)
    sums = np.bincount(inverse, weights=data)
    counts = np.bincount(inverse).astype(float)
    k = int(sums.size)
    if k < 2:
        return float("nan"), float("nan"), k
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, k, size=(int(resamples), k))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.percentile(means, [100.0 * tail, 100.0 * (1.0 - tail)])
    return float(low), float(high), k


def describe(
    values: pd.Series,
    images: pd.Series | None = None,
    ci: Bootstrap | None = None,
    value_range: tuple[float, float] | None = None,
) -> dict[str, float]:
    """Mean, sample std (ddof=1), count of defined values and NaN count of ``values``.

    With ``ci``, also the bootstrap interval over ``images`` (:func:`bootstrap_ci`: ``ci_low``,
    ``ci_high``, ``n``) and ``out_of_range``, the number of defined values outside ``value_range``.
    """
    data = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    defined = data[~np.isnan(data)]
    n = int(defined.size)
    stats: dict[str, float] = {
        "mean": float(defined.mean()) if n else float("nan"),
        "std_sample": float(defined.std(ddof=1)) if n > 1 else float("nan"),
        "count": n,
        "nan_count": int(data.size - n),
    }
    if ci is not None:
        low, high, k = bootstrap_ci(values.to_numpy(), None if images is None else images.to_numpy(),
                                    ci.resamples, ci.level, ci.seed)  # fmt: skip
        lo, hi = value_range if value_range is not None else (-np.inf, np.inf)
        stats.update({"ci_low": low, "ci_high": high, "n": k,
                      "out_of_range": int(((defined < lo) | (defined > hi)).sum())})  # fmt: skip
    return stats


def describe_rows(
    frame: pd.DataFrame, metric: str | None, ci: Bootstrap | None, column: str = "value"
) -> dict[str, float]:
    """:func:`describe` of ``frame[column]`` with the bootstrap over its ``image_id`` column (when
    present) and the range of ``metric``."""
    images = frame["image_id"] if "image_id" in frame.columns else None
    span = metadata.value_range(base_name(metric)) if metric is not None else None
    return describe(frame[column], images, ci, span)


def group_comparability(frame: pd.DataFrame, metric: str, variant: str) -> tuple[bool, str]:
    """Whether the rows of one metric × variant compare across methods, from their ``metric_params``.

    Rows computed with several parameter sets (other than the seed and recorded data statistics)
    are pooled by the summary, so they are comparable only when every set is.
    """
    raw = frame["metric_params"] if "metric_params" in frame.columns else pd.Series([None])
    texts = sorted({None if pd.isna(v) else str(v) for v in raw}, key=str)
    found = [metadata.comparability(base_name(metric), t, variant) for t in texts or [None]]
    bad = [f for f in found if not f.comparable]
    if bad:
        return False, bad[0].reason
    return True, found[0].reason


def summarise(
    scores: pd.DataFrame,
    by: Sequence[str] = ("model_id", "method"),
    ci: Bootstrap | None = Bootstrap(),
) -> pd.DataFrame:
    """Group ``scores`` by ``by`` plus ``metric`` and ``variant`` and describe ``value``.

    ``metric`` and ``variant`` are always grouping keys (averaging different metrics is meaningless); the
    pooled view over all variants of a metric is :func:`tfxai.analysis.augmentation.ssim_groups`'s job.
    Rows are sorted by the keys, so the output is deterministic. With ``ci`` (the default) each row has
    a bootstrap interval over images, ``n``, ``out_of_range``, ``direction`` and ``comparable``.
    """
    keys = list(dict.fromkeys([*by, "metric", "variant"]))
    missing = [k for k in keys if k not in scores.columns]
    if missing:
        raise ValueError(f"cannot group by missing column(s): {', '.join(missing)}")
    ordered = ["metric", "variant", *[k for k in keys if k not in ("metric", "variant")]]
    stats = [*STAT_COLUMNS, *(CI_COLUMNS + META_COLUMNS if ci is not None else ())]
    if scores.empty:
        return pd.DataFrame(columns=[*ordered, *stats])
    meta: dict[tuple[str, str], dict[str, object]] = {}
    if ci is not None:
        for (metric, variant), frame in scores.groupby(["metric", "variant"], sort=True):
            found = metric_direction(metric, variant, scores)
            meta[(metric, variant)] = {
                "direction": found.direction + (" (assumed)" if found.assumed else ""),
                "comparable": group_comparability(frame, metric, variant)[0],
            }
    rows = []
    for group, frame in scores.groupby(ordered, sort=True, dropna=False):
        group = group if isinstance(group, tuple) else (group,)
        key = dict(zip(ordered, group, strict=True))
        described = describe_rows(frame, key["metric"], ci)
        rows.append({**key, **described, **meta.get((key["metric"], key["variant"]), {})})
    return pd.DataFrame(rows, columns=[*ordered, *stats])


def format_number(value: float) -> str:
    """3 significant digits; exponent form only for very small or large magnitudes."""
    if pd.isna(value):
        return "n/a"
    return f"{value:.3g}"


def format_cell(
    mean: float, std: float, count: int, ci_low: float = float("nan"),
    ci_high: float = float("nan"),
) -> str:
    """``mean [ci_low, ci_high] (n)`` with 3 significant digits (``mean ± std (n)`` without an
    interval); ``n/a (0)`` when nothing is defined."""
    if count == 0 or pd.isna(mean):
        return f"n/a ({count})"
    if not (pd.isna(ci_low) or pd.isna(ci_high)):
        return f"{format_number(mean)} [{format_number(ci_low)}, {format_number(ci_high)}] ({count})"
    spread = "" if pd.isna(std) else f" ± {std:.3g}"
    return f"{format_number(mean)}{spread} ({count})"


#: Header of the cells of :func:`compact` (with and without intervals).
CELL_CI = "mean [95% CI] (n)"
CELL_STD = "mean ± std (n)"
_HIDDEN = ("direction", "comparable")


def compact(table: pd.DataFrame) -> pd.DataFrame:
    """A readable view of a statistics table: one ``mean [CI] (n)`` cell instead of the statistics.

    Tables without interval columns get ``mean ± std (n)`` cells. When the table has a ``method``
    column, methods become columns (one row per remaining key).
    """
    if table.empty or not set(STAT_COLUMNS) <= set(table.columns):
        return table
    has_ci = {"ci_low", "ci_high"} <= set(table.columns)
    drop = set(STAT_COLUMNS) | set(CI_COLUMNS) | set(_HIDDEN)
    keys = [c for c in table.columns if c not in drop]
    cells = table[keys].copy()
    header = CELL_CI if has_ci else CELL_STD
    low = table["ci_low"] if has_ci else pd.Series(np.nan, index=table.index)
    high = table["ci_high"] if has_ci else pd.Series(np.nan, index=table.index)
    cells[header] = [
        format_cell(m, s, int(n), lo, hi)
        for m, s, n, lo, hi in zip(table["mean"], table["std_sample"], table["count"], low, high,
                                   strict=True)
    ]  # fmt: skip
    if "method" not in keys or len(keys) < 2:
        return cells
    index = [k for k in keys if k != "method"]
    wide = cells.pivot_table(index=index, columns="method", values=header, aggfunc="first",
                             sort=True)  # fmt: skip
    wide = wide.reset_index()
    wide.columns.name = None
    return wide.fillna("")
