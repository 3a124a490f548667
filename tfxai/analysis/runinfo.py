"""What each results folder contains: models, methods with their parameters, metrics, seeds, image counts.

This is the "run parameters" part of the report, read back from the CSVs themselves.
"""

from __future__ import annotations

import json

import pandas as pd


def _join(values: pd.Series) -> str:
    """Sorted distinct non-empty values as one comma-separated string."""
    return ", ".join(sorted({str(v) for v in values.dropna() if str(v) != ""}))


def runs_table(scores: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per results folder: models, weights, methods, metrics, seeds and counts."""
    runs = sorted(
        set(scores.get("run", pd.Series(dtype=str)).dropna())
        | set(predictions.get("run", pd.Series(dtype=str)).dropna())
    )
    rows = []
    for run in runs:
        s = scores[scores["run"] == run] if "run" in scores.columns else scores.iloc[0:0]
        p = (
            predictions[predictions["run"] == run]
            if "run" in predictions.columns
            else predictions.iloc[0:0]
        )
        rows.append(
            {
                "run": run,
                "models": _join(
                    pd.concat(
                        [s.get("model", pd.Series(dtype=str)), p.get("model", pd.Series(dtype=str))]
                    )
                ),
                "weights": _join(
                    pd.concat(
                        [
                            s.get("weights", pd.Series(dtype=str)),
                            p.get("weights", pd.Series(dtype=str)),
                        ]
                    )
                ),
                "methods": _join(s.get("method", pd.Series(dtype=str))),
                "metrics": _join(s.get("metric", pd.Series(dtype=str))),
                "seeds": _join(s.get("seed", pd.Series(dtype=str))),
                "images": int(
                    pd.concat(
                        [
                            s.get("image_id", pd.Series(dtype=str)),
                            p.get("image_id", pd.Series(dtype=str)),
                        ]
                    ).nunique()
                ),
                "score_rows": len(s),
                "undefined_values": int(s["value"].isna().sum()) if "value" in s.columns else 0,
            }
        )
    return pd.DataFrame(rows)


def parameters_table(scores: pd.DataFrame, kind: str = "method") -> pd.DataFrame:
    """Distinct ``<kind>_params`` per ``<kind>`` (kind is ``method`` or ``metric``)."""
    column = f"{kind}_params"
    if scores.empty or column not in scores.columns:
        return pd.DataFrame(columns=[kind, column])
    table = scores[[kind, column]].fillna("").astype(str).drop_duplicates()
    return table.sort_values([kind, column]).reset_index(drop=True)


def notes_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Why values are undefined: count of NaN values per (metric, method, note)."""
    if scores.empty or "note" not in scores.columns:
        return pd.DataFrame(columns=["metric", "method", "note", "rows"])
    undefined = scores[scores["value"].isna()]
    if undefined.empty:
        return pd.DataFrame(columns=["metric", "method", "note", "rows"])
    grouped = undefined.groupby(["metric", "method", "note"], sort=True, dropna=False).size()
    return grouped.rename("rows").reset_index()


def commands_table(records: list[dict[str, object]]) -> pd.DataFrame:
    """The ``runs.jsonl`` records as a table; nested values are shown as sorted JSON."""
    if not records:
        return pd.DataFrame(columns=["run"])
    rows = [
        {k: v if isinstance(v, str | int | float | bool) or v is None else json.dumps(v, sort_keys=True, default=str)
         for k, v in record.items()}
        for record in records
    ]  # fmt: skip
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return pd.DataFrame(rows, columns=columns)


#: the note of an input-independent method starts with this (the report shows it in red)
INDEPENDENCE_PREFIX = "Input-independent attribution:"


def independence_notes(records: list[dict[str, object]]) -> list[str]:
    """One note per (model, method) that a run found input-independent: ``runs.jsonl`` records
    ``{"command": "warning", "warning": "input_independent", ...}`` (:mod:`tfxai.run`)."""
    seen: dict[tuple[str, str], str] = {}
    for record in records:
        if record.get("command") != "warning" or record.get("warning") != "input_independent":
            continue
        key = (str(record.get("model", "")), str(record.get("method", "")))
        seen.setdefault(key, str(record.get("message", "")))
    return [f"{INDEPENDENCE_PREFIX} {message}" for _, message in sorted(seen.items())]
