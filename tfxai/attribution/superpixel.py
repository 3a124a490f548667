"""Superpixel perturbation methods.

* :class:`Lime`: LIME on superpixels [Ribeiro, Singh & Guestrin 2016, "Why Should I Trust You?
  Explaining the Predictions of Any Classifier"], through the ``lime`` package (0.2.0.1).

lime's :meth:`lime_image.LimeImageExplainer.explain_instance` builds each perturbed image with a
Python loop over samples and segments and calls the classifier in batches of 10; on VGG16 that
loop costs more than the forward passes. :func:`lime_explain` keeps everything that defines the
explanation from lime itself — its segmenter (:class:`lime.wrappers.scikit_image.
SegmentationAlgorithm`), its random draws, its cosine distance and exponential kernel, and
:meth:`lime.lime_base.LimeBase.explain_instance_with_data` (feature selection ``auto``, Ridge
regression) — and replaces only the sample builder: masks × segments → images in one vectorised
step, fed to the model in large batches. For the same seed the superpixel weights are those of
``LimeImageExplainer(random_state=seed).explain_instance(...)``.

With ``sampling="lime"`` and ``stop="none"`` (the defaults), :func:`lime_explain` reproduces
lime's ``explain_instance`` step by step:

1. ``rs = RandomState(seed)``; lime draws ``rs.randint(0, 1000)`` as the segmenter's seed;
2. ``segments = segmenter(image / 255)`` — the segmenter sees the image in [0, 1], the range
   scikit-image expects for float images (what lime does on a uint8 image);
3. ``data = rs.randint(0, 2, num_samples * n).reshape(num_samples, n)``, ``data[0] = 1``;
4. the perturbed images, built ``chunk`` rows at a time by :func:`perturbed_images` and passed
   to ``predict_fn`` (which should batch them on the model);
5. cosine distances of the rows to ``data[0]`` (sklearn), lime's kernel of width
   ``kernel_width``, and ``LimeBase.explain_instance_with_data`` with feature selection
   ``auto`` over all superpixels and lime's ``Ridge(alpha=1)``.

Fewer model calls for the same explanation (issue 18; steps 1, 2 and 5 are unchanged):
``sampling="paired"`` (step 3 becomes :func:`lime_rows` ``(..., "paired")``) follows each of lime's
random masks by its complement (antithetic coalitions), and ``stop="topk_stable"`` evaluates the
masks in blocks and stops once the top-k superpixel set has not changed over successive blocks.
Both keep lime's kernel and regression, and so its estimand; see :func:`lime_explain`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import sklearn.metrics
import tensorflow as tf
from lime.lime_base import LimeBase
from lime.wrappers.scikit_image import SegmentationAlgorithm

from tfxai.attribution.base import Attributer, Param, above, register
from tfxai.primitives import blur

__all__ = ["Lime", "LimeResult", "lime_explain", "lime_kernel", "lime_rows", "make_segmenter",
           "hide_image", "SAMPLINGS", "STOPS"]

SEGMENTATIONS = ("quickshift", "slic", "felzenszwalb")
FILLS = ("zero", "mean", "blur")
SAMPLINGS = ("lime", "paired")
STOPS = ("none", "topk_stable")
_NUM_FEATURES = 100000  # lime's default: keep every superpixel


def lime_kernel(d: np.ndarray, kernel_width: float) -> np.ndarray:
    """lime_image's default similarity kernel, sqrt(exp(−d²/w²))."""
    return np.sqrt(np.exp(-(d**2) / kernel_width**2))


def make_segmenter(
    algorithm: str = "quickshift", random_seed: int | None = None, **params: Any
) -> SegmentationAlgorithm:
    """lime's :class:`SegmentationAlgorithm` with REFERENCE.md defaults for ``algorithm``.

    quickshift: kernel_size=4, max_dist=200, ratio=0.2 (lime's defaults); slic: n_segments=50,
    compactness=10, start_label=0; felzenszwalb: scale=100, sigma=0.5, min_size=50. ``params``
    override them. lime passes ``random_seed`` along, and scikit-image ≥ 0.23 has no such
    argument, so lime's wrapper drops it (quickshift's own tie-breaking uses ``rng=42``).
    """
    defaults: dict[str, dict[str, Any]] = {
        "quickshift": {"kernel_size": 4, "max_dist": 200, "ratio": 0.2},
        "slic": {"n_segments": 50, "compactness": 10.0, "start_label": 0},
        "felzenszwalb": {"scale": 100.0, "sigma": 0.5, "min_size": 50},
    }
    if algorithm not in defaults:
        raise ValueError(f"segmentation must be one of {SEGMENTATIONS}, got {algorithm!r}")
    kw = {**defaults[algorithm], **params}
    if random_seed is not None:
        kw["random_seed"] = random_seed
    return SegmentationAlgorithm(algorithm, **kw)


