"""Parameter sets are never pooled: a method or metric computed with several parameter sets gets one
label per set, and every table groups by the label.

A results folder may hold a parameter sweep: ``infidelity`` with ``normalize=true`` and
``normalize=false``, or ``integrated_gradients`` with ``steps=16`` and ``steps=64``. Pooled into one
mean they give a number that belongs to neither setting. So, before any table is made:

- a **metric** with several ``metric_params`` sets is renamed, per row, ``infidelity
  (normalize=false)``: the name followed by the parameters whose values differ between its sets
  (``key=value``, sorted by key; a key missing from a set reads ``key=–``);
- a **method** with several ``method_params`` sets likewise: ``integrated_gradients (steps=16)``.

A method or metric with one parameter set keeps its plain name. The ``seed`` (the run's seed,
handed to stochastic methods and metrics) does not make a setting: runs with different seeds are
replicates and are pooled, as before.

Metric facts (direction, range, comparability) are looked up by the plain name: :func:`base_name`
strips the setting (metric names never contain `` (``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pandas as pd

from tfxai import metadata

__all__ = ["IGNORED", "base_name", "label_settings", "setting_labels"]

#: parameters that do not make a setting (replicates), see the module docstring
IGNORED = ("seed",)
_SEP = " ("
_MISSING = "–"


def base_name(label: object) -> str:
    """``infidelity (normalize=false)`` → ``infidelity``; a plain name is returned as is."""
    return str(label).split(_SEP, 1)[0]


def _parsed(text: object) -> dict[str, object]:
    found = metadata.parse_params(text)
    return {k: v for k, v in (found or {}).items() if k not in IGNORED}


def _value_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def setting_labels(frame: pd.DataFrame, name_column: str, params_column: str
                   ) -> dict[tuple[str, str], str]:
    """(name, params text) → label for every pair in ``frame`` (see the module docstring)."""
    if frame is None or frame.empty or name_column not in frame.columns:
        return {}
    params = (frame[params_column] if params_column in frame.columns
              else pd.Series("", index=frame.index)).fillna("").astype(str)
    pairs = sorted(set(zip(frame[name_column].astype(str), params, strict=True)))
    by_name: dict[str, list[str]] = {}
    for name, text in pairs:
        by_name.setdefault(name, []).append(text)
    out: dict[tuple[str, str], str] = {}
    for name, texts in by_name.items():
        sets = {text: _parsed(text) for text in texts}
        distinct = {json.dumps(v, sort_keys=True, default=str) for v in sets.values()}
        if len(distinct) < 2:
            out.update({(name, text): name for text in texts})
            continue
        keys = sorted({k for v in sets.values() for k in v})
        differing = [k for k in keys
                     if len({json.dumps(v.get(k, _MISSING), sort_keys=True, default=str)
                             for v in sets.values()}) > 1]
        for text, values in sets.items():
            shown = ", ".join(f"{k}={_value_text(values[k]) if k in values else _MISSING}"
                              for k in differing)
            out[(name, text)] = f"{name}{_SEP}{shown})"
    return out


def _relabel(frame: pd.DataFrame | None, name_column: str, params_column: str,
             labels: Mapping[tuple[str, str], str]) -> pd.DataFrame | None:
    if frame is None or frame.empty or name_column not in frame.columns or not labels:
        return frame
    out = frame.copy()
    params = (out[params_column] if params_column in out.columns
              else pd.Series("", index=out.index)).fillna("").astype(str)
    names = out[name_column].astype(str)
    out[name_column] = [labels.get((n, p), n) for n, p in zip(names, params, strict=True)]
    return out


def label_settings(scores: pd.DataFrame, *others: pd.DataFrame | None
                   ) -> tuple[pd.DataFrame, list[pd.DataFrame | None], list[str]]:
    """``scores`` and the ``others`` (e.g. ``curves.csv``, which has the same key columns) with
    method and metric names labelled by setting, and one note per split name.

    The labels are computed over all frames together, so a curve and its score row agree.
    """
    frames = [f for f in (scores, *others) if f is not None and not f.empty]
    both = pd.concat(frames, ignore_index=True, sort=False) if frames else scores
    metric_labels = setting_labels(both, "metric", "metric_params")
    method_labels = setting_labels(both, "method", "method_params")
    notes = []
    for kind, labels in (("metric", metric_labels), ("method", method_labels)):
        split: dict[str, list[str]] = {}
        for (name, _), label in sorted(labels.items()):
            if label != name:
                split.setdefault(name, [])
                if label not in split[name]:
                    split[name].append(label)
        for name, shown in split.items():
            notes.append(
                f"{kind} {name} was computed with {len(shown)} parameter sets; they are never "
                f"pooled: shown as {', '.join(shown)}."
            )

    def apply(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        frame = _relabel(frame, "metric", "metric_params", metric_labels)
        return _relabel(frame, "method", "method_params", method_labels)

    return apply(scores), [apply(f) for f in others], notes
