"""Which method is best per metric, said honestly: only on comparable metrics, with ties as ties.

For each group of the summary (metric × variant × the ``--by`` keys other than ``method``):

- a metric that is not comparable across methods (its value depends on the attribution's scale, given
  its recorded ``metric_params``; :func:`tfxai.metadata.comparability`) is **not ranked**: ``best`` is
  empty and ``status`` says why;
- otherwise the best mean (by the metric's direction) wins, and every other method **ties** with it when
  the two means are exactly equal, or one mean lies inside the other's bootstrap interval (summary
  columns ``ci_low``/``ci_high``). Then ``best`` reads ``tie: a, b`` (names sorted); ties are never won
  by the first name;
- fewer than two methods with a defined mean, or a best method without an interval (fewer than two
  images), give no winner either, and ``status`` says so.

The ``ranked`` column lists the methods to highlight (the winner, or every tied method), comma-separated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from tfxai import metadata

from .directions import metric_direction
from .settings import base_name
from .summary import CELL_CI, compact, group_comparability

RANKED, TIE, NOT_COMPARABLE, TOO_FEW = "ranked", "tie", "not comparable", "too few values"
COLUMNS = ("direction", "comparable", "best", "ranked", "status", "reason")


def _inside(value: float, low: float, high: float) -> bool:
    """``low ≤ value ≤ high`` (False when the interval is undefined)."""
    return bool(not (np.isnan(low) or np.isnan(high)) and low <= value <= high)


def tied_with(best: pd.Series, other: pd.Series) -> bool:
    """True when ``other`` ties with ``best``: equal means, or a mean inside the other's interval."""
    if best["mean"] == other["mean"]:
        return True
    return _inside(other["mean"], best["ci_low"], best["ci_high"]) or _inside(
        best["mean"], other["ci_low"], other["ci_high"]
    )


def rank_group(rows: pd.DataFrame, higher_is_better: bool) -> tuple[str, list[str], str]:
    """(best text, methods to highlight, status) for the summary rows of one group (one per method)."""
    defined = rows[rows["mean"].notna()]
    if len(defined) < 2:
        return "", [], TOO_FEW
    order = defined.sort_values(["mean", "method"], ascending=[not higher_is_better, True])
    best = order.iloc[0]
    if np.isnan(best["ci_low"]):  # fewer than two images: no interval, no winner
        return "", [], TOO_FEW
    tied = sorted(str(r["method"]) for _, r in order.iterrows() if tied_with(best, r))
    if len(tied) > 1:
        return "tie: " + ", ".join(tied), tied, TIE
    return str(best["method"]), [str(best["method"])], RANKED


def rank_methods_table(
    summary: pd.DataFrame, scores: pd.DataFrame, by: Sequence[str] = ("model_id", "method")
) -> pd.DataFrame:
    """One row per (metric, variant, keys of ``by`` other than ``method``) of ``summary`` (see module).

    ``summary`` is :func:`tfxai.analysis.summary.summarise` output (with intervals); ``scores`` gives
    the recorded ``metric_params``. Empty when ``by`` has no ``method`` key.
    """
    others = [k for k in by if k not in ("method", "metric", "variant")]
    keys = ["metric", "variant", *others]
    if summary.empty or "method" not in by or "ci_low" not in summary.columns:
        return pd.DataFrame(columns=[*keys, *COLUMNS])
    comparable: dict[tuple[str, str], tuple[bool, str]] = {}
    for (metric, variant), frame in scores.groupby(["metric", "variant"], sort=True):
        comparable[(metric, variant)] = group_comparability(frame, metric, variant)
    out = []
    for group, rows in summary.groupby(keys, sort=True, dropna=False):
        key = dict(zip(keys, group if isinstance(group, tuple) else (group,), strict=True))
        metric, variant = str(key["metric"]), str(key["variant"])
        direction = metric_direction(metric, variant, scores)
        ok, reason = comparable.get((metric, variant), (False, "no rows"))
        if not ok:
            best, ranked, status = "", [], NOT_COMPARABLE
        else:
            best, ranked, status = rank_group(rows, direction.higher_is_better)
            if direction.assumed:
                reason = "direction unknown: higher assumed"
        out.append({
            **key,
            "direction": direction.direction + (" (assumed)" if direction.assumed else ""),
            "comparable": ok,
            "best": best,
            "ranked": ",".join(ranked),
            "status": status,
            "reason": reason,
        })  # fmt: skip
    return pd.DataFrame(out, columns=[*keys, *COLUMNS])


