"""Path-integral attributions.

* :class:`IntegratedGradients` [Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep
  Networks"], with the baselines of [Sturmfels, Lundberg & Lee 2020, "Visualizing the Impact of
  Feature Attribution Baselines", Distill].
* :class:`GradientShap`: expected gradients [Erion et al. 2021, "Improving performance of deep
  learning models with axiomatic attribution priors and expected gradients", Nature MI;
  Lundberg & Lee 2017, "A Unified Approach to Interpreting Model Predictions"].

Both sum gradients over many points per image. The (image, point) rows are processed in flat
chunks of ``internal_batch_size`` inside one compiled function (see
:func:`tfxai.attribution.gradients.accumulate_gradients`), so peak memory is that of
``internal_batch_size`` images whatever the number of steps or samples: IG with 256 steps on
VGG16 never holds 256 images' activations.

Baselines, noise and perturbations are defined in [0, 1]-scaled input space and applied to
RGB 0..255 images (σ = 0.5 means 127.5 in 0..255 units).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfxai.attribution.base import Attributer, Param, above, at_least, register
from tfxai.attribution.deeplift import gaussian_blur
from tfxai.attribution.gradients import accumulate_gradients, rows_normal, rows_uniform

__all__ = ["IntegratedGradients", "GradientShap", "make_baseline", "BASELINES", "RULES"]

BASELINES = ("black", "uniform", "gaussian", "blur", "max_distance")
RULES = ("riemann_right", "trapezoid")

_SALT_BASELINE = 0x1B5
_SALT_ALPHA = 0x6A1
_SALT_NOISE = 0x7E5_0000

_internal_batch = Param(16, int, "images per internal forward/backward pass (memory bound)",
                        **above(0), hashed=False)


def make_baseline(
    x: tf.Tensor, kind: str, seeds: tf.Tensor, sigma: float = 0.5, blur_sigma: float = 5.0
) -> tf.Tensor:
    """The IG baseline x' for RGB 0..255 images ``x`` [Sturmfels et al. 2020].

    * ``black``: all zeros;
    * ``uniform``: U[0, 1]·255 per pixel and channel, seeded per image;
    * ``gaussian``: x + N(0, σ²) with σ = 0.5 in [0, 1] units, clipped to [0, 255], seeded;
    * ``blur``: x blurred by a Gaussian of σ = 5 px (reflect padding);
    * ``max_distance``: per pixel and channel the value of [0, 255] farthest from x
      (255 where x < 127.5, else 0).
    """
    shape = x.shape[1:]
    if kind == "black":
        return tf.zeros_like(x)
    if kind == "uniform":
        return 255.0 * rows_uniform(seeds, _SALT_BASELINE, shape)
    if kind == "gaussian":
        noise = rows_normal(seeds, _SALT_BASELINE, shape)
        return tf.clip_by_value(x + sigma * 255.0 * noise, 0.0, 255.0)
    if kind == "blur":
        return gaussian_blur(x, blur_sigma)
    if kind == "max_distance":
        return tf.where(x < 127.5, 255.0, 0.0)
    raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")


def ig_path(steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Path positions α_k and quadrature weights w_k (Σ w = 1).

    ``riemann_right``: α = k/m, k = 1..m, w = 1/m (eq. 3 of Sundararajan 2017).
    ``trapezoid``: α = k/m, k = 0..m, w = 1/m with the two ends halved (m + 1 gradients).
    """
    if rule == "riemann_right":
        alphas = np.arange(1, steps + 1, dtype=np.float64) / steps
        weights = np.full(steps, 1.0 / steps)
    elif rule == "trapezoid":
        alphas = np.arange(0, steps + 1, dtype=np.float64) / steps
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] *= 0.5
    else:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    return alphas.astype(np.float32), weights.astype(np.float32)


