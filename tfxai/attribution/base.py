"""The Attributer contract, parameter validation, the method registry and map post-processing.

Every attribution method is one class deriving from :class:`Attributer`:

* ``name``: the registry id (``"saliency"``, ``"gradcam"``, ...);
* ``params_spec``: its keyword parameters as :class:`Param` entries, validated at construction;
  an unknown parameter or a bad value raises a ``ValueError`` naming it;
* ``_attribute(x, targets, seeds)``: the batched core on one chunk of at most ``batch_size``
  images. ``x`` is a float32 tensor of RGB 0..255 images at the backbone's input size,
  ``targets`` an int32 tensor of class indices, ``seeds`` an int64 array of per-image seeds
  (random methods derive their noise from them, so results do not depend on batching or sharding).

:meth:`Attributer.attribute` returns the **raw attribution**: a signed float32 numpy array in input
space, (N, H, W, 3) or (N, H, W). :func:`to_map` turns it into the normalised (N, H, W) map used
for localisation, SSIM and pictures.

Perturbations, baselines and noise are defined in [0, 1]-scaled input space: σ = 0.15 means
0.15·255 in 0..255 units (docs/conventions.md, Units).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf

__all__ = [
    "Param",
    "Attributer",
    "register",
    "register_tunnel",
    "to_map",
    "MAP_REDUCE",
    "MAP_SCALE",
    "canonical_params",
    "above",
    "at_least",
    "validate_params",
    "SEED_PARAM",
]

from tfxai.params import (  # noqa: E402 - re-exported: the parameter contract of methods
    CHUNK_PARAM,
    SEED_PARAM,
    Param,
    above,
    at_least,
    canonical_params,
    json_default,
    validate_params,
)

#: the historical private names, kept for callers
_json_default = json_default
_positive_int = CHUNK_PARAM


class Attributer:
    """Base class of every attribution method. See the module docstring for the contract."""

    name: ClassVar[str] = ""
    #: one-line description with the paper, shown by ``tfxai methods``
    summary: ClassVar[str] = ""
    params_spec: ClassVar[dict[str, Param]] = {}
    #: default post-processing for maps of this method (see :func:`to_map`)
    map_defaults: ClassVar[dict[str, Any]] = {"reduce": "sum", "absolute": False, "scale": "max"}
    #: "input": computed at input resolution; "layer": computed at a layer and upsampled bilinearly
    resolution: ClassVar[str] = "input"
    #: True when the method draws random numbers (then ``seed`` is a recorded parameter)
    stochastic: ClassVar[bool] = False
    #: True when the method can be re-run on new inputs (False for stored-only attributions)
    rerunnable: ClassVar[bool] = True

    def __init__(self, backbone: Any, **params: Any) -> None:
        self.backbone = backbone
        spec = dict(self.params_spec)
        spec.setdefault("batch_size", _positive_int)
        if self.stochastic:
            spec.setdefault("seed", SEED_PARAM)
        self._spec = spec
        self.params = validate_params(self.name, spec, params)
        self.batch_size: int = int(self.params["batch_size"])
        self._setup()

    # ------------------------------------------------------------------ overridables
    def _setup(self) -> None:
        """Build compiled functions once (called at the end of ``__init__``)."""

    def _attribute(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------------ hooks for wrappers
    def attribute_chunk(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> Any:
        """One chunk of at most ``batch_size`` images, as tensors, without the input checks of
        :meth:`attribute`: the call a wrapper (a noise tunnel) makes on its inner method."""
        return self._attribute(x, targets, seeds)

    def check_background_ids(self, evaluated_ids: Sequence[Any]) -> None:
        """Refuse a reference set that holds evaluated images (raises ``ValueError``). Methods
        with a background set (SHAP) override it; the pipeline calls it before any work."""

    # ------------------------------------------------------------------ public API
    @property
    def key(self) -> str:
        """The method id as written in results (``method`` column)."""
        return self.name

    def method_params(self) -> dict[str, Any]:
        """The recorded parameters (execution-only parameters excluded)."""
        return {k: v for k, v in self.params.items() if self._spec[k].hashed}

    def method_params_json(self) -> str:
        return canonical_params(self.method_params())

    def attribute(
        self,
        images: Any,
        targets: Any = None,
        seeds: Any = None,
    ) -> np.ndarray:
        """Raw attributions of ``images`` (RGB 0..255, (N, H, W, 3)) for ``targets``.

        Args:
            images: float array at the backbone's input size.
            targets: int class indices (N,), or ``None`` for the predicted class.
            seeds: per-image seeds (N,) for random methods; default ``seed + arange(N)``.

        Returns:
            float32 array (N, H, W, 3) or (N, H, W), signed, in input space.
        """
        x = np.asarray(images, dtype=np.float32)
        self.backbone._check_images(x)
        n = len(x)
        t = self.resolve_targets(x, targets)
        s = self.resolve_seeds(n, seeds)
        chunks = []
        for i in range(0, n, self.batch_size):
            xs = tf.constant(x[i : i + self.batch_size])
            ts = tf.constant(t[i : i + self.batch_size], dtype=tf.int32)
            out = self._attribute(xs, ts, s[i : i + self.batch_size])
            chunks.append(out.numpy() if isinstance(out, tf.Tensor) else np.asarray(out))
        if not chunks:
            return np.zeros((0, *x.shape[1:]), np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    explain = attribute  # Xplique's name

    def resolve_targets(self, images: np.ndarray, targets: Any) -> np.ndarray:
        if targets is None:
            return self.backbone.predict_logits(images).argmax(axis=1).astype(np.int32)
        t = np.asarray(targets).reshape(-1)
        if t.dtype.kind == "f" and not np.all(np.mod(t, 1) == 0):
            raise ValueError(f"{self.name}: targets must be integer class indices, got {t[:5]}")
        if len(t) != len(images):
            raise ValueError(f"{self.name}: {len(t)} targets for {len(images)} images")
        if np.any(t < 0) or np.any(t >= self.backbone.num_classes):
            raise ValueError(
                f"{self.name}: targets must be class indices in 0..{self.backbone.num_classes - 1}"
            )
        return t.astype(np.int32)

    def resolve_seeds(self, n: int, seeds: Any) -> np.ndarray:
        base = int(self.params.get("seed", 0))
        if seeds is None:
            return (base + np.arange(n)).astype(np.int64)
        s = np.asarray(seeds, dtype=np.int64).reshape(-1)
        if len(s) != n:
            raise ValueError(f"{self.name}: {len(s)} seeds for {n} images")
        return s + base

    def to_map(self, raw: np.ndarray, **overrides: Any) -> np.ndarray:
        """:func:`to_map` with this method's defaults, overridden by ``overrides``."""
        return to_map(raw, **{**self.map_defaults, **overrides})

    def map_params(self, **overrides: Any) -> dict[str, Any]:
        return {**self.map_defaults, **overrides}

    # ------------------------------------------------------------------ helpers for subclasses
    def compile(self, fn: Callable[..., Any], extra: Sequence[tf.TensorSpec] = ()) -> Any:
        """``tf.function`` of ``fn(x, targets, *extra)`` with a fixed signature (no retracing)."""
        h, w = self.backbone.input_size
        sig = [tf.TensorSpec((None, h, w, 3), tf.float32), tf.TensorSpec((None,), tf.int32)]
        return tf.function(fn, input_signature=[*sig, *extra], reduce_retracing=True)

    def upsample(self, maps: tf.Tensor) -> tf.Tensor:
        """Bilinear upsampling of (N, h, w) layer maps to the input size (N, H, W)."""
        return tf.image.resize(maps[..., None], self.backbone.input_size, method="bilinear")[
            ..., 0
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.method_params_json()})"


