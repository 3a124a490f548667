"""Load one or more results folders into tidy pandas tables.

A results folder is what ``tfxai attribute`` / ``tfxai evaluate`` write (see DESIGN.md, "Results"):

- ``scores.csv``: one row per image × model × method × metric × variant;
- ``predictions.csv``: one row per image × model;
- optionally ``curves.csv`` (points of curve metrics), ``roar.csv`` (method, fraction, seed, accuracy), ``models.csv`` (model, accuracy, ...),
  ``runs.jsonl`` (one JSON line per command run: its parameters and versions), ``study.csv`` and
  ``study.json`` (written by ``tfxai study``: the published cells next to ours, and the protocol) and an
  attribution store (the ``attributions/`` folder of :class:`tfxai.results.AttributionStore`, or a
  single ``*.h5`` file).

A folder needs at least one of ``scores.csv``, ``predictions.csv``, ``roar.csv``, ``models.csv`` and
``study.csv`` (a ``tfxai roar`` or ``tfxai finetune`` output folder is a results folder); otherwise
:class:`ResultsError` names the folder. The ``models.csv`` that ``tfxai finetune`` writes next to its model files is also
read when the results name those files (their ``weights`` column holds the files' paths), so it need
not be copied into the results folder; a ``models.csv`` inside a results folder takes precedence. Several folders are concatenated; a ``run`` column records where each row came from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tfxai.vocabulary import migrate_params_json

SCORES_FILE = "scores.csv"
PREDICTIONS_FILE = "predictions.csv"
ROAR_FILE = "roar.csv"
MODELS_FILE = "models.csv"
CURVES_FILE = "curves.csv"
STUDY_FILE = "study.csv"
STUDY_JSON = "study.json"
STORE_DIR = "attributions"
RUNS_FILE = "runs.jsonl"

#: Columns every analysis needs in ``scores.csv``.
SCORES_REQUIRED = ("model", "method", "metric", "value")
#: Columns every analysis needs in ``predictions.csv``.
PREDICTIONS_REQUIRED = ("image_id", "model")
#: Columns ``curves.csv`` must have.
CURVES_REQUIRED = ("model", "method", "metric", "x", "y")
#: Columns ``roar.csv`` must have.
ROAR_REQUIRED = ("method", "fraction", "seed", "accuracy")
#: Columns ``study.csv`` must have (``tfxai study``).
STUDY_REQUIRED = ("study", "table", "row", "column", "ours", "published", "model")
#: Files that make a folder a results folder.
RESULT_FILES = (SCORES_FILE, PREDICTIONS_FILE, ROAR_FILE, MODELS_FILE, STUDY_FILE)

#: Text columns that must never be read as numbers or NaN.
_TEXT_COLUMNS = {
    "image_id": str,
    "model": str,
    "weights": str,
    "method": str,
    "method_params": str,
    "metric": str,
    "metric_params": str,
    "variant": str,
    "note": str,
    "architecture": str,
    "study": str,
    "table": str,
    "row": str,
    "column": str,
    "published": str,
}


class ResultsError(ValueError):
    """A results folder or file is missing or malformed; the message names the path."""


@dataclass
class Results:
    """The tables read from one or more results folders.

    Attributes:
        scores: the concatenated ``scores.csv`` rows (empty frame when no folder had one).
        predictions: the concatenated ``predictions.csv`` rows (empty frame when none).
        roar: the concatenated ``roar.csv`` rows, or ``None``.
        curves: the concatenated ``curves.csv`` rows (curve metrics), or ``None``.
        models: the concatenated ``models.csv`` rows, or ``None``.
        study: the concatenated ``study.csv`` rows (``tfxai study``), or ``None``.
        studies: the ``study.json`` records (protocol, data chosen, times), one per folder with one.
        dirs: the folders read, in the order given.
        store_paths: attribution stores (``attributions/`` folders, ``*.h5`` files) in those folders.
        runs: the ``runs.jsonl`` records (each with a ``run`` key naming its folder).
    """

    scores: pd.DataFrame
    predictions: pd.DataFrame
    roar: pd.DataFrame | None = None
    curves: pd.DataFrame | None = None
    models: pd.DataFrame | None = None
    study: pd.DataFrame | None = None
    studies: list[dict[str, object]] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)
    store_paths: list[Path] = field(default_factory=list)
    runs: list[dict[str, object]] = field(default_factory=list)


def read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Read one CSV with text columns kept as text; raise :class:`ResultsError` naming ``path``."""
    try:
        header = pd.read_csv(path, nrows=0)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read CSV ({exc})") from exc
    dtypes = {c: t for c, t in _TEXT_COLUMNS.items() if c in header.columns}
    try:
        frame = pd.read_csv(path, dtype=dtypes, keep_default_na=True)
    except (OSError, pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read CSV ({exc})") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path}: missing column(s) {', '.join(missing)}")
    return migrate_params_columns(frame)


def migrate_params_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``method_params``/``metric_params`` in today's names (folders of tfxai 0.x record shap's
    ``nsamples`` etc.: :mod:`tfxai.vocabulary`), so old and new rows of a setting group together.
    Each distinct (owner, parameters) pair is parsed once (``migrate_params_json`` caches)."""
    for column, owner in (("method_params", "method"), ("metric_params", "metric")):
        if column not in frame.columns or owner not in frame.columns:
            continue
        recorded = frame[column].notna()
        owners = frame.loc[recorded, owner].astype(str)
        texts = frame.loc[recorded, column].astype(str)
        migrated = [migrate_params_json(o, t) for o, t in zip(owners, texts, strict=True)]
        if any(m != t for m, t in zip(migrated, texts, strict=True)):
            frame.loc[recorded, column] = migrated
    return frame


def normalise_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``scores`` with the conventions the analysis relies on.

    - ``variant`` is "" for single-variant metrics (pandas reads the empty field as NaN);
    - ``weights``, ``method_params``, ``note`` are "" where empty;
    - ``value``, ``confidence`` and ``seconds`` are floats (unparsable text becomes NaN).
    """
    out = scores.copy()
    for column in ("variant", "weights", "method_params", "note"):
        if column not in out.columns:
            out[column] = ""
        out[column] = out[column].fillna("").astype(str)
    for column in ("value", "confidence", "seconds"):
        if column not in out.columns:
            out[column] = np.nan
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    return out


