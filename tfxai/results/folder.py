"""A results folder (:class:`ResultsDir`): its CSV tables, attribution store and run log."""

from __future__ import annotations

import errno
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tfxai.results.csvio import (
    CsvTable,
    KeyIndex,
    _append_bytes,
    _cut_torn_tail,
    _write_error,
)
from tfxai.results.schema import (
    ATTRIBUTIONS_DIR,
    CURVES_COLUMNS,
    CURVES_FILE,
    ERRORS_COLUMNS,
    ERRORS_FILE,
    PREDICTION_KEY,
    PREDICTIONS_COLUMNS,
    PREDICTIONS_FILE,
    RUNS_FILE,
    SCORE_KEY,
    SCORES_COLUMNS,
    SCORES_FILE,
)
from tfxai.results.store import (
    AttributionStore,
    StoredItem,
)

__all__ = ["ResultsDir"]

class ResultsDir:
    """The files of one results folder.

    ``resume_from`` lists other results folders that are only read: keys (predictions, scores)
    and attributions present there count as done. A Ray worker writes its shard into its own
    folder and resumes from the destination folder this way.
    """

    def __init__(self, root: str | os.PathLike,
                 resume_from: Sequence[str | os.PathLike] = ()) -> None:
        self.root = Path(root)
        self.resume_from = [ResultsDir(r) for r in resume_from]
        self.predictions = CsvTable(self.root / PREDICTIONS_FILE, PREDICTIONS_COLUMNS)
        self.scores = CsvTable(self.root / SCORES_FILE, SCORES_COLUMNS)
        self.curves = CsvTable(self.root / CURVES_FILE, CURVES_COLUMNS)
        self.errors = CsvTable(self.root / ERRORS_FILE, ERRORS_COLUMNS)
        self.store = AttributionStore(self.root / ATTRIBUTIONS_DIR)

    def check_writable(self) -> None:
        """Check, creating nothing, that the folder exists as a writable folder or can be
        created (its nearest existing parent is a writable folder). :meth:`ensure_writable`
        then creates it; a usage error found in between leaves no trace."""
        probe = self.root
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            raise _write_error(self.root, OSError(errno.ENOTDIR, f"{str(probe)!r} is a file"))
        if not os.access(probe, os.W_OK | os.X_OK):
            raise _write_error(self.root, OSError(errno.EACCES, "permission denied"))

    def ensure_writable(self) -> None:
        """Create the folder and check that it can be written, before any work is done."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{uuid.uuid4().hex[:8]}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise _write_error(self.root, exc) from exc
        for table in (self.predictions, self.scores, self.curves, self.errors):
            table.repair()
        self.store.clean_temporary()

    def log_run(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``runs.jsonl`` (one write + fsync; a torn line is cut)."""
        path = self.root / RUNS_FILE
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        try:
            _cut_torn_tail(path)
            _append_bytes(path, line.encode("utf-8"))
        except OSError as exc:
            raise _write_error(path, exc) from exc

    # ------------------------------------------------------------------ resume (incl. layers)
    def prediction_keys(self) -> KeyIndex:
        """Keys of ``predictions.csv`` here and in the ``resume_from`` folders."""
        keys = self.predictions.key_index(PREDICTION_KEY)
        for other in self.resume_from:
            keys |= other.predictions.key_index(PREDICTION_KEY)
        return keys

    def predictions_of(self, model: str, weights: str) -> dict[str, tuple[int, int] | None]:
        """One model's rows of ``predictions.csv`` here and in ``resume_from``, by image id:
        ``(label, predicted)`` with label -1 when unknown (None for a row that does not parse).

        A resumed run takes the targets of the images it skips without loading from these.
        """
        out: dict[str, tuple[int, int] | None] = {}
        for table in [self.predictions, *(o.predictions for o in self.resume_from)]:
            for row in table.iter_rows():
                if row.get("model") == model and row.get("weights") == weights:
                    out.setdefault(sys.intern(row.get("image_id") or ""), _label_predicted(row))
        return out

    def score_keys(self) -> KeyIndex:
        """``SCORE_KEY + (variant,)`` tuples of ``scores.csv`` here and in ``resume_from``."""
        cols = (*SCORE_KEY, "variant")
        keys = self.scores.key_index(cols)
        for other in self.resume_from:
            keys |= other.scores.key_index(cols)
        return keys

    def orphan_curve_points(self, score_keys: KeyIndex) -> set[tuple[str, ...]]:
        """Curve points whose score row is missing (a kill between the two appends).

        Returns ``SCORE_KEY + (variant, x)`` tuples, so a re-run does not write them twice.
        """
        out: set[tuple[str, ...]] = set()
        for table in [self.curves, *(o.curves for o in self.resume_from)]:
            for row in table.iter_rows():
                key = tuple(row.get(c) or "" for c in (*SCORE_KEY, "variant"))
                if key not in score_keys:
                    out.add((*key, row.get("x") or ""))
        return out

    def find_attribution(self, model: str, weights: str, method: str, method_params: str,
                         image_id: str, target: int | None = None) -> StoredItem | None:
        item = self.store.find(model, weights, method, method_params, image_id, target)
        for other in self.resume_from:
            if item is not None:
                break
            item = other.store.find(model, weights, method, method_params, image_id, target)
        return item

    def record_errors(self, rows: list[dict[str, Any]]) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.errors.append({"time": stamp, **r} for r in rows)

    def iter_scores(self) -> Iterator[dict[str, str]]:
        yield from self.scores.iter_rows()


def _label_predicted(row: dict[str, str]) -> tuple[int, int] | None:
    """``(label, predicted)`` of a prediction row (label -1 when empty); None if unparsable."""
    try:
        label = row.get("label") or ""
        return (int(label) if label != "" else -1), int(row.get("predicted") or "")
    except ValueError:
        return None
