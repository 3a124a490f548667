"""Layer-wise relevance propagation through innvestigate 2.1.2, run in a worker process.

* :class:`LRPEpsilon`, :class:`LRPZPlus`, :class:`LRPAlphaBeta`, :class:`LRPSequentialPresetA`
  [Bach et al. 2015, "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
  Layer-Wise Relevance Propagation"; Kohlbrenner et al. 2020 for the sequential presets];
* :class:`DeepTaylor` [Montavon et al. 2017, "Explaining Nonlinear Classification Decisions with
  Deep Taylor Decomposition"].

innvestigate needs TF1 graph mode (``tf.compat.v1.disable_eager_execution()``), which would break
every eager method in the same process. The analyzers therefore run in a persistent worker process
(:class:`InnvestigateWorker`, ``multiprocessing`` ``spawn``) that receives the backbone's
``logit_model`` (preprocessed input → logits, no softmax) as a saved ``.h5`` file and batches of
preprocessed images through a pipe. The caller stays eager. Errors in the worker come back as
:class:`InnvestigateWorkerError` with the worker's traceback; a worker that dies (killed,
segfault) or does not answer within the timeout is reported the same way, never waited on forever.
Workers are shut down when their backbone is garbage-collected and at interpreter exit.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import runpy
import shutil
import signal
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfxai.attribution.base import Attributer, Param, above, at_least, register

__all__ = [
    "InnvestigateWorker",
    "InnvestigateWorkerError",
    "worker_for",
    "channel_map",
    "LRPEpsilon",
    "LRPZPlus",
    "LRPAlphaBeta",
    "LRPSequentialPresetA",
    "DeepTaylor",
]

_WORKER_FILE = Path(__file__).with_name("_innvestigate_worker.py")


class InnvestigateWorkerError(RuntimeError):
    """The innvestigate worker failed; ``worker_traceback`` holds its traceback text, if any."""

    def __init__(self, message: str, worker_traceback: str = "") -> None:
        self.worker_traceback = worker_traceback
        text = message if not worker_traceback else f"{message}\n--- worker traceback ---\n" \
            f"{worker_traceback.rstrip()}"
        super().__init__(text)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _shutdown(proc: Any, conn: Any, tmpdir: str | None) -> None:
    """Finalizer: ask the worker to exit, then terminate/kill it; remove the model file."""
    try:
        if proc.is_alive():
            try:
                conn.send(("close",))
            except (OSError, ValueError):
                pass
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
    finally:
        try:
            conn.close()
        except OSError:
            pass
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


class InnvestigateWorker:
    """A persistent innvestigate process for one saved model.

    Args:
        model_path: a saved Keras model (``.h5``/``.keras``) mapping preprocessed input to logits.
        start_timeout: seconds allowed for the worker to import TensorFlow and load the model.
        call_timeout: seconds allowed for one ``analyze`` request (analyzer build included).
        tmpdir: a directory removed when the worker shuts down (holds the model file).
    """

    def __init__(self, model_path: str | Path, start_timeout: float = 300.0,
                 call_timeout: float = 900.0, tmpdir: str | None = None) -> None:
        self.model_path = str(model_path)
        self.call_timeout = float(call_timeout)
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=True)
        self._proc = ctx.Process(
            target=runpy.run_path,
            kwargs={"path_name": str(_WORKER_FILE), "init_globals": {"_CONN": child},
                    "run_name": "__tfxai_innvestigate_worker__"},
            name="tfxai-innvestigate", daemon=True,
        )
        self._proc.start()
        child.close()
        self._finalizer = weakref.finalize(self, _shutdown, self._proc, self._conn, tmpdir)
        try:
            self.versions = self._receive(start_timeout, "starting")
            self.info = self._request(("load", self.model_path), start_timeout, "loading the model")
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_model(cls, model: tf.keras.Model, **kwargs: Any) -> InnvestigateWorker:
        """Save ``model`` to a private temporary ``.h5`` file and start a worker on it."""
        tmpdir = tempfile.mkdtemp(prefix="tfxai-innvestigate-")
        path = Path(tmpdir) / "model.h5"
        try:
            model.save(str(path), save_format="h5", include_optimizer=False)
        except Exception as exc:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise InnvestigateWorkerError(
                f"cannot save model {model.name!r} for the innvestigate worker: "
                f"{type(exc).__name__}: {exc}") from exc
        return cls(path, tmpdir=tmpdir, **kwargs)

    # ------------------------------------------------------------------ state
    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._finalizer.alive and self._proc.is_alive()

    def close(self) -> None:
        """Stop the worker (idempotent)."""
        self._finalizer()

    # ------------------------------------------------------------------ requests
    def analyze(self, method: str, kwargs: dict[str, Any], x: np.ndarray,
                targets: np.ndarray) -> np.ndarray:
        """innvestigate's ``method`` relevance of ``x`` (preprocessed) for the ``targets``."""
        out = self._request(
            ("analyze", method, dict(kwargs), np.ascontiguousarray(x, np.float32),
             np.asarray(targets, np.int64)),
            self.call_timeout, f"running {method}",
        )
        return np.asarray(out, np.float32)

    def _request(self, msg: tuple, timeout: float, what: str) -> Any:
        if not self._finalizer.alive:
            raise InnvestigateWorkerError(f"innvestigate worker is closed ({what})")
        try:
            self._conn.send(msg)
        except (OSError, ValueError) as exc:
            self.close()
            raise InnvestigateWorkerError(
                f"innvestigate worker (pid {self.pid}) is gone while {what}: "
                f"{_describe_exit(self._proc.exitcode)} ({type(exc).__name__})") from None
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
                    self._proc.join(2)
                    code = self._proc.exitcode
                    self.close()
                    raise InnvestigateWorkerError(
                        f"innvestigate worker (pid {self.pid}) died while {what}: "
                        f"{_describe_exit(code)}") from None
                if status == "error":
                    raise InnvestigateWorkerError(
                        f"innvestigate failed while {what}", worker_traceback=payload)
                return payload
            if not self._proc.is_alive():
                code = self._proc.exitcode
                self.close()
                raise InnvestigateWorkerError(
                    f"innvestigate worker (pid {self.pid}) died while {what}: "
                    f"{_describe_exit(code)}")
            if time.monotonic() > deadline:
                self.close()
                raise InnvestigateWorkerError(
                    f"innvestigate worker (pid {self.pid}) did not answer within {timeout:.0f} s "
                    f"while {what}; it was stopped")


