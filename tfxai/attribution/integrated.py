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

The quadrature rules live in :mod:`tfxai.attribution.quadrature` (fixed rules, Gauss–Legendre) and
:mod:`tfxai.attribution.integrated_adaptive` (IG's adaptive rule); their names are importable from
here too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfxai.attribution.backgrounds import load_background_folder, synthetic_background
from tfxai.attribution.base import Attributer, Param, above, at_least, register
from tfxai.attribution.deeplift import gaussian_blur
from tfxai.attribution.gradients import accumulate_gradients, rows_normal, rows_uniform
from tfxai.attribution.integrated_adaptive import (
    ADAPTIVE_NODES,
    compile_round,
    integrate_adaptive,
)
from tfxai.attribution.quadrature import FIXED_RULES, gauss_legendre, ig_path

__all__ = ["IntegratedGradients", "GradientShap", "make_baseline", "ig_path", "gauss_legendre",
           "BASELINES", "RULES", "ALPHA_SAMPLING", "ADAPTIVE_NODES", "FIXED_RULES"]

BASELINES = ("black", "uniform", "gaussian", "blur", "max_distance")
RULES = (*FIXED_RULES, "adaptive")
ALPHA_SAMPLING = ("uniform", "stratified", "gauss_legendre")

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

    Raw attribution: ``(x − x')·Σ_k w_k ∇F(x' + α_k (x − x'))``, (N, H, W, 3). Completeness:
    ``Σ attribution ≈ F(x) − F(x')``, the error shrinking with ``steps``. Baselines: see
    :func:`make_baseline` (``uniform`` and ``gaussian`` are drawn from the per-image seed).

    Quadrature rules (``rule``; ``steps`` = m):

    * ``riemann_right`` (default): α_k = k/m, w_k = 1/m, as in the paper; error O(1/m).
    * ``trapezoid``: α_k = k/m, k = 0..m, the ends halved (m + 1 gradients); O(1/m²) on a
      smooth path.
    * ``gauss_legendre``: the m-point Gauss–Legendre rule on [0, 1] (:func:`gauss_legendre`), exact
      when the path integrand g(α) = ∇F(x' + α(x − x'))·(x − x') is a polynomial of degree
      ≤ 2m − 1. Its nodes crowd towards both ends of the path; from a black baseline a trained
      network's logit typically rises within the first tenth of the path, where a uniform grid
      puts few points.
    * ``adaptive``: ``steps`` is a budget (the most gradient evaluations per image) and
      ``tolerance`` the target completeness error ε = |Σ IG − (F(x) − F(x'))| / |F(x) − F(x')|.
      The path starts as one segment [0, 1] with the 1-point Gauss–Legendre (midpoint) rule
      (:data:`ADAPTIVE_NODES`). A segment [a, b] has its own completeness residual
      r = Q − (F(b) − F(a)), where Q = Σ_nodes w·g(α) is its share of Σ IG; the residuals of
      all segments add up to the completeness residual of the whole estimate (the F terms
      telescope). Each refinement round splits, in every image not yet done, the segment with
      the largest |r| into halves, each with its own rule, until ε ≤ ``tolerance`` or the next
      split would exceed ``steps``. F at a split point is the target logit at the old segment's
      midpoint node, which the forward half of its gradient pass already gave, so the only
      forward-only passes are F(x') and F(x). The new points of all images of a round are
      evaluated together in one compiled call (chunks of ``internal_batch_size`` rows); a round
      of a single image is a batch of 2, so the rule pays off most on batches of images.
      Cost per image: 1 + 2·splits gradient evaluations and 2 forward passes. Memory: one
      input-sized gradient sum per segment and image (at most (steps + 1)/2, typically 10–20
      at ``tolerance=0.01`` on EfficientNet-Lite0). When |F(x) − F(x')| is ~0 the relative
      error is undefined and the rule spends the whole budget.

    Completeness is necessary, not sufficient: an attribution can sum to F(x) − F(x') and still
    be off pixel by pixel. The adaptive rule refines where a segment's own residual is largest,
    but stops on the total, so residuals of opposite signs may cancel. (Stopping on Σ|r|
    instead never converged within 400 evaluations on EfficientNet-Lite0: its ReLU6 network
    makes g(α) piecewise constant with many small jumps, and the per-segment residuals of such
    a path shrink only slowly.) Measured on EfficientNet-Lite0 and 5 validation photos
    (``benchmarks/ig_rules.py --pixelwise 5``): at ``tolerance=0.01`` the rule stops after a
    median 21 gradients, but its attribution is 0.31 (median relative L2) from the converged one,
    worse than ``riemann_right`` at 24 steps (0.14). Use it when the completeness of the sum is
    what matters, not as a cheaper pixel map; the default stays ``riemann_right``.

    After :meth:`attribute`, :attr:`last_diagnostics` holds, per image: ``gradient_evaluations``
    (gradients taken), ``forward_passes`` (forward-only evaluations) and ``completeness_error``
    (ε of the returned attribution as the adaptive rule measured it; NaN for the fixed rules,
    which never evaluate F(x) and F(x')).
    """

    name = "integrated_gradients"
    summary = ("(x−x')·Σ_k w_k ∇F(x'+α_k(x−x')); rules riemann_right|trapezoid|gauss_legendre|"
               "adaptive; baselines black|uniform|gaussian|blur|max_distance [Sundararajan 2017]")
    stochastic = True  # only the uniform and gaussian baselines draw random numbers
    params_spec = {
        "steps": Param(50, int, "path steps m (rule=adaptive: the most gradient evaluations)",
                       **at_least(1)),
        "baseline": Param("black", str, "baseline x'", choices=BASELINES),
        "rule": Param("riemann_right", str, "quadrature rule", choices=RULES),
        "tolerance": Param(0.01, float, "rule=adaptive: target completeness error, relative to "
                           "|F(x) − F(x')|", check=lambda v: 0 < v < 1,
                           check_doc="must be in (0, 1)"),
        "internal_batch_size": _internal_batch,
    }

    def __init__(self, backbone: Any, **params: Any) -> None:
        if "tolerance" in params and params.get("rule", "riemann_right") != "adaptive":
            raise ValueError(
                f"{self.name}: parameter 'tolerance' applies only to rule='adaptive', "
                f"got rule={params.get('rule', 'riemann_right')!r}"
            )
        self.last_diagnostics: dict[str, np.ndarray] = {}
        self._diagnostics: list[dict[str, np.ndarray]] = []
        super().__init__(backbone, **params)

    def _setup(self) -> None:
        rule = self.params["rule"]
        if rule == "adaptive":
            self._compile_adaptive()
            return
        self._alphas, self._weights = ig_path(self.params["steps"], rule)
        self._compile_seeded()

    def method_params(self) -> dict[str, Any]:
        params = super().method_params()
        if params["rule"] != "adaptive":
            params.pop("tolerance")  # unused: keeps the fixed rules' recorded keys unchanged
        return params

    def baseline(self, x: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
        return make_baseline(x, self.params["baseline"], seeds)

    # ------------------------------------------------------------------ fixed rules
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

    # ------------------------------------------------------------------ diagnostics
    def attribute(self, images: Any, targets: Any = None, seeds: Any = None) -> np.ndarray:
        self._diagnostics = []
        out = super().attribute(images, targets, seeds)
        keys = ("gradient_evaluations", "forward_passes", "completeness_error")
        self.last_diagnostics = {
            k: (np.concatenate([d[k] for d in self._diagnostics]) if self._diagnostics
                else np.zeros(0)) for k in keys
        }
        return out

    def _attribute(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> Any:
        if self.params["rule"] == "adaptive":
            out, diag = self._adaptive(x, targets, seeds)
        else:
            out = super()._attribute(x, targets, seeds)
            n = int(x.shape[0])
            diag = {"gradient_evaluations": np.full(n, len(self._alphas), np.int64),
                    "forward_passes": np.zeros(n, np.int64),
                    "completeness_error": np.full(n, np.nan)}
        self._diagnostics.append(diag)
        return out

    # ------------------------------------------------------------------ adaptive rule
    def _compile_adaptive(self) -> None:
        self._baseline_fn = self.compile(lambda x, t, s: self.baseline(x, s),
                                         extra=[tf.TensorSpec((None,), tf.int64)])
        self._round_fn = compile_round(self._logits, self.params["internal_batch_size"],
                                       self.backbone.input_size)

    def _adaptive(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The adaptive rule (:mod:`tfxai.attribution.integrated_adaptive`): the attribution and
        the diagnostics of a batch."""
        x0 = self._baseline_fn(x, targets, tf.constant(seeds, tf.int64))
        delta = x - x0
        sums, diag = integrate_adaptive(self._round_fn, x0, delta, targets,
                                        self.params["steps"], self.params["tolerance"])
        return delta.numpy() * sums, diag


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
            "(background=DIR) or an array (B, H, W, 3) in 0..255"
        )
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        if not path.exists():
            raise ValueError(f"{method}: parameter 'background': {str(path)!r} does not exist")
        arr, _ = load_background_folder(path, size, limit, owner=method)
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


#: synthetic background images of :class:`GradientShap` by default (× 5 samples = 50 gradients,
#: IG's default count)
SYNTHETIC_BACKGROUND_SIZE = 10


@register
class GradientShap(_SeededGradientMethod):
    """Expected gradients / gradient SHAP [Erion et al. 2021; Lundberg & Lee 2017].

    Raw attribution: the mean over ``samples`` draws for each of the B background images b of
    ``(x̃ − b)·∇F(b + α(x̃ − b))`` with α ∼ U(0, 1) and x̃ = x + ε, ε ∼ N(0, noise²) in [0, 1]
    units (``noise = 0``, the default, gives x̃ = x), as shap's ``GradientExplainer`` with
    ``local_smoothing``. Every draw comes from the per-image seed. In expectation
    ``Σ attribution = F(x) − E_b F(b)``.

    ``background``: a folder of images (loaded through :mod:`tfxai.data`, squash-resized), an
    array (B, H, W, 3) in 0..255, or ``synthetic`` (the default, as :class:`~tfxai.attribution.
    shapley.Shap`'s): ``background_size`` (default :data:`SYNTHETIC_BACKGROUND_SIZE`) seeded smooth
    random colour fields (:func:`tfxai.attribution.shapley.synthetic_background`, seed 0), which
    never overlap the evaluated images. The recorded parameter is ``synthetic`` (with its size),
    the folder path, or the array's shape and hash.

    The α of the S = ``samples`` draws per background image (``alpha_sampling``):

    * ``uniform`` (default): i.i.d. U(0, 1), as shap. Unbiased for the expectation over b and α;
      for one b, the α part is a Monte Carlo estimate of b's IG path integral with O(1/√S)
      error.
    * ``stratified``: α_j = (j + u_j)/S, j = 0..S−1, u_j ∼ U(0, 1): one draw in each of S equal
      strata of [0, 1]. Each α_j is still uniform within its stratum, so the estimator stays
      unbiased for the same expectation, and the α part's error falls to O(S^(−3/2)) on a
      smooth path [e.g. Owen, "Monte Carlo theory, methods and examples", §10.1].
    * ``gauss_legendre``: the S-point Gauss–Legendre nodes and weights in α for every b
      (:func:`gauss_legendre`): the integral over α is computed as integrated gradients with
      that rule, and only b (and the noise) stays random; an estimator of ``E_b IG_b`` with
      Gauss–Legendre's (deterministic, small) quadrature error instead of sampling error.

    The expectation over b is a plain mean over the background set in every case: quadrature
    does not apply to it (the background is a sample of the data distribution, not a path).
    ``alpha_sampling`` is recorded.
    """

    name = "gradient_shap"
    summary = "E_{b,α}[(x−b)·∇F(b+α(x−b))] over a background set; noise option [Erion 2021; Lundberg 2017]"
    stochastic = True
    params_spec = {
        "background": Param("synthetic", (str, np.ndarray), "background images: a folder, an "
                            "array, or synthetic (seeded smooth colour fields)", nullable=True),
        "background_size": Param(None, int, "use the first N background images (sorted by id); "
                                 f"None = all (synthetic: {SYNTHETIC_BACKGROUND_SIZE})",
                                  nullable=True, **above(0)),
        "n_samples": Param(5, int, "samples per background image", **at_least(1)),
        "sigma": Param(0.0, float, "σ of Gaussian input noise, [0,1] units (Captum: stdevs)",
                       **at_least(0)),
        "alpha_sampling": Param("uniform", str, "α per background image: uniform (shap), "
                                "stratified or gauss_legendre", choices=ALPHA_SAMPLING),
        "internal_batch_size": _internal_batch,
    }

    def _setup(self) -> None:
        value = self.params["background"]
        if value is None or (isinstance(value, str) and value == "synthetic"):
            self.params["background"] = "synthetic"
            self.params["background_size"] = (self.params["background_size"]
                                              or SYNTHETIC_BACKGROUND_SIZE)
            value = synthetic_background(self.params["background_size"],
                                         tuple(self.backbone.input_size), 0)
        elif isinstance(value, (str, os.PathLike)):
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
        samples = self.params["n_samples"]
        n_bg = len(self._background)
        per_image = samples * n_bg
        sigma = self.params["sigma"] * 255.0
        sampling = self.params["alpha_sampling"]
        strata = tf.cast(tf.tile(tf.range(samples), [n_bg]), tf.float32)  # j of draw k
        if sampling == "gauss_legendre":
            nodes, weights = gauss_legendre(samples)
            alphas = tf.tile(tf.constant(nodes, tf.float32)[None], [tf.shape(x)[0], n_bg])
            mults = tf.constant(np.tile(weights, n_bg) / n_bg, tf.float32)
        else:
            alphas = rows_uniform(seeds, _SALT_ALPHA, (per_image,))  # (N, S·B)
            if sampling == "stratified":
                alphas = (strata[None] + alphas) / samples
            mults = None
        shape = x.shape[1:]

        def rows(img: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            b = tf.gather(bg, k // samples)
            xi = tf.gather(x, img)
            if sigma > 0:
                xi = xi + sigma * rows_normal(tf.gather(seeds, img), _SALT_NOISE + k, shape)
            a = tf.reshape(tf.gather_nd(alphas, tf.stack([img, k], axis=1)), (-1, 1, 1, 1))
            delta = xi - b
            if mults is None:
                return b + a * delta, delta / per_image
            return b + a * delta, delta * tf.reshape(tf.gather(mults, k), (-1, 1, 1, 1))

        return accumulate_gradients(self._logits, x, t, per_image,
                                    self.params["internal_batch_size"], rows)
