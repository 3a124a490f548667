"""innvestigate 2.1.2 as an optional reference, run in a child process under Keras 2 (``tf_keras``).

innvestigate [Alber et al. 2019, "iNNvestigate Neural Networks!", JMLR 20(93)] implements LRP
[Bach et al. 2015], Deep Taylor [Montavon et al. 2017], guided backprop [Springenberg et al.
2015], deconvnet [Zeiler & Fergus 2014], integrated gradients [Sundararajan et al. 2017] and
more. tfxai uses it only to cross-check its own methods; it registers no method.

innvestigate runs on Keras 2 in TF1 graph mode, and cannot be imported next to Keras 3. Here it
runs in a persistent child process (:class:`InnvestigateWorker`, one per model) started as::

    <python> -c <bootstrap> _innvestigate_worker.py <fd>     with TF_USE_LEGACY_KERAS=1

so that ``tf.keras`` is ``tf_keras`` in the child. The worker file is run with
:func:`runpy.run_path` and imports nothing from tfxai. The Keras 3 model is passed as a *bundle*:
its config translated to Keras 2 (:mod:`tfxai.attribution._innvestigate_config`), its weights as
numpy arrays per layer, and a probe batch whose logits the rebuilt model must reproduce. The
caller stays eager; it preprocesses the images and sends batches through a socket pair.

Optional install (into the environment of the worker's Python)::

    pip install "tf_keras~=2.21.0"        # the tf_keras matching TensorFlow's major.minor
    pip install --no-deps --ignore-requires-python innvestigate==2.1.2

``--no-deps`` keeps innvestigate's ``tensorflow<2.15`` pin from touching TensorFlow;
``--ignore-requires-python`` is needed on Python ≥ 3.12 (innvestigate declares ``<3.12`` but
is pure Python and runs there). The worker may also be another interpreter, e.g. a venv with
TF 2.14: ``python=`` or the ``TFXAI_INNVESTIGATE_PYTHON`` environment variable.

Failures: innvestigate or tf_keras missing → :class:`InnvestigateUnavailableError` (an
``ImportError`` whose message gives the install commands), before any process is started. An
exception in the worker comes back as :class:`InnvestigateWorkerError` with the worker's
traceback; a worker that dies (killed, segfault) or does not answer within the timeout is
reported the same way, never waited on forever, and the next call starts a new one. Workers are
shut down when their model is garbage-collected and at interpreter exit.

This module holds the public entry points (availability, the worker handle, the shared workers,
:func:`analyze`); the rest lives next to it: ``_innvestigate_install`` (the probe of the
worker's Python, the pip commands), ``_innvestigate_export`` (the bundle),
``_innvestigate_config`` (Keras 3 → Keras 2 config), ``_innvestigate_process`` (starting and
stopping the child) and ``_innvestigate_worker`` (the child itself).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from tfxai.attribution._innvestigate_config import ConfigTranslationError
from tfxai.attribution._innvestigate_export import export_bundle, keras3_config
from tfxai.attribution._innvestigate_install import (
    INSTALL_INNVESTIGATE,
    _missing,
    _run_probe,
    install_commands,
)
from tfxai.attribution._innvestigate_process import _describe_exit, _log_tail, _shutdown, _spawn
from tfxai.backend import keras

__all__ = [
    "ANALYZERS",
    "INSTALL_INNVESTIGATE",
    "InnvestigateUnavailableError",
    "InnvestigateWorker",
    "InnvestigateWorkerError",
    "ConfigTranslationError",
    "analyze",
    "channel_map",
    "close_worker",
    "close_workers",
    "export_bundle",
    "innvestigate_available",
    "install_commands",
    "keras3_config",
    "worker_for",
    "worker_python",
]

#: Common innvestigate analyzer names (``innvestigate.create_analyzer`` accepts more).
ANALYZERS = (
    "gradient", "input_t_gradient", "guided_backprop", "deconvnet", "integrated_gradients",
    "smoothgrad", "deep_taylor", "deep_taylor.bounded", "lrp.z", "lrp.epsilon", "lrp.w_square",
    "lrp.flat", "lrp.alpha_beta", "lrp.alpha_2_beta_1", "lrp.alpha_1_beta_0", "lrp.z_plus",
    "lrp.z_plus_fast", "lrp.sequential_preset_a", "lrp.sequential_preset_b",
    "lrp.sequential_preset_a_flat", "lrp.sequential_preset_b_flat",
)


class InnvestigateWorkerError(RuntimeError):
    """The innvestigate worker failed; ``worker_traceback`` holds its traceback text, if any."""

    def __init__(self, message: str, worker_traceback: str = "") -> None:
        self.worker_traceback = worker_traceback
        text = message if not worker_traceback else f"{message}\n--- worker traceback ---\n" \
            f"{worker_traceback.rstrip()}"
        super().__init__(text)


class InnvestigateUnavailableError(ImportError):
    """innvestigate or tf_keras is not installed for the worker's Python; the message says how
    to install them (``install`` holds the commands)."""

    def __init__(self, reason: str, install: list[str] | None = None) -> None:
        self.reason = reason
        self.install = list(install or [])
        super().__init__(reason)


# ------------------------------------------------------------------------ availability


def worker_python(python: str | os.PathLike | None = None) -> str:
    """The interpreter of the worker: ``python``, else ``$TFXAI_INNVESTIGATE_PYTHON``, else the
    current one."""
    return str(python or os.environ.get("TFXAI_INNVESTIGATE_PYTHON") or sys.executable)


_PROBED: dict[str, dict[str, Any]] = {}


def _probe(python: str) -> dict[str, Any]:
    """Versions of Python, TensorFlow, tf_keras and innvestigate seen by ``python``; cached once
    innvestigate is found (a missing one is looked for again at the next call)."""
    if python not in _PROBED:
        info = _run_probe(python)
        if info.get("innvestigate") is None:
            return info
        _PROBED[python] = info
    return _PROBED[python]


def _check(python: str) -> tuple[str | None, list[str]]:
    """``(None, [])`` when the worker can run, else ``(reason, install commands)``."""
    return _missing(python, _probe(python))


def innvestigate_available(python: str | os.PathLike | None = None) -> tuple[bool, str]:
    """Whether the worker can run: ``(True, versions)`` or ``(False, reason)``, the reason
    giving the pip commands that install what is missing. Reads the installed distributions of
    the worker's Python (nothing is imported; about 0.1 s, cached per interpreter once found)."""
    exe = worker_python(python)
    reason, _ = _check(exe)
    if reason is not None:
        return False, reason
    info = _probe(exe)
    return True, (f"innvestigate {info['innvestigate']}, TensorFlow {info['tensorflow']}, "
                  f"tf_keras {info.get('tf_keras') or '(tf.keras)'}, Python "
                  f"{info.get('python')} ({exe})")


