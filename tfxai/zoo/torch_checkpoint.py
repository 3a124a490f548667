"""Reading PyTorch checkpoints (state dicts) with ``pickle`` and ``numpy`` only: no torch.

Two serialisations are read. The legacy (non-zip) one of torch < 1.6 is a sequence of pickles (magic
number, protocol version, ``sys_info``, the object, the storage keys) followed by the raw storages;
the zip one of torch ≥ 1.6 holds ``<root>/data.pkl`` and one ``<root>/data/<key>`` file per storage.
Tensors are unpickled as placeholders (:class:`_TensorRef`) by a restricted unpickler that allows
only the globals a state dict needs, so a malicious file cannot run code, and then materialised as
numpy arrays from their storage, offset, size and stride.

Used for the EfficientNet-Lite ImageNet checkpoints (:mod:`tfxai.zoo.efficientnet_lite`).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_legacy_torch_checkpoint"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends during unpickling."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.name]


@dataclass(frozen=True)
class _StorageRef:
    """A persistent-id reference to a storage (``key``), possibly a view at ``offset`` elements."""

    key: str
    dtype: np.dtype
    numel: int
    offset: int = 0


@dataclass(frozen=True)
class _TensorRef:
    """A tensor waiting for its storage bytes (which follow the pickle in the legacy format)."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef, offset: int, size: tuple, stride: tuple, *_: Any
) -> _TensorRef:
    return _TensorRef(
        storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
    )


def _rebuild_parameter(data: _TensorRef, *_: Any) -> _TensorRef:
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _TorchUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict into :class:`_TensorRef` placeholders; refuses any other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"unsupported global {module}.{name}")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        if (
            view is not None
        ):  # legacy storage view: (view_key, offset, view_size) on the root storage
            _view_key, offset, _view_size = view
            return _StorageRef(str(key), storage_type.dtype, int(numel), int(offset))
        return _StorageRef(str(key), storage_type.dtype, int(numel))


def _walk(obj: Any, fn: Callable[[_TensorRef], np.ndarray]) -> Any:
    """Replace every :class:`_TensorRef` inside dicts, lists and tuples by ``fn(ref)``."""
    if isinstance(obj, _TensorRef):
        return fn(obj)
    if isinstance(obj, dict):
        return type(obj)((k, _walk(v, fn)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_walk(v, fn) for v in obj)
    return obj


def _tensor_refs(obj: Any) -> Iterator[_TensorRef]:
    if isinstance(obj, _TensorRef):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensor_refs(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensor_refs(v)


def _materialise(ref: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    """Build a contiguous array from a storage, honouring offset, size and (possibly permuted) strides."""
    flat = storages[ref.storage.key]
    start = ref.storage.offset + ref.offset
    if not ref.size:
        return flat[start : start + 1].reshape(()).copy()
    extent = (
        start + 1 + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True) if n > 0)
    )
    if any(s < 0 for s in ref.stride) or extent > flat.size:
        raise ValueError(f"tensor of size {ref.size} and stride {ref.stride} overruns its storage")
    item = flat.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[start:], shape=ref.size, strides=tuple(s * item for s in ref.stride), writeable=False
    )
    return np.ascontiguousarray(view)


def _read_legacy(f: io.BufferedIOBase) -> Any:
    """Parse the legacy format: magic, protocol, sys_info, object, storage keys, raw storages."""
    if _TorchUnpickler(f).load() != _LEGACY_MAGIC:
        raise ValueError("bad magic number")
    if _TorchUnpickler(f).load() != _LEGACY_PROTOCOL:
        raise ValueError("unsupported protocol version")
    sys_info = _TorchUnpickler(f).load()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
        raise ValueError("only little-endian checkpoints are supported")
    obj = _TorchUnpickler(f).load()
    keys = _TorchUnpickler(f).load()
    dtypes = {r.storage.key: r.storage.dtype for r in _tensor_refs(obj)}
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        (numel,) = struct.unpack("<q", _read_exactly(f, 8))
        dtype = dtypes.get(key, np.dtype("u1"))
        storages[key] = np.frombuffer(_read_exactly(f, numel * dtype.itemsize), dtype=dtype)
    if f.read(1):
        raise ValueError("trailing bytes after the last storage")
    return _walk(obj, lambda r: _materialise(r, storages))


def _read_exactly(f: io.BufferedIOBase, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"truncated file: wanted {n} bytes, got {len(data)}")
    return data


def _read_zip(path: Path) -> Any:
    """Parse the zip format (torch ≥ 1.6): ``<root>/data.pkl`` plus raw ``<root>/data/<key>`` files."""
    with zipfile.ZipFile(path) as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        root = pkl[: -len("data.pkl")]
        obj = _TorchUnpickler(io.BytesIO(zf.read(pkl))).load()
        storages = {}
        for ref in _tensor_refs(obj):
            key = ref.storage.key
            if key not in storages:
                storages[key] = np.frombuffer(zf.read(f"{root}data/{key}"), dtype=ref.storage.dtype)
    return _walk(obj, lambda r: _materialise(r, storages))


def read_legacy_torch_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a torch state dict into numpy arrays with ``pickle`` and ``numpy`` only (no torch).

    The legacy (non-zip) serialisation is a sequence of pickles: the magic number, the protocol version
    (1001), a ``sys_info`` dict, the pickled object — whose tensors are
    ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` calls and whose storages are
    persistent ids ``("storage", torch.FloatStorage, key, location, numel, view)`` — then the list of
    storage keys, then each storage as an 8-byte little-endian element count followed by its raw bytes.
    The zip format of torch ≥ 1.6 is read too. Only the globals a state dict needs are allowed, so a
    malicious file cannot run code.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is corrupt or not a torch state dict; the message names ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"torch checkpoint not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            state = _read_zip(path)
        else:
            with open(path, "rb") as f:
                state = _read_legacy(f)
    except (
        pickle.UnpicklingError,
        EOFError,
        struct.error,
        KeyError,
        StopIteration,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        zipfile.BadZipFile,
    ) as exc:
        raise ValueError(
            f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return dict(state)
