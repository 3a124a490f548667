"""Model identities, model accuracies and architectures for the analysis.

A *model* in the analysis is one (``model``, ``weights``) pair of the results schema: the fine-tuned
members of one family share a backbone name but differ in weights. Its label (``model_id``) is the
``model`` name, or ``model[weights-stem]`` when one model name appears with several weights.

Model accuracy, in order of precedence:

1. given explicitly (``--accuracy model=0.83,...``), keyed by ``model_id`` or by ``model``;
2. an ``accuracy`` column in ``models.csv`` (from ``tfxai finetune``), keyed by ``model_id`` or ``model``;
3. the mean of ``correct`` in ``predictions.csv`` over the images with a known label.

Architecture, in order of precedence: given explicitly (``--architecture model=arch``), an
``architecture`` (or ``backbone``) column in ``models.csv``/``predictions.csv``/``scores.csv``; otherwise all
models form one group named ``all`` (the reliability test's usual input is one family of one architecture).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePath

import numpy as np
import pandas as pd

ARCHITECTURE_COLUMNS = ("architecture", "backbone", "base_model")
DEFAULT_ARCHITECTURE = "all"


def natural_key(text: str) -> list[object]:
    """Sort key that orders embedded numbers numerically: f20 < f60 < f100."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


def _weights_stem(weights: str) -> str:
    """A short readable name for a weights value: the file stem of a path, else the value itself."""
    if "/" in weights or "\\" in weights or weights.endswith((".h5", ".keras", ".weights.h5")):
        name = PurePath(weights.replace("\\", "/")).name
        for suffix in (".weights.h5", ".keras", ".h5"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name
    return weights


def model_id_map(*frames: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Map each (model, weights) pair in ``frames`` to a unique, readable ``model_id``."""
    pairs: set[tuple[str, str]] = set()
    for frame in frames:
        if frame is None or frame.empty or "model" not in frame.columns:
            continue
        weights = (
            frame["weights"] if "weights" in frame.columns else pd.Series("", index=frame.index)
        )
        pairs.update(zip(frame["model"].astype(str), weights.fillna("").astype(str), strict=True))
    by_model: dict[str, list[str]] = {}
    for model, weights in sorted(pairs):
        by_model.setdefault(model, []).append(weights)
    ids: dict[tuple[str, str], str] = {}
    for model, weights_list in by_model.items():
        if len(weights_list) == 1:
            ids[(model, weights_list[0])] = model
            continue
        stems = [_weights_stem(w) for w in weights_list]
        labels = stems if len(set(stems)) == len(stems) else weights_list
        for weights, label in zip(weights_list, labels, strict=True):
            ids[(model, weights)] = f"{model}[{label}]"
    return ids


def add_model_id(frame: pd.DataFrame, ids: Mapping[tuple[str, str], str]) -> pd.DataFrame:
    """Return ``frame`` with a ``model_id`` column from ``ids`` (see :func:`model_id_map`)."""
    out = frame.copy()
    if out.empty:
        out["model_id"] = pd.Series(dtype=object)
        return out
    weights = out["weights"] if "weights" in out.columns else pd.Series("", index=out.index)
    keys = zip(out["model"].astype(str), weights.fillna("").astype(str), strict=True)
    out["model_id"] = [ids.get(k, k[0]) for k in keys]
    return out


def parse_assignments(text: str | None, what: str, as_float: bool = False) -> dict[str, object]:
    """Parse ``a=1,b=2`` into a dict; ``what`` names the option in the :class:`ValueError` message."""
    result: dict[str, object] = {}
    if not text:
        return result
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{what}: expected NAME=VALUE, got {item!r}")
        if as_float:
            try:
                result[key.strip()] = float(value)
            except ValueError as exc:
                raise ValueError(f"{what}: {value!r} is not a number (in {item!r})") from exc
        else:
            result[key.strip()] = value.strip()
    return result


def _lookup(mapping: Mapping[str, object], model_id: str, model: str) -> object | None:
    """Value for ``model_id``, else for the plain ``model`` name, else ``None``."""
    if model_id in mapping:
        return mapping[model_id]
    return mapping.get(model)


def model_table(
    ids: Mapping[tuple[str, str], str],
    predictions: pd.DataFrame,
    models_csv: pd.DataFrame | None = None,
    accuracy: Mapping[str, float] | None = None,
    architecture: Mapping[str, str] | None = None,
    extra_frames: tuple[pd.DataFrame, ...] = (),
) -> pd.DataFrame:
    """One row per model: ``model_id, model, weights, architecture, accuracy, accuracy_source, n_images``."""
    accuracy = dict(accuracy or {})
    architecture = dict(architecture or {})
    csv_accuracy: dict[str, float] = {}
    csv_arch: dict[str, str] = {}
    if models_csv is not None and not models_csv.empty:
        arch_col = next((c for c in ARCHITECTURE_COLUMNS if c in models_csv.columns), None)
        for _, row in models_csv.iterrows():
            name = str(row["model"])
            if "accuracy" in models_csv.columns and pd.notna(row["accuracy"]):
                csv_accuracy[name] = float(row["accuracy"])
                csv_accuracy.setdefault(_weights_stem(name), float(row["accuracy"]))
            if arch_col and pd.notna(row[arch_col]):
                csv_arch[name] = str(row[arch_col])
                csv_arch.setdefault(_weights_stem(name), str(row[arch_col]))
    frame_arch = _architectures_from_frames((predictions, *extra_frames))
    rows = []
    for (model, weights), model_id in sorted(ids.items(), key=lambda kv: natural_key(kv[1])):
        acc, source = _accuracy_for(model, weights, model_id, predictions, accuracy, csv_accuracy)
        arch = (
            _lookup(architecture, model_id, model)
            or _lookup(csv_arch, model_id, model)
            or csv_arch.get(_weights_stem(weights))
            or frame_arch.get((model, weights))
            or DEFAULT_ARCHITECTURE
        )
        n_images = _n_images(predictions, model, weights)
        rows.append(
            {
                "model_id": model_id,
                "model": model,
                "weights": weights,
                "architecture": str(arch),
                "accuracy": acc,
                "accuracy_source": source,
                "n_images": n_images,
            }
        )
    columns = [
        "model_id",
        "model",
        "weights",
        "architecture",
        "accuracy",
        "accuracy_source",
        "n_images",
    ]
    return pd.DataFrame(rows, columns=columns)


def _accuracy_for(
    model: str,
    weights: str,
    model_id: str,
    predictions: pd.DataFrame,
    given: Mapping[str, float],
    csv_accuracy: Mapping[str, float],
) -> tuple[float, str]:
    """Accuracy of one model and its source, following the module's precedence."""
    value = _lookup(given, model_id, model)
    if value is not None:
        return float(value), "option"
    value = _lookup(csv_accuracy, model_id, model)
    if value is None and weights:
        value = csv_accuracy.get(_weights_stem(weights))
    if value is not None:
        return float(value), "models.csv"
    if predictions is not None and not predictions.empty and "correct" in predictions.columns:
        rows = predictions[(predictions["model"] == model) & (predictions["weights"] == weights)]
        correct = rows["correct"].dropna()
        if len(correct):
            return float(correct.mean()), "predictions.csv"
    return float("nan"), "unknown"


def _n_images(predictions: pd.DataFrame, model: str, weights: str) -> int:
    """Number of distinct images predicted by (model, weights)."""
    if predictions is None or predictions.empty:
        return 0
    rows = predictions[(predictions["model"] == model) & (predictions["weights"] == weights)]
    return int(rows["image_id"].nunique())


def _architectures_from_frames(frames: tuple[pd.DataFrame, ...]) -> dict[tuple[str, str], str]:
    """(model, weights) → architecture from an architecture-like column of any frame."""
    found: dict[tuple[str, str], str] = {}
    for frame in frames:
        if frame is None or frame.empty:
            continue
        column = next((c for c in ARCHITECTURE_COLUMNS if c in frame.columns), None)
        if column is None:
            continue
        weights = (
            frame["weights"] if "weights" in frame.columns else pd.Series("", index=frame.index)
        )
        for model, w, arch in zip(frame["model"], weights.fillna(""), frame[column], strict=True):
            if isinstance(arch, str) and arch:
                found.setdefault((str(model), str(w)), arch)
    return found


def accuracy_by_model(models: pd.DataFrame) -> dict[str, float]:
    """``model_id`` → accuracy (NaN when unknown) from a :func:`model_table` frame."""
    return {
        str(k): float(v) if pd.notna(v) else np.nan
        for k, v in zip(models["model_id"], models["accuracy"], strict=True)
    }