def _require(python: str) -> None:
    ok, reason = innvestigate_available(python)
    if not ok:
        raise InnvestigateUnavailableError(reason, _check(python)[1])


# ------------------------------------------------------------------------ the worker


class InnvestigateWorker:
    """A persistent innvestigate process for one model.

    Args:
        model_path: a bundle directory (:func:`export_bundle`) or a Keras 2 model file that
            ``tf_keras`` loads; the model maps preprocessed input to logits.
        start_timeout: seconds allowed for the worker to import TensorFlow and load the model.
        call_timeout: seconds allowed for one ``analyze`` request (analyzer build included).
        tmpdir: a directory removed when the worker shuts down (default: a new one). The
            worker's output (TensorFlow's log) goes to ``worker.log`` there.
        python: the worker's interpreter (see :func:`worker_python`).

    Raises:
        InnvestigateUnavailableError: innvestigate or tf_keras is missing for ``python``.
        InnvestigateWorkerError: the worker failed to start or to load the model.
    """

    def __init__(self, model_path: str | os.PathLike, start_timeout: float = 300.0,
                 call_timeout: float = 900.0, tmpdir: str | None = None,
                 python: str | os.PathLike | None = None) -> None:
        self.model_path = str(model_path)
        self.call_timeout = float(call_timeout)
        self.python = worker_python(python)
        _require(self.python)
        if os.name != "posix":
            raise InnvestigateWorkerError("the innvestigate worker needs a POSIX system")
        self.tmpdir = tmpdir or tempfile.mkdtemp(prefix="tfxai-innvestigate-")
        self.log_path = Path(self.tmpdir) / "worker.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed by the finalizer
        try:
            self._proc, self._conn = _spawn(self.python, self.tmpdir, log)
        except BaseException:
            log.close()
            if tmpdir is None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            raise
        self._finalizer = weakref.finalize(self, _shutdown, self._proc, self._conn, log,
                                           self.tmpdir)
        try:
            self.versions = self._receive(start_timeout, "starting")
            self.info = self._request(("load", self.model_path), start_timeout, "loading the model")
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_model(cls, model: keras.Model, probe: Any = None, **kwargs: Any
                   ) -> InnvestigateWorker:
        """Export ``model`` (Keras 3; preprocessed input → logits) to a private bundle and start
        a worker on it. ``probe``: an input batch for the equivalence check."""
        _require(worker_python(kwargs.get("python")))
        tmpdir = tempfile.mkdtemp(prefix="tfxai-innvestigate-")
        try:
            path = export_bundle(model, Path(tmpdir) / "model", probe=probe)
        except Exception as exc:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise InnvestigateWorkerError(
                f"cannot export model {model.name!r} for the innvestigate worker: "
                f"{type(exc).__name__}: {exc}") from exc
        return cls(path, tmpdir=tmpdir, **kwargs)

    # ------------------------------------------------------------------ state
    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._finalizer.alive and self._proc.poll() is None

    def close(self) -> None:
        """Stop the worker (idempotent)."""
        self._finalizer()

    # ------------------------------------------------------------------ requests
    def analyze(self, method: str, kwargs: dict[str, Any], x: np.ndarray,
                targets: Any) -> np.ndarray:
        """innvestigate's ``method`` relevance of ``x`` (preprocessed) for the ``targets``."""
        out = self._request(
            ("analyze", method, dict(kwargs), np.ascontiguousarray(x, np.float32),
             np.asarray(targets, np.int64)),
            self.call_timeout, f"running {method}",
        )
        return np.asarray(out, np.float32)

    def _died(self, what: str) -> InnvestigateWorkerError:
        try:
            self._proc.wait(2)
        except subprocess.TimeoutExpired:
            pass
        code = self._proc.returncode
        self.close()
        return InnvestigateWorkerError(
            f"innvestigate worker (pid {self.pid}) died while {what}: {_describe_exit(code)}"
            f"{_log_tail(self.log_path) if code is None or code > 0 else ''}")

    def _request(self, msg: tuple, timeout: float, what: str) -> Any:
        if not self._finalizer.alive:
            raise InnvestigateWorkerError(f"innvestigate worker is closed ({what})")
        try:
            self._conn.send(msg)
        except (OSError, ValueError) as exc:
            err = self._died(what)
            raise InnvestigateWorkerError(f"{err} (gone: {type(exc).__name__})") from None
        return self._receive(timeout, what)

    def _receive(self, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                ready = self._conn.poll(0.2)
            except (OSError, ValueError):
                ready = False
            if ready:
                try:
                    status, payload = self._conn.recv()
                except (EOFError, OSError):
                    raise self._died(what) from None
                if status == "error":
                    raise InnvestigateWorkerError(
                        f"innvestigate failed while {what}", worker_traceback=payload)
                return payload
            if self._proc.poll() is not None:
                raise self._died(what)
            if time.monotonic() > deadline:
                self.close()
                raise InnvestigateWorkerError(
                    f"innvestigate worker (pid {self.pid}) did not answer within {timeout:.0f} s "
                    f"while {what}; it was stopped")


_WORKERS: dict[tuple[int, str], InnvestigateWorker] = {}


def _drop_worker(key: tuple[int, str]) -> None:
    worker = _WORKERS.pop(key, None)
    if worker is not None:
        worker.close()


def close_worker(backbone: Any, python: str | os.PathLike | None = None) -> None:
    """Stop the shared worker of ``backbone`` (or of a ``keras.Model``), if any."""
    _drop_worker((id(_model_of(backbone)), worker_python(python)))


def close_workers() -> None:
    """Stop every shared worker (also done at interpreter exit)."""
    for key in list(_WORKERS):
        _drop_worker(key)


atexit.register(close_workers)


def _model_of(backbone: Any) -> keras.Model:
    model = getattr(backbone, "logit_model", backbone)
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a tfxai Backbone or a keras.Model, got {type(backbone).__name__}")
    return model


def worker_for(backbone: Any, python: str | os.PathLike | None = None, probe: Any = None,
               **kwargs: Any) -> InnvestigateWorker:
    """The shared worker of ``backbone.logit_model`` (or of a ``keras.Model``) for the
    interpreter ``python``: started, or restarted after a crash. ``kwargs`` go to
    :class:`InnvestigateWorker` when a worker is started; ``call_timeout`` is also applied to a
    running one."""
    model = _model_of(backbone)
    exe = worker_python(python)
    key = (id(model), exe)
    worker = _WORKERS.get(key)
    if worker is not None and worker.alive:
        if "call_timeout" in kwargs:
            worker.call_timeout = float(kwargs["call_timeout"])
        return worker
    if worker is not None:
        _drop_worker(key)
    worker = InnvestigateWorker.from_model(model, probe=probe, python=exe, **kwargs)
    _WORKERS[key] = worker
    weakref.finalize(model, _drop_worker, key)
    return worker


# ------------------------------------------------------------------------ public entry point


def channel_map(backbone: Any) -> np.ndarray:
    """For each RGB input channel, the preprocessed channel it becomes
    (:meth:`tfxai.models.Backbone.channel_map`): relevance of a preprocessed value (what
    :func:`analyze` returns) is the relevance of the input value it came from,
    ``relevance[..., channel_map(bb)]``."""
    return backbone.channel_map()


def analyze(backbone: Any, method: str, images: Any, targets: Any = None, *,
            batch_size: int = 32, timeout: float = 900.0,
            python: str | os.PathLike | None = None, **kwargs: Any) -> np.ndarray:
    """innvestigate's ``method`` for the ``targets`` logits of ``backbone``.

    Args:
        backbone: a :class:`tfxai.Backbone` (its ``logit_model`` is analysed, after its
            ``preprocess`` applied here) or a ``keras.Model`` taking the images as they are.
        method: an innvestigate analyzer name: ``"lrp.epsilon"``, ``"lrp.z_plus"``,
            ``"lrp.alpha_1_beta_0"``, ``"lrp.sequential_preset_a"``, ``"guided_backprop"``,
            ``"deconvnet"``, ``"deep_taylor"``, ``"integrated_gradients"``... (:data:`ANALYZERS`).
        images: float RGB 0..255, (N, H, W, 3) at the input size.
        targets: class indices, (N,); ``None`` explains the predicted classes.
        batch_size: images per worker request.
        timeout: seconds allowed per request (the worker is stopped after it).
        python: the worker's interpreter (:func:`worker_python`).
        **kwargs: the analyzer's parameters (``epsilon=...``); innvestigate is always called
            with ``neuron_selection_mode="index"``.

    Returns:
        float32 (N, H, W, C): the relevance of each *preprocessed* input value (apply
        :func:`channel_map` to map it onto the RGB channels). innvestigate starts its backward
        pass from the target logit's value, so LRP relevance sums to about the logit.

    Raises:
        InnvestigateUnavailableError: innvestigate or tf_keras is not installed (the message
            gives the pip commands).
        InnvestigateWorkerError: the analyzer failed, or the worker died or timed out.
    """
    exe = worker_python(python)
    _require(exe)
    model = _model_of(backbone)
    raw = np.asarray(images, np.float32)
    prep = getattr(backbone, "preprocess", None) if model is not backbone else None
    x = np.asarray(prep(raw) if prep is not None else raw, np.float32)
    if targets is None:
        targets = np.concatenate([
            np.asarray(model(x[i:i + batch_size], training=False)).argmax(axis=-1)
            for i in range(0, len(x), batch_size)]) if len(x) else np.zeros(0, np.int64)
    targets = np.asarray(targets, np.int64).reshape(-1)
    if len(targets) != len(x):
        raise ValueError(f"{len(targets)} targets for {len(x)} images")
    worker = worker_for(backbone, python=exe, probe=x[:2] if len(x) else None,
                        call_timeout=timeout)
    out = []
    for i in range(0, len(x), batch_size):
        rel = worker.analyze(method, kwargs, x[i:i + batch_size], targets[i:i + batch_size])
        if rel.shape != x[i:i + batch_size].shape:
            raise InnvestigateWorkerError(
                f"innvestigate {method!r} returned shape {rel.shape} for input "
                f"{x[i:i + batch_size].shape}")
        out.append(rel)
    return np.concatenate(out) if out else np.zeros_like(x)