class _SeededGradientMethod(Attributer):
    """Shared: compiled ``core(x, targets, seeds)``, called on each chunk."""

    map_defaults = {"reduce": "sum", "absolute": False, "scale": "max"}

    def _compile_seeded(self) -> None:
        self._fn = self.compile(self._core, extra=[tf.TensorSpec((None,), tf.int64)])

    def _logits(self, x: tf.Tensor) -> tf.Tensor:
        return self.backbone.logits(x)

    def _core(self, x: tf.Tensor, t: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _attribute(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> tf.Tensor:
        return self._fn(x, targets, tf.constant(seeds, tf.int64))


@register
class IntegratedGradients(_SeededGradientMethod):
    """Integrated gradients [Sundararajan et al. 2017] on the target logit.

    Raw attribution: ``(x − x')·Σ_k w_k ∇F(x' + α_k (x − x'))``, (N, H, W, 3), with the
    right Riemann sum (default, α_k = k/m, w_k = 1/m) or the trapezoid rule. Completeness:
    ``Σ attribution ≈ F(x) − F(x')``, the error shrinking with ``steps``. Baselines: see
    :func:`make_baseline` (``uniform`` and ``gaussian`` are drawn from the per-image seed).
    """

    name = "integrated_gradients"
    summary = "(x−x')·mean_k ∇F(x'+k/m(x−x')); baselines black|uniform|gaussian|blur|max_distance [Sundararajan 2017]"
    stochastic = True  # only the uniform and gaussian baselines draw random numbers
    params_spec = {
        "steps": Param(50, int, "path steps m", **at_least(1)),
        "baseline": Param("black", str, "baseline x'", choices=BASELINES),
        "rule": Param("riemann_right", str, "quadrature rule", choices=RULES),
        "internal_batch_size": _internal_batch,
    }

    def _setup(self) -> None:
        self._alphas, self._weights = ig_path(self.params["steps"], self.params["rule"])
        self._compile_seeded()

    def baseline(self, x: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
        return make_baseline(x, self.params["baseline"], seeds)

    def _core(self, x: tf.Tensor, t: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
        x0 = self.baseline(x, seeds)
        alphas = tf.constant(self._alphas)
        weights = tf.constant(self._weights)
        delta = x - x0

        def rows(img: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            a = tf.reshape(tf.gather(alphas, k), (-1, 1, 1, 1))
            w = tf.reshape(tf.gather(weights, k), (-1, 1, 1, 1))
            return tf.gather(x0, img) + a * tf.gather(delta, img), w

        acc = accumulate_gradients(self._logits, x, t, len(self._alphas),
                                   self.params["internal_batch_size"], rows)
        return delta * acc


# --------------------------------------------------------------------------------------- SHAP


def _background_descriptor(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        digest = hashlib.sha1(np.ascontiguousarray(value, np.float32).tobytes()).hexdigest()[:12]
        return f"array{list(value.shape)}:{digest}"
    return value


def load_background(value: Any, size: tuple[int, int], limit: int | None = None,
                    method: str = "gradient_shap") -> np.ndarray:
    """The background set as (B, H, W, 3) float32 RGB 0..255.

    ``value``: an array of images at the input size, or a folder (or list file) of images read
    through :mod:`tfxai.data` and squash-resized to ``size``. ``limit`` keeps the first images
    (sorted by image id).
    """
    if value is None:
        raise ValueError(
            f"{method}: parameter 'background' is required: a folder of background images "
            "(e.g. --param gradient_shap.background=DIR) or an array (B, H, W, 3) in 0..255"
        )
    if isinstance(value, (str, os.PathLike)):
        from tfxai.data import DatasetError, discover, load_batch

        path = Path(value)
        if not path.exists():
            raise ValueError(f"{method}: parameter 'background': {str(path)!r} does not exist")
        try:
            samples = discover(path, limit=limit)
        except DatasetError as exc:
            raise ValueError(f"{method}: parameter 'background': {exc}") from None
        batch = load_batch(samples, size)
        if not len(batch.images):
            raise ValueError(f"{method}: parameter 'background': no readable image in {str(path)!r}")
        arr = batch.images
    else:
        arr = np.asarray(value, dtype=np.float32)
        if limit:
            arr = arr[:limit]
    if arr.ndim != 4 or tuple(arr.shape[1:]) != (*size, 3) or len(arr) == 0:
        raise ValueError(
            f"{method}: parameter 'background' must hold images of shape (B, {size[0]}, "
            f"{size[1]}, 3), got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{method}: parameter 'background' has non-finite values")
    return arr.astype(np.float32)


@register
class GradientShap(_SeededGradientMethod):
    """Expected gradients / gradient SHAP [Erion et al. 2021; Lundberg & Lee 2017].

    Raw attribution: the mean over ``samples`` draws for each of the B background images b of
    ``(x̃ − b)·∇F(b + α(x̃ − b))`` with α ∼ U(0, 1) and x̃ = x + ε, ε ∼ N(0, noise²) in [0, 1]
    units (``noise = 0``, the default, gives x̃ = x), as shap's ``GradientExplainer`` with
    ``local_smoothing``. Every draw comes from the per-image seed. In expectation
    ``Σ attribution = F(x) − E_b F(b)``.

    ``background``: a folder of images (loaded through :mod:`tfxai.data`, squash-resized) or an
    array (B, H, W, 3) in 0..255; required. The recorded parameter is the folder path or the
    array's shape and hash.
    """

    name = "gradient_shap"
    summary = "E_{b,α}[(x−b)·∇F(b+α(x−b))] over a background set; noise option [Erion 2021; Lundberg 2017]"
    stochastic = True
    params_spec = {
        "background": Param(None, (str, np.ndarray), "background images: a folder or an array",
                            nullable=True),
        "background_size": Param(None, int, "use the first N background images (sorted by id); None = all",
                                  nullable=True, **above(0)),
        "samples": Param(5, int, "samples per background image", **at_least(1)),
        "noise": Param(0.0, float, "σ of Gaussian input noise, [0,1] units",
                       **at_least(0)),
        "internal_batch_size": _internal_batch,
    }

    def _setup(self) -> None:
        value = self.params["background"]
        if isinstance(value, (str, os.PathLike)):
            self.params["background"] = str(Path(value).resolve())
        self._background = load_background(
            value, self.backbone.input_size, self.params["background_size"], self.name
        )
        self._compile_seeded()

    def method_params(self) -> dict[str, Any]:
        params = super().method_params()
        params["background"] = _background_descriptor(params["background"])
        return params

    @property
    def background(self) -> np.ndarray:
        return self._background

    def _core(self, x: tf.Tensor, t: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
        bg = tf.constant(self._background)
        samples = self.params["samples"]
        per_image = samples * len(self._background)
        sigma = self.params["noise"] * 255.0
        alphas = rows_uniform(seeds, _SALT_ALPHA, (per_image,))  # (N, S)
        shape = x.shape[1:]

        def rows(img: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            b = tf.gather(bg, k // samples)
            xi = tf.gather(x, img)
            if sigma > 0:
                xi = xi + sigma * rows_normal(tf.gather(seeds, img), _SALT_NOISE + k, shape)
            a = tf.reshape(tf.gather_nd(alphas, tf.stack([img, k], axis=1)), (-1, 1, 1, 1))
            delta = xi - b
            return b + a * delta, delta / per_image

        return accumulate_gradients(self._logits, x, t, per_image,
                                    self.params["internal_batch_size"], rows)
