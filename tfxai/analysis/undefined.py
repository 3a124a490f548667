"""Undefined values, loudly: the share of NaN values per metric (and variant) and why.

A metric writes NaN where it is undefined for an image and says why in the ``note`` column of
``scores.csv`` (``gated out: |ΔP| = 0.123 ≥ 0.05``, ``no boxes``, ``non-finite attribution``...). Notes
that differ only by a measured number are one reason: :func:`reason` drops ``= <number>`` parts and
turns ``head: tail`` into ``head (tail)``, so that note becomes ``gated out (|ΔP| ≥ 0.05)``. Notes on
defined values (e.g. ``K tied maxima``) are not counted here. A NaN without a note is counted as
``no reason recorded``. The dataset facts a run appends to the note as JSON (``; {"data_range": 0.71}``,
SSIM's data range L) are not part of the reason.
"""

from __future__ import annotations

import re

import pandas as pd

from tfxai.metadata import nan_reason

COLUMNS = ["metric", "variant", "rows", "undefined", "share", "reasons"]

#: the JSON of recorded dataset facts that ``tfxai.run`` appends to a note
_RECORDED = re.compile(r";?\s*\{.*\}\s*$")


def reason(note: object) -> str:
    """The reason of a note, without its measured numbers and its recorded facts (one rule for the
    run and the report: :func:`tfxai.metadata.nan_reason`)."""
    if isinstance(note, str):
        note = _RECORDED.sub("", note)
    return nan_reason(note)


def reasons_text(notes: pd.Series) -> str:
    """``20 gated out (|ΔP| ≥ 0.05); 2 no boxes``: counts per reason, most frequent first."""
    counts = notes.map(reason).value_counts()
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return "; ".join(f"{n} {text}" for text, n in ordered)


def undefined_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per metric × variant: rows, undefined (NaN) values, their share and the reasons."""
    if scores.empty or "value" not in scores.columns:
        return pd.DataFrame(columns=COLUMNS)
    notes = scores["note"] if "note" in scores.columns else pd.Series("", index=scores.index)
    data = scores.assign(_note=notes.fillna(""))
    rows = []
    for (metric, variant), frame in data.groupby(["metric", "variant"], sort=True):
        missing = frame[frame["value"].isna()]
        rows.append({
            "metric": metric,
            "variant": variant,
            "rows": len(frame),
            "undefined": len(missing),
            "share": len(missing) / len(frame) if len(frame) else float("nan"),
            "reasons": reasons_text(missing["_note"]) if len(missing) else "",
        })  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def undefined_lines(scores: pd.DataFrame) -> list[str]:
    """One line per metric with undefined values, all variants pooled:
    ``ssim_augmentation: 20 of 27 undefined (74%): 20 gated out (|ΔP| ≥ 0.05)``."""
    if scores.empty or "value" not in scores.columns:
        return []
    notes = scores["note"] if "note" in scores.columns else pd.Series("", index=scores.index)
    data = scores.assign(_note=notes.fillna(""))
    lines = []
    for metric, frame in data.groupby("metric", sort=True):
        missing = frame[frame["value"].isna()]
        if missing.empty:
            continue
        share = len(missing) / len(frame)
        lines.append(
            f"{metric}: {len(missing)} of {len(frame)} values undefined ({share:.0%}): "
            f"{reasons_text(missing['_note'])}"
        )
    return lines