# --------------------------------------------------------------------------------------- registry

METHODS: dict[str, type[Attributer]] = {}
TUNNELS: dict[str, type] = {}


def register(cls: type[Attributer]) -> type[Attributer]:
    """Class decorator adding a method to the registry under ``cls.name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    METHODS[cls.name] = cls
    return cls


def register_tunnel(cls: type) -> type:
    """Class decorator adding a noise-tunnel wrapper (``method+<name>``)."""
    TUNNELS[cls.name] = cls
    return cls


# --------------------------------------------------------------------------------------- maps

MAP_REDUCE = ("sum", "max_abs", "l2", "mean")
MAP_SCALE = ("max", "minmax", "none")


def _reduce_channels(raw: np.ndarray, reduce: str) -> np.ndarray:
    if reduce not in MAP_REDUCE:
        raise ValueError(f"reduce must be one of {MAP_REDUCE}, got {reduce!r}")
    if raw.ndim == 3:
        return raw.astype(np.float32, copy=True)
    if raw.ndim != 4:
        raise ValueError(f"attribution must be (N, H, W) or (N, H, W, C), got shape {raw.shape}")
    if reduce == "sum":
        return raw.sum(axis=-1, dtype=np.float32)
    if reduce == "mean":
        return raw.mean(axis=-1, dtype=np.float32)
    if reduce == "max_abs":
        return np.abs(raw).max(axis=-1).astype(np.float32)
    if reduce == "l2":
        return np.sqrt((raw.astype(np.float32) ** 2).sum(axis=-1))
    raise ValueError(f"reduce must be one of {MAP_REDUCE}, got {reduce!r}")


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    den = np.where(np.isfinite(den) & (den > 0), den, 1.0)
    return num / den


def to_map(
    raw: np.ndarray,
    reduce: str = "sum",
    absolute: bool = False,
    scale: str = "max",
    threshold: str | None = None,
    k: float = 0.5,
    percentile: float = 50.0,
) -> np.ndarray:
    """Normalised (N, H, W) float32 maps from raw attributions.

    Args:
        raw: (N, H, W, C) or (N, H, W) raw attributions (a single map without batch axis is not
            accepted: add it).
        reduce: channel reduction: ``sum`` (default), ``max_abs`` (Simonyan 2014), ``l2``, ``mean``.
        absolute: take ``|map|`` after the reduction.
        scale: ``max`` divides by max |map| (→ [0, 1] for non-negative maps, [−1, 1] for signed),
            ``minmax`` maps to [0, 1], ``none`` leaves values. All-zero and constant maps stay
            finite (zero, or zero after ``minmax``).
        threshold: ``None``, ``sigma`` (values whose |map| is below ``k``·σ(|map|) set to 0, Gattas
            2020) or ``percentile`` (values whose |map| is below the ``percentile``-th percentile of
            |map| set to 0).
        k: multiplier of σ for ``threshold="sigma"``.
        percentile: percentile for ``threshold="percentile"``.

    Non-finite values are left in place so metrics can detect and report them.
    """
    if scale not in MAP_SCALE:
        raise ValueError(f"scale must be one of {MAP_SCALE}, got {scale!r}")
    m = _reduce_channels(np.asarray(raw), reduce)
    if absolute:
        m = np.abs(m)
    axes = (1, 2)
    with np.errstate(invalid="ignore"):
        if scale == "max":
            m = _safe_divide(m, np.abs(m).max(axis=axes, keepdims=True))
        elif scale == "minmax":
            lo = m.min(axis=axes, keepdims=True)
            m = _safe_divide(m - lo, m.max(axis=axes, keepdims=True) - lo)
        if threshold == "sigma":
            a = np.abs(m)
            m = np.where(a < k * a.std(axis=axes, keepdims=True), 0.0, m)
        elif threshold == "percentile":
            a = np.abs(m)
            m = np.where(a < np.percentile(a, percentile, axis=axes, keepdims=True), 0.0, m)
        elif threshold is not None:
            raise ValueError(f"threshold must be None, 'sigma' or 'percentile', got {threshold!r}")
    return m.astype(np.float32, copy=False)
