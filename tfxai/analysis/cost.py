"""Cost view: seconds per attribution per method × model, from the ``seconds`` column of ``scores.csv``.

``scores.csv`` repeats an attribution's ``seconds`` on every metric row computed from it. One attribution
is one (run, image, model, weights, method, method_params) key; its cost is the median of the ``seconds``
found on its rows (equal to the repeated value; robust if a writer stored slightly different timings per
row). Statistics follow :func:`tfxai.analysis.summary.describe` (sample std, ddof=1).

``seconds`` may be timed per image, or be the time of a whole batch divided by its size and repeated on
each of its images (older results). Per-image timings practically never repeat exactly, so when
different images of one (run, model, method, method_params) share a value, the ``timing`` column says
``batch mean`` with the number of distinct values (≈ batches): the std then measures the spread between
batches, not between images. Otherwise it says ``per image``.

:func:`cost_by_metric` gives the per-row view (seconds per score row, per metric) for completeness.
"""

from __future__ import annotations

import pandas as pd

from .summary import STAT_COLUMNS, describe

ATTRIBUTION_KEY = ("run", "image_id", "model_id", "weights", "method", "method_params")


def attribution_seconds(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per attribution key with its ``seconds`` (median over that key's rows)."""
    key = [k for k in ATTRIBUTION_KEY if k in scores.columns]
    if scores.empty or "seconds" not in scores.columns:
        return pd.DataFrame(columns=[*key, "seconds"])
    grouped = scores.groupby(key, sort=True, dropna=False)["seconds"].median()
    return grouped.reset_index()


PER_IMAGE, BATCH_MEAN = "per image", "batch mean"


def timing_kind(per: pd.DataFrame) -> str:
    """``per image``, or ``batch mean (k values over n images)`` when images of one run × model ×
    method × params share a ``seconds`` value (see the module docstring)."""
    key = [k for k in ("run", "model_id", "weights", "method", "method_params") if k in per.columns]
    shared = False
    distinct = 0
    images = 0
    for _, frame in per.groupby(key, sort=True, dropna=False) if key else [(None, per)]:
        values = pd.to_numeric(frame["seconds"], errors="coerce").dropna()
        distinct += int(values.nunique())
        images += len(values)
        shared = shared or bool(values.duplicated().any())
    if not shared:
        return PER_IMAGE
    return f"{BATCH_MEAN} ({distinct} value{'s' if distinct != 1 else ''} over {images} images)"


def cost_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Seconds per attribution per (method, model): mean, std_sample, count, nan_count, total, timing."""
    per = attribution_seconds(scores)
    columns = ["method", "model_id", *STAT_COLUMNS, "total_seconds", "timing"]
    if per.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (method, model_id), frame in per.groupby(["method", "model_id"], sort=True):
        stats = describe(frame["seconds"])
        rows.append(
            {
                "method": method,
                "model_id": model_id,
                **stats,
                "total_seconds": float(frame["seconds"].sum()),
                "timing": timing_kind(frame),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def cost_by_metric(scores: pd.DataFrame) -> pd.DataFrame:
    """Seconds per score row per (metric, method, model).

    Uses the metric's own time (``metric_seconds``) when the results have that column, else ``seconds``;
    the ``source`` column says which.
    """
    column = "metric_seconds" if "metric_seconds" in scores.columns else "seconds"
    columns = ["metric", "method", "model_id", *STAT_COLUMNS, "source"]
    if scores.empty or column not in scores.columns:
        return pd.DataFrame(columns=columns)
    rows = []
    for (metric, method, model_id), frame in scores.groupby(
        ["metric", "method", "model_id"], sort=True
    ):
        stats = describe(pd.to_numeric(frame[column], errors="coerce"))
        rows.append(
            {"metric": metric, "method": method, "model_id": model_id, **stats, "source": column}
        )
    return pd.DataFrame(rows, columns=columns)