def hide_image(image: np.ndarray, segments: np.ndarray, hide: str, blur_sigma: float = 10.0
               ) -> np.ndarray:
    """The image a hidden superpixel takes its pixels from (lime's ``fudged_image``).

    ``"zero"``: black (lime ``hide_color=0``); ``"mean"``: each superpixel's mean colour (lime
    ``hide_color=None``; computed as lime does, per segment, so the values match to the bit);
    ``"blur"``: a Gaussian blur of the image with ``blur_sigma`` pixels (not in lime).
    """
    if hide in ("zero", "0"):
        return np.zeros_like(image)
    if hide == "mean":
        fudged = image.copy()
        for s in np.unique(segments):  # one pass per superpixel (tens), as lime does
            sel = segments == s
            px = image[sel]
            fudged[sel] = (np.mean(px[:, 0]), np.mean(px[:, 1]), np.mean(px[:, 2]))
        return fudged
    if hide == "blur":
        return blur(image, blur_sigma)
    raise ValueError(f"fill must be one of {FILLS}, got {hide!r}")


@dataclass
class LimeResult:
    """One image's LIME explanation.

    ``weights[k]`` is the Ridge coefficient of superpixel ``k`` (``segments == k``); ``ranking``
    lists the superpixels by decreasing |weight| (lime's ``local_exp`` order); ``samples`` is the
    number of perturbed images the model saw (forward passes, the unperturbed image included).
    """

    segments: np.ndarray
    weights: np.ndarray
    ranking: np.ndarray
    intercept: float
    score: float
    local_pred: float
    samples: int = 0

    def top(self, k: int) -> frozenset[int]:
        """The set of the ``k`` first superpixels of the ranking."""
        return frozenset(int(j) for j in self.ranking[:k])

    def paint(self, top_k: int | None = None, positive_only: bool = False) -> np.ndarray:
        """(H, W) map painting each kept superpixel with its weight, the others 0.

        ``positive_only`` keeps superpixels with weight > 0; ``top_k`` keeps the first ``k`` of
        the ranking after that filter (Gattas 2020 painted the top 5 positive ones), as lime's
        ``get_image_and_mask(positive_only, num_features=k)`` does.
        """
        order = self.ranking
        if positive_only:
            order = order[self.weights[order] > 0]
        if top_k is not None:
            order = order[:top_k]
        w = np.zeros_like(self.weights)
        w[order] = self.weights[order]
        return w[self.segments].astype(np.float32)


def _relabel(segments: np.ndarray) -> np.ndarray:
    """Labels 0..n−1 (lime assumes them: feature k hides ``segments == k``)."""
    uniq = np.unique(segments)
    if uniq[0] == 0 and uniq[-1] == len(uniq) - 1:
        return segments
    return np.searchsorted(uniq, segments).astype(segments.dtype)


