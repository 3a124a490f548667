"""The attribution store: raw attributions in HDF5 part files, one per written batch.

An attribution batch goes to a temporary file that is renamed into place (``os.replace``), so a
part file is either complete or absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfxai.results.csvio import (
    _write_error,
)
from tfxai.vocabulary import migrate_params_json

__all__ = ["params_hash", "StoredItem", "AttributionStore"]

def params_hash(params_json: str) -> str:
    """Short stable hash of a canonical parameter JSON string."""
    return hashlib.sha1(params_json.encode("utf-8")).hexdigest()[:12]


def _slug(text: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    return safe if safe == text and len(text) <= 60 else f"{safe[:40]}-{params_hash(text)[:8]}"


def _weights_slug(weights: str) -> str:
    return weights if weights in ("imagenet", "none", "custom") else f"file-{params_hash(weights)}"


def _params_of(attrs: Any) -> str:
    """A part file's recorded ``method_params`` in today's names (tfxai 0.x parts record the
    old ones: :func:`tfxai.vocabulary.migrate_params_json`), so old parts are found."""
    return migrate_params_json(str(attrs["method"]), str(attrs["method_params"]))


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
                                          _params_of(a), _dec_id(name),
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
            key = (str(a["model"]), str(a["weights"]), str(a["method"]), _params_of(a))
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
