"""Crash-safe CSV appends (one idiom for every writer) and key indexes for resume.

* a CSV batch is appended with one ``write`` of complete lines followed by ``fsync``; when a file
  is opened again, a torn last line (from a kill during the write) is cut off, so the file only
  ever holds complete rows;
* re-running a command skips the keys already present, so a killed run loses at most the batch in
  flight, and no row is written twice.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfxai.vocabulary import migrate_row

__all__ = ["ResultsWriteError", "CsvTable", "KeyIndex"]

class ResultsWriteError(OSError):
    """The results folder cannot be written (missing permission, full disk). Names the path."""


def _write_error(path: Path, exc: OSError) -> ResultsWriteError:
    if exc.errno == errno.ENOSPC:
        why = "the disk is full"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "permission denied (the folder is not writable)"
    else:
        why = exc.strerror or str(exc)
    return ResultsWriteError(
        exc.errno or 0,
        f"cannot write {str(path)!r}: {why}. Results written before this point are intact; "
        "free space or fix permissions and re-run the same command to resume",
    )


def _cut_torn_tail(path: Path) -> None:
    """Cut a torn last line (no trailing newline) of a line-oriented file, if any."""
    if not path.exists():
        return
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        block = min(size, 1 << 20)
        fh.seek(size - block)
        data = fh.read(block)
        cut = data.rfind(b"\n")
        fh.truncate(size - block + cut + 1 if cut >= 0 else 0)


def _append_bytes(path: Path, payload: bytes) -> None:
    """Append ``payload`` with one ``write`` + ``fsync``; all or nothing on a write error.

    On an error (full disk, short write) the file is truncated back to its size before the
    write, so a failed append leaves no partial batch behind. (A SIGKILL can still cut a large
    write at a page boundary; readers cut the torn last line and the pipeline completes partial
    keys on resume.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        before = os.fstat(fd).st_size
        try:
            written = os.write(fd, payload)
            if written != len(payload):  # short write: disk full
                raise OSError(errno.ENOSPC, "short write (disk full?)")
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, before)
            raise
    finally:
        os.close(fd)


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return "nan" if np.isnan(v) else repr(v)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str):
        return value.replace("\n", " ").replace("\r", " ")
    return value


class CsvTable:
    """An append-only CSV file with a fixed header, torn-line repair and resume keys."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self._repaired = False

    def repair(self) -> None:
        """Cut a torn last line (no trailing newline) left by a killed writer."""
        self._repaired = True
        _cut_torn_tail(self.path)

    def _header_line(self) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(self.columns)
        return buf.getvalue()

    def append(self, rows: Iterable[dict[str, Any]]) -> int:
        """Append rows with one write + fsync. Returns the number of rows written."""
        rows = list(rows)
        if not rows:
            return 0
        if not self._repaired:
            self.repair()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n",
                                extrasaction="ignore")
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in self.columns})
        data = buf.getvalue()
        new = not self.path.exists() or self.path.stat().st_size == 0
        if new:
            data = self._header_line() + data
        try:
            _append_bytes(self.path, data.encode("utf-8"))
        except OSError as exc:
            self.repair()
            raise _write_error(self.path, exc) from exc
        return len(rows)

    def iter_rows(self) -> Iterator[dict[str, str]]:
        """Stream the complete rows as dicts of strings (a torn last line is ignored).

        Rows are single physical lines (values are written without line breaks), so the file is
        read line by line and never held in memory. Recorded ``method_params``/``metric_params``
        of tfxai 0.x are returned in today's names (:func:`tfxai.vocabulary.migrate_row`), so
        resume keys and merges match new rows.
        """
        if not self.path.exists():
            return
        with self.path.open(newline="", encoding="utf-8") as fh:
            rows = csv.DictReader(line for line in fh if line.endswith("\n"))
            if not {"method_params", "metric_params"} & set(rows.fieldnames or ()):
                yield from rows
                return
            for row in rows:
                yield migrate_row(row)

    def read(self) -> list[dict[str, str]]:
        """All complete rows as dicts of strings (a torn last line is ignored)."""
        return list(self.iter_rows())

    def keys(self, key_columns: Sequence[str]) -> set[tuple[str, ...]]:
        """The set of key tuples present (strings interned: repeated values are shared)."""
        intern = sys.intern
        return {tuple(intern(row.get(c) or "") for c in key_columns) for row in self.iter_rows()}

    def key_index(self, key_columns: Sequence[str]) -> KeyIndex:
        """The keys present as a compact :class:`KeyIndex` (first column: the image id)."""
        index = KeyIndex()
        for row in self.iter_rows():
            index.add(tuple(row.get(c) or "" for c in key_columns))
        return index


class KeyIndex:
    """A set of key tuples ``(image_id, *rest)`` stored as ``{rest: {image ids}}``.

    The resume keys of a long run hold one entry per result row; grouping by the columns shared
    by many rows (model, method, parameters, metric, variant) and interning the image ids keeps
    an entry to a set slot (~100 bytes per key measured, against ~140 for a set of tuples).
    """

    def __init__(self, keys: Iterable[tuple[str, ...]] = ()) -> None:
        self._groups: dict[tuple[str, ...], set[str]] = {}
        self._n = 0
        self.update(keys)

    def add(self, key: tuple[str, ...]) -> None:
        rest = tuple(sys.intern(str(v)) for v in key[1:])
        group = self._groups.get(rest)
        if group is None:
            group = self._groups[rest] = set()
        before = len(group)
        group.add(sys.intern(str(key[0])))
        self._n += len(group) - before

    def update(self, keys: Iterable[tuple[str, ...]]) -> None:
        for key in keys:
            self.add(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or not key:
            return False
        group = self._groups.get(key[1:])
        return group is not None and key[0] in group

    def __ior__(self, other: KeyIndex) -> KeyIndex:
        for rest, ids in other._groups.items():
            for image_id in ids:
                self.add((image_id, *rest))
        return self

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        for rest, ids in self._groups.items():
            for image_id in ids:
                yield (image_id, *rest)


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [ln for ln in text[: text.rfind("\n") + 1].splitlines() if ln.strip()]