_WORKERS: dict[int, InnvestigateWorker] = {}


def _drop_worker(key: int) -> None:
    worker = _WORKERS.pop(key, None)
    if worker is not None:
        worker.close()


def _close_all() -> None:
    for key in list(_WORKERS):
        _drop_worker(key)


atexit.register(_close_all)


def worker_for(backbone: Any, **kwargs: Any) -> InnvestigateWorker:
    """The shared worker of ``backbone.logit_model`` (started, or restarted after a crash)."""
    model = backbone.logit_model
    key = id(model)
    worker = _WORKERS.get(key)
    if worker is not None and worker.alive:
        return worker
    if worker is not None:
        _drop_worker(key)
    worker = InnvestigateWorker.from_model(model, **kwargs)
    _WORKERS[key] = worker
    weakref.finalize(model, _drop_worker, key)
    return worker


def channel_map(backbone: Any) -> np.ndarray:
    """For each RGB input channel, the preprocessed channel it becomes.

    The preprocessing is probed with constant images: its 3×3 channel matrix must have one nonzero
    entry per row and column (a per-channel affine map, possibly reordered as caffe's RGB → BGR).
    LRP relevance of a preprocessed value is then the relevance of the input value it came from.
    """
    h, w = backbone.input_size
    probe = np.zeros((4, h, w, 3), np.float32)
    for c in range(3):
        probe[c + 1, ..., c] = 100.0
    out = np.asarray(backbone.preprocess(probe))
    if out.shape != probe.shape:
        raise ValueError(f"LRP: the preprocessing of {backbone.name!r} changes the image shape")
    diff = out[1:] - out[:1]
    mat = diff.mean(axis=(1, 2))  # (input channel, preprocessed channel)
    if not np.allclose(diff, mat[:, None, None, :], atol=1e-3 * (np.abs(mat).max() + 1)):
        raise ValueError(f"LRP: the preprocessing of {backbone.name!r} is not pixel-wise")
    nz = np.abs(mat) > 1e-6 * np.abs(mat).max()
    if not (nz.sum(axis=0) == 1).all() or not (nz.sum(axis=1) == 1).all():
        raise ValueError(
            f"LRP: the preprocessing of {backbone.name!r} mixes colour channels; relevance "
            "cannot be mapped back to RGB input channels"
        )
    return nz.argmax(axis=1)