def perturbed_images(
    image: np.ndarray, fudged: np.ndarray, segments: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """Images for binary rows (B, n_segments): superpixel k is hidden where ``rows[:, k] == 0``.

    One vectorised step: ``rows[:, segments]`` is the (B, H, W) keep-mask.
    """
    keep = rows[:, segments].astype(bool)[..., None]
    return np.where(keep, image[None], fudged[None])


def lime_rows(rs: np.random.RandomState, num_samples: int, n_features: int,
              sampling: str = "lime") -> np.ndarray:
    """The (num_samples, n_features) binary masks (1 = superpixel kept), row 0 all ones.

    ``lime``: lime's draw, ``rs.randint(0, 2, num_samples·n).reshape(num_samples, n)`` with row 0
    set to 1. ``paired``: lime's rows z_1, z_2, ... (the same draws, in the same order) each
    followed by its complement 1 − z_i: ``[1, z_1, 1−z_1, z_2, 1−z_2, ...]`` cut at
    ``num_samples`` rows. Every row still has lime's distribution (each superpixel kept with
    probability ½ independently of the others), so lime's weighted regression estimates the same
    weights; a pair's two rows are what a two-level foldover design pairs, which makes the
    superpixel columns orthogonal to every even-order interaction of the unweighted design
    [Box, Hunter & Hunter 2005, §6.7; antithetic pairs in KernelSHAP: Covert & Lee 2021,
    "Improving KernelSHAP", AISTATS].
    """
    if sampling == "lime":
        data = rs.randint(0, 2, num_samples * n_features).reshape((num_samples, n_features))
    elif sampling == "paired":
        base = rs.randint(0, 2, (num_samples // 2 + 1) * n_features).reshape((-1, n_features))
        data = np.empty((2 * (len(base) - 1) + 1, n_features), base.dtype)
        data[1::2] = base[1:]
        data[2::2] = 1 - base[1:]
        data = data[:num_samples]
    else:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    data[0, :] = 1
    return data


def _lime_fit(data: np.ndarray, labels: np.ndarray, target: int, kernel_width: float,
              rs: np.random.RandomState) -> tuple[Any, ...]:
    """lime's distances, kernel and ``explain_instance_with_data`` on the rows so far."""
    distances = sklearn.metrics.pairwise_distances(
        data, data[0].reshape(1, -1), metric="cosine"
    ).ravel()
    base = LimeBase(partial(lime_kernel, kernel_width=float(kernel_width)), random_state=rs)
    return base.explain_instance_with_data(
        data, labels, distances, int(target), _NUM_FEATURES, feature_selection="auto"
    )


def lime_explain(
    image: np.ndarray,
    predict_fn: Callable[[np.ndarray], np.ndarray],
    target: int,
    seed: int,
    *,
    n_samples: int = 1000,
    segmenter: Callable[[np.ndarray], np.ndarray] | None = None,
    segmentation: str = "quickshift",
    fill: str = "zero",
    blur_sigma: float = 10.0,
    kernel_width: float = 0.25,
    chunk: int = 100,
    sampling: str = "lime",
    stop: str = "none",
    stop_k: int = 5,
    block: int = 50,
    patience: int = 2,
) -> LimeResult:
    """LIME for one image; by default identical to lime 0.2.0.1's ``explain_instance``.

    With ``sampling="lime"`` and ``stop="none"`` (the defaults) it reproduces
    ``LimeImageExplainer(kernel_width, random_state=seed).explain_instance(image,
    predict_fn, labels=(target,), top_labels=None, hide_color=..., num_samples=...,
    segmentation_fn=segmenter)`` step by step (the five steps: module docstring).
    ``sampling="paired"`` draws lime's masks each followed by its complement (:func:`lime_rows`);
    ``stop="topk_stable"`` makes ``n_samples`` the maximum and stops once the ``stop_k`` first
    superpixels are stable over ``patience`` + 1 blocks of ``block`` rows (:func:`_fit_until_stable`).
    The result is deterministic for a seed, whatever the batching (``chunk``).

    Args:
        image: (H, W, 3) float RGB in 0..255; ``predict_fn`` receives images in that range.
        predict_fn: (B, H, W, 3) → (B, classes) scores; lime is meant for probabilities.
        target: the class explained.
        seed: seed of the RandomState (reduced modulo 2³²).
        segmenter: a callable ``segments = segmenter(image01)``; default lime's
            :func:`make_segmenter` ``(segmentation)``.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if stop not in STOPS:
        raise ValueError(f"stop must be one of {STOPS}, got {stop!r}")
    rs = np.random.RandomState(int(seed) % 2**32)
    image = np.asarray(image)
    segments = _segments(image, rs, segmenter, segmentation)
    fudged = hide_image(image, segments, fill, blur_sigma)
    data = lime_rows(rs, n_samples, int(np.unique(segments).shape[0]), sampling)
    predict = partial(_predict_rows, predict_fn, image, fudged, segments, data, chunk)
    if stop == "none":
        used = n_samples
        fit = _lime_fit(data, np.concatenate(predict(0, used)), target, kernel_width, rs)
    else:
        used, fit = _fit_until_stable(predict, data, target, kernel_width, rs,
                                      stop_k, block, patience)  # fmt: skip
    return _result(segments, fit, used)


def _segments(image: np.ndarray, rs: np.random.RandomState,
              segmenter: Callable[[np.ndarray], np.ndarray] | None, segmentation: str
              ) -> np.ndarray:
    """Steps 1–2: lime's draw of the segmenter's seed (made even when a ``segmenter`` is given,
    so the masks that follow are lime's), and the superpixels labelled 0..n−1."""
    seg_seed = rs.randint(0, high=1000)  # lime's draw when random_seed is None
    if segmenter is None:
        segmenter = make_segmenter(segmentation, random_seed=seg_seed)
    return _relabel(np.asarray(segmenter(image / 255.0)))


def _predict_rows(predict_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                  fudged: np.ndarray, segments: np.ndarray, data: np.ndarray, chunk: int,
                  lo: int, hi: int) -> list[np.ndarray]:
    """Step 4: the model's outputs for rows ``lo..hi`` of ``data``, ``chunk`` perturbed images
    at a time (:func:`perturbed_images`)."""
    return [np.asarray(predict_fn(perturbed_images(image, fudged, segments,
                                                   data[i : min(i + chunk, hi)])))
            for i in range(lo, hi, chunk)]  # fmt: skip


def _fit_until_stable(predict: Callable[[int, int], list[np.ndarray]], data: np.ndarray,
                      target: int, kernel_width: float, rs: np.random.RandomState,
                      stop_k: int, block: int, patience: int) -> tuple[int, tuple[Any, ...]]:
    """``stop="topk_stable"``: the rows used and lime's fit on them.

    The rows are evaluated in blocks of ``block``; after each block the regression is fitted on
    all rows so far, and the run stops as soon as the set of the ``stop_k`` first superpixels of
    the ranking has been the same at ``patience`` + 1 successive blocks (so at least
    ``(patience + 1)·block`` rows), else at all of ``data``. The returned fit is the one on the
    rows evaluated. With ``sampling="lime"`` the rows are lime's in lime's order, so a run that
    goes to the end gives lime's weights.
    """
    num_samples = len(data)
    parts: list[np.ndarray] = []
    history: list[frozenset[int]] = []
    used = 0
    while used < num_samples:
        end = min(used + block, num_samples)
        parts += predict(used, end)
        used = end
        fit = _lime_fit(data[:used], np.concatenate(parts), target, kernel_width, rs)
        history.append(frozenset(k for k, _ in fit[1][:stop_k]))
        if len(history) > patience and len(set(history[-patience - 1 :])) == 1:
            break
    return used, fit


def _result(segments: np.ndarray, fit: tuple[Any, ...], used: int) -> LimeResult:
    """A :class:`LimeResult` from lime's ``(intercept, local_exp, score, local_pred)``."""
    intercept, exp, score, local_pred = fit
    ranking = np.asarray([k for k, _ in exp], dtype=np.int64)
    weights = np.zeros(int(np.unique(segments).shape[0]), np.float64)
    weights[ranking] = [w for _, w in exp]
    return LimeResult(segments, weights, ranking, float(intercept), float(score),
                      float(np.ravel(local_pred)[0]), int(used))


@register
class Lime(Attributer):
    """LIME on superpixels [Ribeiro et al. 2016] with lime's segmenter, kernel and regression.

    Raw attribution: the (N, H, W) map painting each superpixel with its Ridge weight (optionally
    only the ``top_k`` superpixels, and/or only positive ones). lime explains the **softmax
    probability** of the target class (``backbone.predict``), as lime's ``classifier_fn`` is
    meant to; the perturbed images are RGB 0..255 like the input. Each image's explanation uses
    ``RandomState(seed)`` with its own per-image seed, so it equals
    ``LimeImageExplainer(random_state=seed).explain_instance`` on that image.

    ``fill`` (lime's ``hide_color``): ``zero`` (black), ``mean`` (each superpixel's mean colour,
    lime's ``hide_color=None``) or ``blur`` (Gaussian blur, σ = ``blur_sigma`` px).
    ``n_samples`` is lime's ``num_samples``; both lime names are accepted
    (:mod:`tfxai.vocabulary`).

    Fewer model calls (see :func:`lime_explain`): ``sampling="paired"`` (lime's masks each
    followed by its complement) and ``stop="topk_stable"`` (``n_samples`` becomes the maximum;
    stop once the ``stop_k`` first superpixels have been the same set over ``patience`` + 1
    successive blocks of ``block`` samples). The defaults (``lime``, ``none``) are lime exactly.
    ``stop_k``, ``block`` and ``patience`` are recorded only with ``stop="topk_stable"``.

    After :meth:`attribute`, :attr:`last_results` holds each image's :class:`LimeResult`
    (``samples``: the forward passes it used).
    """

    name = "lime"
    summary = ("superpixel LIME: ridge on random superpixel masks, quickshift segments, "
               "probability target [Ribeiro 2016]")
    stochastic = True
    map_defaults = {"reduce": "sum", "absolute": False, "scale": "max"}
    params_spec = {
        "n_samples": Param(1000, int, "perturbed samples per image (lime: num_samples)",
                           check=lambda v: v >= 2, check_doc="must be >= 2"),
        "segmentation": Param("quickshift", str, "lime segmenter", choices=SEGMENTATIONS),
        "kernel_size": Param(4.0, float, "quickshift kernel_size"),
        "max_dist": Param(200.0, float, "quickshift max_dist"),
        "ratio": Param(0.2, float, "quickshift ratio"),
        "n_segments": Param(50, int, "slic n_segments", **above(0)),
        "compactness": Param(10.0, float, "slic compactness"),
        "fz_scale": Param(100.0, float, "felzenszwalb scale"),
        "fz_sigma": Param(0.5, float, "felzenszwalb sigma"),
        "fz_min_size": Param(50, int, "felzenszwalb min_size"),
        "fill": Param("zero", str, "fill of hidden superpixels: zero, mean (superpixel mean) or "
                      "blur (lime: hide_color 0, None)", choices=FILLS),
        "blur_sigma": Param(10.0, float, "σ in px of fill=blur",
                            **above(0)),
        "kernel_width": Param(0.25, float, "width of lime's exponential kernel",
                              **above(0)),
        "top_k": Param(None, int, "keep only the top-k superpixels (Gattas: 5)", nullable=True,
                       **above(0)),
        "positive_only": Param(False, bool, "keep only superpixels with positive weight"),
        "sampling": Param("lime", str, "masks: lime (i.i.d., as lime) or paired (each mask and "
                          "its complement)", choices=SAMPLINGS),
        "stop": Param("none", str, "none, or topk_stable: stop when the top stop_k set is "
                      "stable over patience+1 blocks (n_samples = the maximum)", choices=STOPS),
        "stop_k": Param(5, int, "stop=topk_stable: size of the watched top set", **above(0)),
        "block": Param(50, int, "stop=topk_stable: samples per block",
                       check=lambda v: v >= 2, check_doc="must be >= 2"),
        "patience": Param(2, int, "stop=topk_stable: successive unchanged blocks to stop",
                          **above(0)),
        "model_batch_size": Param(50, int, "perturbed images per forward batch",
                                  **above(0), hashed=False),
    }
    _STOP_PARAMS = ("stop_k", "block", "patience")

    def __init__(self, backbone: Any, **params: Any) -> None:
        if params.get("stop", "none") != "topk_stable":
            given = [k for k in self._STOP_PARAMS if k in params]
            if given:
                raise ValueError(f"{self.name}: parameter {given[0]!r} applies only to "
                                 f"stop='topk_stable', got stop={params.get('stop', 'none')!r}")
        self.last_results: list[LimeResult] = []
        super().__init__(backbone, **params)

    def method_params(self) -> dict[str, Any]:
        params = super().method_params()
        if params["stop"] != "topk_stable":
            for k in self._STOP_PARAMS:
                params.pop(k)
        return params

    def _setup(self) -> None:
        p = self.params
        seg_params = {
            "quickshift": {"kernel_size": p["kernel_size"], "max_dist": p["max_dist"],
                           "ratio": p["ratio"]},
            "slic": {"n_segments": p["n_segments"], "compactness": p["compactness"]},
            "felzenszwalb": {"scale": p["fz_scale"], "sigma": p["fz_sigma"],
                             "min_size": p["fz_min_size"]},
        }[p["segmentation"]]
        self._seg_params = seg_params
        if p["stop"] == "topk_stable" and p["sampling"] == "paired" and p["block"] % 2:
            raise ValueError(f"{self.name}: parameter 'block' must be even with "
                             f"sampling='paired' (pairs stay together), got {p['block']}")

    def _predict(self, images: np.ndarray) -> np.ndarray:
        return self.backbone.predict(images, batch_size=self.params["model_batch_size"])

    def explain_one(self, image: np.ndarray, target: int, seed: int) -> LimeResult:
        p = self.params
        rs_probe = np.random.RandomState(int(seed) % 2**32)
        segmenter = make_segmenter(p["segmentation"], random_seed=rs_probe.randint(0, 1000),
                                   **self._seg_params)
        return lime_explain(
            image, self._predict, target, seed, n_samples=p["n_samples"],
            segmenter=segmenter, fill=p["fill"], blur_sigma=p["blur_sigma"],
            kernel_width=p["kernel_width"], chunk=max(p["model_batch_size"], 100),
            sampling=p["sampling"], stop=p["stop"], stop_k=p["stop_k"], block=p["block"],
            patience=p["patience"],
        )

    def attribute(self, images: Any, targets: Any = None, seeds: Any = None) -> np.ndarray:
        self.last_results = []
        return super().attribute(images, targets, seeds)

    def _attribute(self, x: tf.Tensor, targets: tf.Tensor, seeds: np.ndarray) -> np.ndarray:
        xs, ts = x.numpy(), targets.numpy()
        results = [self.explain_one(xs[i], int(ts[i]), int(seeds[i])) for i in range(len(xs))]
        self.last_results += results
        return np.stack([r.paint(self.params["top_k"], self.params["positive_only"])
                         for r in results])
