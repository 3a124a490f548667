"""Merging results folders (Ray shards, ``tfxai merge``): rows deduplicated by key, attribution
parts copied under a temporary name and renamed."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tfxai.results.csvio import (
    CsvTable,
    KeyIndex,
    _append_bytes,
    _read_lines,
    _write_error,
)
from tfxai.results.folder import (
    ResultsDir,
)
from tfxai.results.schema import ERRORS_COLUMNS, PREDICTION_KEY, RUNS_FILE, SCORE_KEY

__all__ = ["MERGE_KEYS", "MergeSummary", "ResultsMerger", "merge_results"]

#: columns identifying a row of each table when merging (errors: all but the time stamp)
MERGE_KEYS = {
    "predictions": PREDICTION_KEY,
    "scores": (*SCORE_KEY, "variant"),
    "curves": (*SCORE_KEY, "variant", "x"),
    "errors": tuple(c for c in ERRORS_COLUMNS if c != "time"),
}


@dataclass
class MergeSummary:
    """Rows and attributions added to the destination by :func:`merge_results`."""

    rows: dict[str, int]
    attributions: int
    duplicates: int


class ResultsMerger:
    """Merges results folders into one destination, keeping its keys in memory between merges
    (the Ray driver merges each shard as it completes)."""

    def __init__(self, dest: str | os.PathLike, chunk: int = 5000) -> None:
        self.out = ResultsDir(dest)
        self.chunk = chunk
        self.out.ensure_writable()
        self._seen: dict[str, KeyIndex] = {}
        self._logged: set[str] | None = None

    def merge(self, sources: Sequence[str | os.PathLike]) -> MergeSummary:
        out = self.out
        srcs = [ResultsDir(s) for s in sources]
        for src in srcs:
            if not src.root.is_dir():
                raise ValueError(f"merge: source {str(src.root)!r} is not a results folder")
            if src.root.resolve() == out.root.resolve():
                raise ValueError(f"merge: source {str(src.root)!r} is the destination itself")
        added = 0
        for src in srcs:
            for part in src.store.parts():
                added += out.store.import_part(part)
        rows: dict[str, int] = {}
        dups = 0
        for name, key_cols in MERGE_KEYS.items():
            table: CsvTable = getattr(out, name)
            if name not in self._seen:
                self._seen[name] = table.key_index(key_cols)
            seen = self._seen[name]
            rows[name] = 0
            for src in srcs:
                pending: list[dict[str, str]] = []
                for row in getattr(src, name).iter_rows():
                    key = tuple(row.get(c) or "" for c in key_cols)
                    if key in seen:
                        dups += 1
                        continue
                    seen.add(key)  # on a write error the merge stops: no stale key is reused
                    pending.append(row)
                    if len(pending) >= self.chunk:
                        rows[name] += table.append(pending)
                        pending = []
                rows[name] += table.append(pending)
        if self._logged is None:
            self._logged = set(_read_lines(out.root / RUNS_FILE))
        for src in srcs:
            for line in _read_lines(src.root / RUNS_FILE):
                if line not in self._logged:
                    try:
                        _append_bytes(out.root / RUNS_FILE, (line + "\n").encode("utf-8"))
                    except OSError as exc:
                        raise _write_error(out.root / RUNS_FILE, exc) from exc
                    self._logged.add(line)
        return MergeSummary(rows, added, dups)


def merge_results(
    sources: Sequence[str | os.PathLike], dest: str | os.PathLike, chunk: int = 5000
) -> MergeSummary:
    """Merge results folders into ``dest`` with no duplicate rows or attributions.

    Attribution parts are imported atomically (:meth:`AttributionStore.import_part`) before the
    CSV rows, which are appended with the crash-safe append in chunks of ``chunk`` rows. Rows
    whose key (:data:`MERGE_KEYS`) is already in ``dest`` — or earlier in the sources — are
    skipped, so merging is idempotent: an interrupted merge is finished by running it again.
    ``runs.jsonl`` lines are appended once each.

    Raises:
        ValueError: a source does not exist, or is ``dest`` itself.
        ResultsWriteError: ``dest`` cannot be written.
    """
    for s in sources:  # usage errors before creating the destination
        if not Path(s).is_dir():
            raise ValueError(f"merge: source {str(s)!r} is not a results folder")
    return ResultsMerger(dest, chunk).merge(sources)
