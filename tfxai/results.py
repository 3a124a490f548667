"""Results: the schema of the CSV files, crash-safe appends, resume keys and the attribution store.

Layout of a results folder::

    predictions.csv   image_id, model, weights, label, predicted, confidence, correct
    scores.csv        one row per image × model × method × metric × variant (SCORES_COLUMNS)
    curves.csv        curve points of curve metrics (deletion, insertion, road)
    errors.csv        per-image failures; the run goes on
    attributions/     raw attributions, one HDF5 file per written batch (see AttributionStore)
    runs.jsonl        one line per command run: its parameters and library versions

Crash safety:

* a CSV batch is appended with one ``write`` of complete lines followed by ``fsync``; when a file is
  opened again, a torn last line (from a kill during the write) is cut off, so the file only ever
  holds complete rows;
* an attribution batch goes to a temporary file that is renamed into place (``os.replace``), so a
  part file is either complete or absent;
* re-running a command skips the keys already present, so a killed run loses at most the batch in
  flight, and no row is written twice.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PREDICTIONS_COLUMNS",
    "SCORES_COLUMNS",
    "ERRORS_COLUMNS",
    "CURVES_COLUMNS",
    "ResultsWriteError",
    "CsvTable",
    "AttributionStore",
    "ResultsDir",
    "params_hash",
    "merge_results",
    "MergeSummary",
    "ResultsMerger",
    "KeyIndex",
]

PREDICTIONS_COLUMNS = ["image_id", "model", "weights", "label", "predicted", "confidence", "correct"]
SCORES_COLUMNS = [
    "image_id", "model", "weights", "method", "method_params", "metric", "metric_params",
    "variant", "value", "target", "label", "predicted", "confidence", "seconds", "seed", "note",
    "metric_seconds", "extra",
]
CURVES_COLUMNS = [
    "image_id", "model", "weights", "method", "method_params", "metric", "metric_params",
    "variant", "x", "y",
]
ERRORS_COLUMNS = ["time", "image_id", "path", "stage", "model", "method", "metric", "error"]

PREDICTION_KEY = ("image_id", "model", "weights")
SCORE_KEY = ("image_id", "model", "weights", "method", "method_params", "metric", "metric_params")


class ResultsWriteError(OSError):
    """The results folder cannot be written (missing permission, full disk). Names the path."""


def params_hash(params_json: str) -> str:
    """Short stable hash of a canonical parameter JSON string."""
    return hashlib.sha1(params_json.encode("utf-8")).hexdigest()[:12]


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
        read line by line and never held in memory.
        """
        if not self.path.exists():
            return
        with self.path.open(newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(line for line in fh if line.endswith("\n"))

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


# --------------------------------------------------------------------------------------- store


def _slug(text: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return safe if safe == text and len(text) <= 60 else f"{safe[:40]}-{params_hash(text)[:8]}"


def _weights_slug(weights: str) -> str:
    return weights if weights in ("imagenet", "none", "custom") else f"file-{params_hash(weights)}"


def _enc_id(image_id: str) -> str:
    return image_id.replace("%", "%25").replace("/", "%2F")


def _dec_id(name: str) -> str:
    return name.replace("%2F", "/").replace("%25", "%")


_HOST = socket.gethostname().replace(".", "_")


def _tmp_name(dest: Path) -> Path:
    """Temporary name of a part being written: names the writer (host, pid) for clean-up."""
    return dest.with_name(f"{dest.name}.{_HOST}.{os.getpid()}.tmp")


def _stale(tmp: Path, max_age: float = 3600.0) -> bool:
    """A temporary part whose writer is gone: a dead process of this host, or an old file."""
    parts = tmp.name.rsplit(".", 3)  # <part>.h5 . host . pid . tmp
    try:
        host, pid = parts[-3], int(parts[-2])
    except (IndexError, ValueError):
        host, pid = "", -1
    if host == _HOST and pid > 0:
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    try:
        return time.time() - tmp.stat().st_mtime > max_age
    except OSError:
        return False


def _publish(dest: Path, write: Callable[[Path], None]) -> None:
    """Write a part file atomically: ``write`` fills a temporary name, which is fsynced and
    renamed to ``dest``. On an ``OSError`` the temporary file is removed and a
    :class:`ResultsWriteError` naming ``dest`` is raised."""
    tmp = _tmp_name(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _write_error(dest, exc) from exc


@dataclass(frozen=True)
class StoredItem:
    """One stored attribution (loaded lazily with :meth:`AttributionStore.load`)."""

    model: str
    weights: str
    method: str
    method_params: str
    image_id: str
    target: int
    file: Path
    seconds: float = float("nan")


class AttributionStore:
    """Raw attributions in HDF5, keyed by model, weights, method, method_params and image id.

    Each written batch is one file ``<root>/<model>/<weights>/<method>/<params-hash>/part-*.h5``
    holding one dataset per image (named by the image id, ``/`` escaped) with the target class as
    an attribute; the file's attributes record model, weights, method, method_params and the run's
    parameters. Files are written to a temporary name and renamed, so a part is never torn.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._index: dict[tuple[str, str, str, str, str], StoredItem] | None = None

    # ------------------------------------------------------------------ writing
    def _dir(self, model: str, weights: str, method: str, method_params: str) -> Path:
        return (self.root / _slug(model) / _weights_slug(weights) / _slug(method)
                / params_hash(method_params))

    def put(
        self,
        model: str,
        weights: str,
        method: str,
        method_params: str,
        image_ids: Sequence[str],
        attributions: np.ndarray,
        targets: Sequence[int],
        seconds: Sequence[float] | None = None,
        run_params: dict[str, Any] | None = None,
    ) -> Path:
        """Write one batch atomically; returns the part file."""
        import h5py

        path = (self._dir(model, weights, method, method_params)
                / f"part-{int(time.time())}-{uuid.uuid4().hex[:10]}.h5")
        secs = [float("nan")] * len(image_ids) if seconds is None else list(seconds)

        def write(tmp: Path) -> None:
            with h5py.File(tmp, "w") as f:
                f.attrs.update({
                    "model": model, "weights": weights, "method": method,
                    "method_params": method_params, "format": "tfxai-attributions-1",
                    "run_params": json.dumps(run_params or {}, sort_keys=True, default=str),
                })
                for image_id, arr, t, sec in zip(image_ids, attributions, targets, secs,
                                                 strict=True):
                    ds = f.create_dataset(_enc_id(image_id), data=np.asarray(arr, np.float32),
                                          compression="lzf")
                    ds.attrs["target"] = int(t)
                    ds.attrs["seconds"] = float(sec)

        _publish(path, write)
        self._remember(StoredItem(model, weights, method, method_params, image_id, int(t), path,
                                  float(sec))
                       for image_id, t, sec in zip(image_ids, targets, secs, strict=True))
        return path

    def _remember(self, items: Iterable[StoredItem]) -> None:
        """Add items just written to the in-memory index (when it has been built)."""
        if self._index is not None:
            for item in items:
                self._index[self._key(item)] = item

    # ------------------------------------------------------------------ reading
    @staticmethod
    def _key(item: StoredItem) -> tuple[str, str, str, str, str]:
        return (item.model, item.weights, item.method, item.method_params, item.image_id)

    def _scan(self) -> dict[tuple[str, str, str, str, str], StoredItem]:
        import h5py

        index: dict[tuple[str, str, str, str, str], StoredItem] = {}
        if not self.root.exists():
            return index
        for part in sorted(self.root.rglob("part-*.h5")):
            try:
                with h5py.File(part, "r") as f:
                    a = dict(f.attrs)
                    for name, ds in f.items():
                        item = StoredItem(str(a["model"]), str(a["weights"]), str(a["method"]),
                                          str(a["method_params"]), _dec_id(name),
                                          int(ds.attrs.get("target", -1)), part,
                                          float(ds.attrs.get("seconds", np.nan)))
                        index[self._key(item)] = item
            except (OSError, KeyError):
                continue  # unreadable part: recomputed on demand
        return index

    def index(self) -> dict[tuple[str, str, str, str, str], StoredItem]:
        if self._index is None:
            self._index = self._scan()
        return self._index

    def items(self) -> list[StoredItem]:
        return list(self.index().values())

    iter_items = items

    def find(
        self, model: str, weights: str, method: str, method_params: str, image_id: str,
        target: int | None = None,
    ) -> StoredItem | None:
        item = self.index().get((model, weights, method, method_params, image_id))
        if item is None or (target is not None and item.target != int(target)):
            return None
        return item

    def import_part(self, part: str | os.PathLike) -> int:
        """Copy a part file of another store into this one atomically; returns items added.

        Items already stored here (same model, weights, method, parameters, image and target)
        are skipped: a part whose items are all new is copied as is (temporary name, ``fsync``,
        rename), otherwise a new part holding only the new items is written the same way.
        """
        import h5py

        part = Path(part)
        with h5py.File(part, "r") as f:
            a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            key = (str(a["model"]), str(a["weights"]), str(a["method"]), str(a["method_params"]))
            names = [n for n, ds in f.items()
                     if self.find(*key, _dec_id(n), int(ds.attrs.get("target", -1))) is None]
            if not names:
                return 0
            folder = self._dir(*key)
            dest = folder / part.name
            if dest.exists():  # same name from another source: a fresh name keeps both parts
                dest = folder / f"part-{int(time.time())}-{uuid.uuid4().hex[:10]}.h5"

            def write(tmp: Path) -> None:
                if len(names) == len(f):
                    shutil.copyfile(part, tmp)
                    return
                with h5py.File(tmp, "w") as g:
                    g.attrs.update(dict(f.attrs))
                    for n in names:
                        f.copy(f[n], g, name=n)

            _publish(dest, write)
            self._remember(StoredItem(*key, _dec_id(n), int(f[n].attrs.get("target", -1)), dest,
                                      float(f[n].attrs.get("seconds", np.nan)))
                           for n in names)
        return len(names)

    def clean_temporary(self) -> int:
        """Delete temporary parts left by killed writers; returns how many."""
        if not self.root.exists():
            return 0
        n = 0
        for tmp in self.root.rglob("part-*.tmp"):
            if _stale(tmp):
                with contextlib.suppress(OSError):
                    tmp.unlink()
                    n += 1
        return n

    def parts(self) -> list[Path]:
        """The complete part files of this store, sorted."""
        return sorted(self.root.rglob("part-*.h5")) if self.root.exists() else []

    def load(self, item: StoredItem) -> np.ndarray:
        import h5py

        with h5py.File(item.file, "r") as f:
            return np.asarray(f[_enc_id(item.image_id)], dtype=np.float32)

    def load_many(self, items: Sequence[StoredItem]) -> np.ndarray:
        import h5py

        by_file: dict[Path, list[int]] = {}
        for i, it in enumerate(items):
            by_file.setdefault(it.file, []).append(i)
        out: list[np.ndarray | None] = [None] * len(items)
        for path, idx in by_file.items():
            with h5py.File(path, "r") as f:
                for i in idx:
                    out[i] = np.asarray(f[_enc_id(items[i].image_id)], dtype=np.float32)
        return np.stack(out) if out else np.zeros((0,), np.float32)


# --------------------------------------------------------------------------------------- folder


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
        self.predictions = CsvTable(self.root / "predictions.csv", PREDICTIONS_COLUMNS)
        self.scores = CsvTable(self.root / "scores.csv", SCORES_COLUMNS)
        self.curves = CsvTable(self.root / "curves.csv", CURVES_COLUMNS)
        self.errors = CsvTable(self.root / "errors.csv", ERRORS_COLUMNS)
        self.store = AttributionStore(self.root / "attributions")

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
        path = self.root / "runs.jsonl"
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


# --------------------------------------------------------------------------------------- merge

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
            self._logged = set(_read_lines(out.root / "runs.jsonl"))
        for src in srcs:
            for line in _read_lines(src.root / "runs.jsonl"):
                if line not in self._logged:
                    try:
                        _append_bytes(out.root / "runs.jsonl", (line + "\n").encode("utf-8"))
                    except OSError as exc:
                        raise _write_error(out.root / "runs.jsonl", exc) from exc
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


def _label_predicted(row: dict[str, str]) -> tuple[int, int] | None:
    """``(label, predicted)`` of a prediction row (label -1 when empty); None if unparsable."""
    try:
        label = row.get("label") or ""
        return (int(label) if label != "" else -1), int(row.get("predicted") or "")
    except ValueError:
        return None


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [ln for ln in text[: text.rfind("\n") + 1].splitlines() if ln.strip()]