class _InnvestigateBase(Attributer):
    """Shared code: preprocess in the caller, analyze in the worker, map channels back to RGB.

    Raw attribution: the (N, H, W, 3) relevance of each input value for the target's
    **pre-softmax logit** (``neuron_selection_mode="index"`` with the targets; innvestigate's
    default would analyse the max output neuron). Relevance is computed on the preprocessed input
    and assigned to the RGB value each preprocessed value comes from; its sum over the image
    approximates the logit (exactly for LRP-ε with ε → 0 and no biases).
    """

    analyzer: str = ""
    map_defaults = {"reduce": "sum", "absolute": False, "scale": "max"}
    base_params: dict[str, Param] = {
        "timeout": Param(900.0, float, "seconds allowed per worker request",
                         **above(0), hashed=False),
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.params_spec = {**cls.params_spec, **_InnvestigateBase.base_params}

    def _setup(self) -> None:
        self._channels = channel_map(self.backbone)

    def analyzer_spec(self) -> tuple[str, dict[str, Any]]:
        """innvestigate analyzer name and keyword arguments."""
        return self.analyzer, {}

    def worker(self) -> InnvestigateWorker:
        return worker_for(self.backbone, call_timeout=self.params["timeout"])

    def _attribute(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> np.ndarray:
        xp = np.asarray(self.backbone.preprocess(x), np.float32)
        method, kwargs = self.analyzer_spec()
        rel = self.worker().analyze(method, kwargs, xp, targets.numpy())
        if rel.shape != xp.shape:
            raise InnvestigateWorkerError(
                f"{self.name}: innvestigate returned shape {rel.shape} for input {xp.shape}")
        return rel[..., self._channels]


class _EpsilonAnalyzer(_InnvestigateBase):
    """An innvestigate analyzer called with one keyword argument: the ``epsilon`` parameter."""

    def analyzer_spec(self) -> tuple[str, dict[str, Any]]:
        return self.analyzer, {"epsilon": self.params["epsilon"]}


@register
class LRPEpsilon(_EpsilonAnalyzer):
    """LRP-ε [Bach et al. 2015]: R_i = Σ_j z_ij / (z_j + ε·sign(z_j)) R_j, biases included."""

    name = "lrp_epsilon"
    summary = "LRP-ε (ε=1e-7) via innvestigate [Bach 2015]"
    analyzer = "lrp.epsilon"
    params_spec = {"epsilon": Param(1e-7, float, "stabiliser ε", **above(0))}


@register
class LRPZPlus(_InnvestigateBase):
    """LRP-z⁺ [Bach et al. 2015; Montavon 2017]: only positive contributions, biases ignored."""

    name = "lrp_z_plus"
    summary = "LRP-z+ via innvestigate [Bach 2015]"
    analyzer = "lrp.z_plus"
    params_spec = {}


@register
class LRPAlphaBeta(_InnvestigateBase):
    """LRP-αβ [Bach et al. 2015], α − β = 1; default α=1, β=0 (innvestigate
    ``lrp.alpha_1_beta_0``), ``lrp.alpha_2_beta_1`` for α=2, β=1, ``lrp.alpha_beta`` otherwise."""

    name = "lrp_alpha_beta"
    summary = "LRP-αβ (α=1, β=0) via innvestigate [Bach 2015]"
    params_spec = {
        "alpha": Param(1.0, float, "weight of positive contributions", **at_least(1)),
        "beta": Param(0.0, float, "weight of negative contributions (α − β = 1)",
                      **at_least(0)),
    }

    def _setup(self) -> None:
        if abs(self.params["alpha"] - self.params["beta"] - 1) > 1e-9:
            raise ValueError("lrp_alpha_beta: parameters 'alpha' and 'beta' need alpha - beta = 1")
        super()._setup()

    def analyzer_spec(self) -> tuple[str, dict[str, Any]]:
        a, b = self.params["alpha"], self.params["beta"]
        if (a, b) == (1.0, 0.0):
            return "lrp.alpha_1_beta_0", {}
        if (a, b) == (2.0, 1.0):
            return "lrp.alpha_2_beta_1", {}
        return "lrp.alpha_beta", {"alpha": a, "beta": b}


@register
class LRPSequentialPresetA(_EpsilonAnalyzer):
    """LRP composite preset A [Kohlbrenner et al. 2020]: ε for dense layers, α1β0 for convs."""

    name = "lrp_sequential_preset_a"
    summary = "LRP composite: ε (dense) + α1β0 (conv) via innvestigate [Kohlbrenner 2020]"
    analyzer = "lrp.sequential_preset_a"
    params_spec = {"epsilon": Param(0.1, float, "ε of the dense layers", **above(0))}


@register
class DeepTaylor(_InnvestigateBase):
    """Deep Taylor decomposition [Montavon et al. 2017] via innvestigate ``deep_taylor``."""

    name = "deep_taylor"
    summary = "Deep Taylor decomposition via innvestigate [Montavon 2017]"
    analyzer = "deep_taylor"
    params_spec = {}