def normalise_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``predictions`` with ``weights`` as text and ``confidence``/``correct`` as floats."""
    out = predictions.copy()
    if "weights" not in out.columns:
        out["weights"] = ""
    out["weights"] = out["weights"].fillna("").astype(str)
    for column in ("confidence", "correct"):
        if column not in out.columns:
            out[column] = np.nan
        out[column] = _to_float(out[column])
    return out


def _to_float(column: pd.Series) -> pd.Series:
    """Convert numbers or True/False text to floats; anything else becomes NaN."""
    if column.dtype == bool:
        return column.astype(float)
    mapped = column.map(lambda v: {"true": 1.0, "false": 0.0}.get(str(v).strip().lower(), v))
    return pd.to_numeric(mapped, errors="coerce").astype(float)


def load_results(dirs: Sequence[str | Path]) -> Results:
    """Read and concatenate the results folders ``dirs``.

    Raises:
        ResultsError: a folder does not exist, has none of the result files (:data:`RESULT_FILES`),
            or one of its CSVs lacks a required column. The message names the path.
    """
    if not dirs:
        raise ResultsError("no results folder given")
    scores, predictions, roars, models, curves, studies = [], [], [], [], [], []
    study_records: list[dict[str, object]] = []
    paths: list[Path] = []
    stores: list[Path] = []
    runs: list[dict[str, object]] = []
    for raw in dirs:
        folder = Path(raw)
        if not folder.is_dir():
            raise ResultsError(f"{folder}: results folder does not exist")
        found = False
        for name, required, bucket in (
            (SCORES_FILE, SCORES_REQUIRED, scores),
            (PREDICTIONS_FILE, PREDICTIONS_REQUIRED, predictions),
            (ROAR_FILE, ROAR_REQUIRED, roars),
            (MODELS_FILE, ("model",), models),
            (CURVES_FILE, CURVES_REQUIRED, curves),
            (STUDY_FILE, STUDY_REQUIRED, studies),
        ):
            path = folder / name
            if path.is_file():
                frame = read_csv(path, required)
                frame["run"] = str(folder)
                bucket.append(frame)
                found = found or name in RESULT_FILES
        if not found:
            raise ResultsError(
                f"{folder}: not a results folder (none of {', '.join(RESULT_FILES)} found)"
            )
        study_records.extend(read_study_json(folder / STUDY_JSON, str(folder)))
        paths.append(folder)
        runs.extend(read_runs(folder / RUNS_FILE, str(folder)))
        if (folder / STORE_DIR).is_dir():
            stores.append(folder / STORE_DIR)
        stores.extend(sorted(p for p in folder.glob("*.h5") if p.is_file()))
    models = [*_sibling_models_csv([*scores, *predictions], {p.resolve() for p in paths}),
              *models]
    return Results(
        scores=normalise_scores(_concat(scores, SCORES_REQUIRED)),
        predictions=normalise_predictions(_concat(predictions, PREDICTIONS_REQUIRED)),
        roar=_concat(roars, ROAR_REQUIRED) if roars else None,
        models=_concat(models, ("model",)) if models else None,
        curves=_concat(curves, CURVES_REQUIRED) if curves else None,
        study=_concat(studies, STUDY_REQUIRED) if studies else None,
        studies=study_records,
        dirs=paths,
        store_paths=stores,
        runs=runs,
    )


def _sibling_models_csv(frames: Sequence[pd.DataFrame], folders: set[Path]) -> list[pd.DataFrame]:
    """``models.csv`` files beside the model files named in the ``weights`` column of ``frames``.

    ``tfxai finetune`` writes ``models.csv`` (accuracies) next to the ``.keras`` files it trains;
    results of those models record each file's absolute path as ``weights``. Folders already read
    as results folders are skipped; an unreadable ``models.csv`` raises :class:`ResultsError`.
    """
    found: dict[Path, None] = {}
    for frame in frames:
        if "weights" not in frame.columns:
            continue
        for value in frame["weights"].dropna().astype(str).unique():
            if not value or value in ("imagenet", "none", "custom"):
                continue
            weights = Path(value)
            candidate = weights.parent / MODELS_FILE
            if weights.is_absolute() and weights.is_file() and candidate.is_file():
                if candidate.parent.resolve() not in folders:
                    found.setdefault(candidate.resolve())
    out = []
    for path in found:
        frame = read_csv(path, ("model",))
        frame["run"] = str(path.parent)
        out.append(frame)
    return out


def read_study_json(path: Path, run: str) -> list[dict[str, object]]:
    """The ``study.json`` record of a folder (``tfxai study``), tagged with ``run``; [] when absent
    or unreadable."""
    if not path.is_file():
        return []
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return []
    return [{"run": run, **record}] if isinstance(record, dict) else []


def read_runs(path: Path, run: str) -> list[dict[str, object]]:
    """The JSON records of ``runs.jsonl`` (unparsable lines are skipped), each tagged with ``run``."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append({"run": run, **record})
    return records


def _concat(frames: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """Concatenate ``frames``; an empty list gives an empty frame with ``columns``."""
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in (*columns, "run")})
    return pd.concat(frames, ignore_index=True, sort=False)
