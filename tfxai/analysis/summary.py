"""Summary tables: mean, standard deviation, counts, grouped by model, method, metric, variant, band.

Statistics (the column names say which):

- ``mean``: mean of the defined (non-NaN) values;
- ``std_sample``: the *sample* standard deviation (``ddof=1``, divisor n−1) of the defined values; NaN when
  fewer than two values are defined;
- ``count``: number of defined values;
- ``nan_count``: number of rows whose value is NaN (the metric was undefined; see the ``note`` column).

Confidence band (Gattas): ``high`` when the top-1 probability is strictly greater than the threshold
(default 0.9), ``low`` when it is not, ``unknown`` when the confidence is missing. The top-1 probability is
``predictions.csv``'s ``confidence`` for that image × model, or ``scores.csv``'s where no prediction row
matches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

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


def describe(values: pd.Series) -> dict[str, float]:
    """Mean, sample std (ddof=1), count of defined values and NaN count of ``values``."""
    data = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    defined = data[~np.isnan(data)]
    n = int(defined.size)
    return {
        "mean": float(defined.mean()) if n else float("nan"),
        "std_sample": float(defined.std(ddof=1)) if n > 1 else float("nan"),
        "count": n,
        "nan_count": int(data.size - n),
    }


def summarise(scores: pd.DataFrame, by: Sequence[str] = ("model_id", "method")) -> pd.DataFrame:
    """Group ``scores`` by ``by`` plus ``metric`` and ``variant`` and describe ``value``.

    ``metric`` and ``variant`` are always grouping keys (averaging different metrics is meaningless); the
    pooled view over all variants of a metric is :func:`tfxai.analysis.augmentation.ssim_groups`'s job.
    Rows are sorted by the keys, so the output is deterministic.
    """
    keys = list(dict.fromkeys([*by, "metric", "variant"]))
    missing = [k for k in keys if k not in scores.columns]
    if missing:
        raise ValueError(f"cannot group by missing column(s): {', '.join(missing)}")
    ordered = ["metric", "variant", *[k for k in keys if k not in ("metric", "variant")]]
    if scores.empty:
        return pd.DataFrame(columns=[*ordered, *STAT_COLUMNS])
    rows = []
    for group, frame in scores.groupby(ordered, sort=True, dropna=False):
        group = group if isinstance(group, tuple) else (group,)
        rows.append({**dict(zip(ordered, group, strict=True)), **describe(frame["value"])})
    return pd.DataFrame(rows, columns=[*ordered, *STAT_COLUMNS])


def format_cell(mean: float, std: float, count: int) -> str:
    """``mean ± std (n)`` with 3 significant digits; ``NaN`` parts shown as ``n/a``."""
    if count == 0 or pd.isna(mean):
        return f"n/a ({count})"
    spread = "" if pd.isna(std) else f" ± {std:.3g}"
    return f"{mean:.3g}{spread} ({count})"


def compact(table: pd.DataFrame) -> pd.DataFrame:
    """A readable view of a statistics table: one ``mean ± std (n)`` column instead of four.

    When the table has a ``method`` column, methods become columns (one row per remaining key).
    """
    if table.empty or not set(STAT_COLUMNS) <= set(table.columns):
        return table
    keys = [c for c in table.columns if c not in STAT_COLUMNS]
    cells = table[keys].copy()
    cells["mean ± std (n)"] = [
        format_cell(m, s, int(n))
        for m, s, n in zip(table["mean"], table["std_sample"], table["count"], strict=True)
    ]
    if "method" not in keys or len(keys) < 2:
        return cells
    index = [k for k in keys if k != "method"]
    wide = cells.pivot_table(
        index=index, columns="method", values="mean ± std (n)", aggfunc="first", sort=True
    )
    wide = wide.reset_index()
    wide.columns.name = None
    return wide.fillna("")