def comparability_line(scores: pd.DataFrame) -> str:
    """One sentence: which metrics compare across methods (and are ranked) and which do not, and why."""
    if scores.empty:
        return ""
    yes, no = [], []
    for (metric, variant), frame in scores.groupby(["metric", "variant"], sort=True):
        name = f"{metric} [{variant}]" if variant else metric
        ok, reason = group_comparability(frame, metric, variant)
        if ok:
            yes.append(name)
        else:
            no.append(f"{name} ({reason})")
    parts = []
    if yes:
        parts.append("Comparable across methods, so ranked: " + ", ".join(_merge_variants(yes)) + ".")
    if no:
        parts.append("Not comparable across methods, so shown but never ranked: " + "; ".join(no) + ".")
    return " ".join(parts)


def _merge_variants(names: list[str]) -> list[str]:
    """``road [lerf]``, ``road [morf]`` → ``road [lerf, morf]`` (order kept)."""
    merged: dict[str, list[str]] = {}
    for name in names:
        base, _, variant = name.partition(" [")
        merged.setdefault(base, [])
        if variant:
            merged[base].append(variant.rstrip("]"))
    return [f"{b} [{', '.join(v)}]" if v else b for b, v in merged.items()]


def range_text(metric: str) -> str:
    """``[0, 1]``-style text of the metric's range ("" when unbounded or unknown)."""
    low, high = metadata.value_range(base_name(metric))
    if np.isinf(low) and np.isinf(high):
        return ""
    fmt = lambda v: "∞" if np.isinf(v) else f"{v:g}"  # noqa: E731
    return f"[{fmt(low)}, {fmt(high)}]"


def ranked_view(
    summary_table: pd.DataFrame, ranking_table: pd.DataFrame
) -> tuple[pd.DataFrame, set[tuple[int, str]]]:
    """The report's summary table: one row per metric × variant × other keys, one ``mean [CI] (n)``
    cell per method, the better direction and the ``best`` column; and the (row, method) cells to
    highlight (the winner or every tied method)."""
    wide = compact(summary_table)
    if wide.empty or "method" in wide.columns or CELL_CI in wide.columns:
        return wide, set()
    keys = [k for k in ("metric", "variant") if k in wide.columns]
    keys += [k for k in ranking_table.columns if k not in (*COLUMNS, "metric", "variant")]
    keys = [k for k in keys if k in wide.columns]
    methods = [c for c in wide.columns if c not in keys]
    index = ranking_table.set_index(keys) if len(ranking_table) else None
    better, best, strong = [], [], set()
    for position, row in enumerate(wide.itertuples(index=False)):
        values = dict(zip(wide.columns, row, strict=True))
        key = tuple(values[k] for k in keys)
        found = None
        if index is not None:
            try:
                found = index.loc[key if len(keys) > 1 else key[0]]
            except KeyError:
                found = None
        if isinstance(found, pd.DataFrame):
            found = found.iloc[0]
        if found is None:
            better.append("")
            best.append("")
            continue
        arrow = {"higher": "↑ higher", "lower": "↓ lower"}.get(str(found["direction"]),
                                                               str(found["direction"]))
        better.append(arrow)
        status = found["status"]
        if status == NOT_COMPARABLE:
            best.append(f"not ranked: not comparable ({found['reason']})")
        elif status == TOO_FEW:
            best.append("not ranked: fewer than two methods or images with values")
        else:
            best.append(str(found["best"]))
            strong.update((position, m) for m in str(found["ranked"]).split(",") if m in methods)
    wide.insert(len(keys), "better", better)
    wide["best"] = best
    return wide, strong
