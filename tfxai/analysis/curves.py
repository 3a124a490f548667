"""Curve metrics (deletion, insertion, ROAD): mean curve per method from ``curves.csv``.

``curves.csv`` holds the per-image points (x = fraction or percentage removed/inserted, y = probability
or accuracy) behind a curve metric's score. The mean curve of a (model, method, metric, variant) is the
mean of ``y`` over images at each ``x``, with the sample std (ddof=1) and the number of images.
"""

from __future__ import annotations

import pandas as pd

from .summary import STAT_COLUMNS, describe

CURVE_KEYS = ("metric", "variant", "model_id", "method")


def mean_curves(curves: pd.DataFrame | None) -> pd.DataFrame:
    """Mean/std/count of ``y`` per metric × variant × model × method × x, sorted by those keys."""
    columns = [*CURVE_KEYS, "x", *STAT_COLUMNS]
    if curves is None or curves.empty:
        return pd.DataFrame(columns=columns)
    data = curves.copy()
    data["variant"] = data["variant"].fillna("").astype(str) if "variant" in data.columns else ""
    data["x"] = pd.to_numeric(data["x"], errors="coerce")
    rows = []
    for key, frame in data.groupby([*CURVE_KEYS, "x"], sort=True, dropna=False):
        rows.append({**dict(zip([*CURVE_KEYS, "x"], key, strict=True)), **describe(frame["y"])})
    return pd.DataFrame(rows, columns=columns)
