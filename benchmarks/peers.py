"""tfxai side by side with its peer libraries, in one process (issue 18, item 5).

Every row times tfxai and one peer on the same model, the same batch of real images and the same
targets (the predicted classes), interleaved: after one warm-up (tracing) call of each, the two
alternate ``--repeats`` times and the medians are kept, next to a batched forward and
forward+backward pass of the model (the compute floor of DESIGN.md, Conventions), so a change of
machine load affects them alike. Each row prints the seconds per image of tfxai and of the peer,
``ratio = peer / tfxai`` (≥ 1: tfxai is faster), ``peer/floor`` (how far the peer is above its
own compute floor) and an agreement check, so that a fast wrong answer cannot win:

* maps: the median over images of the Pearson correlation (and Spearman's ρ) of the two maps,
  both reduced the same way; for a stochastic method (SmoothGrad, expected gradients) the
  reference is tfxai against itself with another seed, since two samplers never agree better;
* metrics: the largest relative difference of the values on the same perturbations where the
  definitions match (the peer is handed tfxai's perturbations, or the metric is deterministic).

``ok`` means agreement, ``POOR`` a disagreement to look into, ``n/a`` a pair whose definitions
differ (said in the note) or a peer metric tfxai does not have (its time is still printed).

Both sides explain the same function: tfxai's backbone (RGB 0..255 → logits) and, for the peers, a
flat Keras model built from it with the preprocessing as its first layer, so the peers take the
same 0..255 images and return the same logits (checked at start). Target scores are logits on both
sides unless the note says otherwise. The metric rows score the same explanation on both sides,
tfxai's saliency (Xplique) or Grad-CAM (Quantus: a one-channel map, which Quantus handles alike in
channel-first and channel-last layout), re-run by both on perturbed inputs where the metric needs
it, so they time the metric alone.

Peers: Xplique 2, Quantus, tf-keras-vis, shap (GradientExplainer) and lime (``explain_instance``).
A peer that is not installed, or fails on this stack, gives a row ``not run: <reason>``.
Install them with the ``peers`` extra (Xplique 2.0 caps TensorFlow at 2.20).

Usage::

    python benchmarks/peers.py                                   # efficientnet_lite0, 4 images
    python benchmarks/peers.py --only xplique.saliency,lime --repeats 5
    python benchmarks/peers.py --model efficientnetb0 --json results/peers.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # retracing notices of the peers' (and tfxai's) tf.functions

import tfxai  # noqa: E402
from tfxai.backend import keras  # noqa: E402

DEFAULT_IMAGES = "/work/shared/data/imagenet-val-15"

# the shared settings of both sides (one place, quoted in the notes)
IG_STEPS = 16          # tfxai trapezoid over 16 intervals = 17 path points = Xplique steps=17
SG_SAMPLES = 8
SG_SIGMA = 0.15        # [0, 1] units: σ·255 on 0..255 images
SENS_SAMPLES = 20      # perturbations of the sensitivity / stability metrics
SENS_RADIUS = 0.02     # [0, 1] units
INF_SAMPLES = 20       # forward passes per image of the infidelity / mu-fidelity rows
CURVE_STEPS = 20       # deletion / insertion
BLUR_SIGMA = 5.0       # insertion canvas
LIME_SAMPLES = 200
SHAP_BG = 8            # background images (other images of the folder)
SHAP_PER_BG = 4        # samples per background image: shap nsamples = SHAP_BG·SHAP_PER_BG
OCC_PATCH, OCC_STRIDE = 32, 16
HEAVY_IMAGES = 2       # lime and occlusion (hundreds of forward passes per image): first images


# --------------------------------------------------------------------------------------- context


@dataclass
class Ctx:
    """What every row shares: the backbone, the peers' model, the batch and its targets."""

    bb: Any
    raw_model: Any          # keras.Model: RGB 0..255 → logits, flat (layer names reachable)
    conv_layer: str         # the Grad-CAM layer's name in raw_model
    x: np.ndarray           # (N, H, W, 3) float32 0..255
    t: np.ndarray           # (N,) int32 targets (predicted classes)
    seeds: np.ndarray       # (N,) the CLI's per-image seeds
    background: np.ndarray  # (SHAP_BG, H, W, 3) other images of the folder
    ids: list[str]

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def onehot(self) -> np.ndarray:
        return np.eye(self.bb.num_classes, dtype=np.float32)[self.t]

    def head(self, k: int) -> Ctx:
        """The first ``k`` images of the batch (the rows that cost hundreds of passes)."""
        k = max(1, min(k, self.n))
        return Ctx(self.bb, self.raw_model, self.conv_layer, self.x[:k], self.t[:k],
                   self.seeds[:k], self.background, self.ids[:k])


def raw_logit_model(bb: Any) -> tuple[Any, str]:
    """A flat Keras model RGB 0..255 → logits computing ``bb.logits`` (the preprocessing as a
    first layer), and the name of ``bb``'s Grad-CAM layer in it."""
    leaf = bb.last_conv_layer.split("/")[-1]
    probe = np.zeros((1, *bb.input_shape), np.float32)
    if np.allclose(np.asarray(bb.preprocess(probe + 77.0)), probe + 77.0):
        model = bb.logit_model  # the preprocessing is inside the model already
    else:
        inp = keras.Input(bb.input_shape, name="rgb_0_255")
        pre = keras.layers.Lambda(bb.preprocess, name="preprocess")(inp)
        nested = keras.Model(inp, bb.logit_model(pre), name=f"{bb.name}_raw")
        model = tfxai.load_model(nested, output="logits", name=f"{bb.name}_raw").logit_model
    model.get_layer(leaf)  # reachable by name (Xplique, tf-keras-vis)
    return model, leaf


def make_ctx(model: str, images: str, batch: int) -> Ctx:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weights = "imagenet" if model.startswith("efficientnet_lite") else "none"
        bb = tfxai.load_model(model, weights=weights)
    data = tfxai.load_images(images, bb.input_size)
    if len(data.images) < batch + 1:
        raise SystemExit(f"{images}: {len(data.images)} images, need at least {batch + 1}")
    x = data.images[:batch].astype(np.float32)
    t = bb.predict(x).argmax(axis=1).astype(np.int32)
    raw_model, layer = raw_logit_model(bb)
    diff = np.abs(np.asarray(raw_model(x)) - bb.predict_logits(x)).max()
    if not diff < 1e-3:
        raise SystemExit(f"the peers' model differs from tfxai's logits by {diff}")
    bg = data.images[batch: batch + SHAP_BG].astype(np.float32)
    return Ctx(bb, raw_model, layer, x, t, data.seeds[:batch], bg, data.ids[:batch])


# --------------------------------------------------------------------------------------- agreement


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a.ravel().astype(np.float64) - a.mean()
    b = b.ravel().astype(np.float64) - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata

    return _pearson(rankdata(a.ravel()), rankdata(b.ravel()))


def map_agreement(ours: np.ndarray, peer: np.ndarray, ref: np.ndarray | None = None,
                  threshold: float = 0.9) -> tuple[str, str]:
    """Median per-image Pearson r (and Spearman ρ) of two (N, H, W) maps. Without ``ref`` the
    pair agrees when r ≥ ``threshold``; with ``ref`` (tfxai with another seed: the agreement two
    samplers can reach) when r ≥ min(threshold, r_ref − 0.1)."""
    ours, peer = np.asarray(ours, np.float64), np.asarray(peer, np.float64)
    if ours.shape != peer.shape:
        return f"shapes {ours.shape} vs {peer.shape}", "POOR"
    r = statistics.median(_pearson(a, b) for a, b in zip(ours, peer, strict=True))
    rho = statistics.median(_spearman(a, b) for a, b in zip(ours, peer, strict=True))
    text = f"r={r:.3f} rho={rho:.3f}"
    need = threshold
    if ref is not None:
        r_ref = statistics.median(_pearson(a, b) for a, b in zip(ours, ref, strict=True))
        text += f" (tfxai vs tfxai, other seed: r={r_ref:.3f})"
        need = min(threshold, r_ref - 0.1)
    return text, "ok" if np.isfinite(r) and r >= need else "POOR"


def value_agreement(ours: Any, peer: Any, rtol: float = 0.01) -> tuple[str, str]:
    """Largest relative difference of two sets of metric values (same perturbations)."""
    a, b = np.atleast_1d(np.asarray(ours, np.float64)), np.atleast_1d(np.asarray(peer, np.float64))
    if a.shape != b.shape:
        return f"shapes {a.shape} vs {b.shape}", "POOR"
    rel = np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-12)
    worst = float(np.nanmax(rel)) if rel.size else float("nan")
    shown = ", ".join(f"{v:.4g}" for v in a[:2]) + (" …" if a.size > 2 else "")
    return (f"max rel diff {worst:.1e} (tfxai {shown})",
            "ok" if np.isfinite(worst) and worst <= rtol else "POOR")


def max_abs(raw: Any) -> np.ndarray:
    """(N, H, W) map: max over channels of |raw| (saliency's convention)."""
    a = np.asarray(raw, np.float64)
    return np.abs(a).max(axis=-1) if a.ndim == 4 else np.abs(a)


def channel_sum(raw: Any) -> np.ndarray:
    a = np.asarray(raw, np.float64)
    return a.sum(axis=-1) if a.ndim == 4 else a


def squeeze_map(raw: Any) -> np.ndarray:
    a = np.asarray(raw, np.float64)
    return a[..., 0] if a.ndim == 4 and a.shape[-1] == 1 else a


# --------------------------------------------------------------------------------------- rows


@dataclass
class Pair:
    """One row's two sides: callables returning their outputs, and how to compare them."""

    ours: Callable[[], Any]
    peer: Callable[[], Any]
    agree: Callable[[Any, Any], tuple[str, str]] | None
    passes: tuple[float, float]  # (forward, backward) passes of the work, in batches of N
    note: str = ""
    n: int | None = None  # images of the work, when not the whole batch


@dataclass
class Row:
    key: str
    peer: str         # the peer's name, as printed
    package: str      # the distribution to report the version of
    build: Callable[[Ctx], Pair]


def _att(ctx: Ctx, method: str, **params: Any) -> Any:
    return tfxai.get_attributer(method, ctx.bb, batch_size=ctx.n, **params)


def _attribute(att: Any, ctx: Ctx, seeds: np.ndarray | None = None) -> Callable[[], np.ndarray]:
    s = ctx.seeds if seeds is None else seeds
    return lambda: np.asarray(att.attribute(ctx.x, ctx.t, seeds=s))


def _other_seed(att: Any, ctx: Ctx) -> np.ndarray:
    return np.asarray(att.attribute(ctx.x, ctx.t, seeds=ctx.seeds + 7919))


# ---------------------------------------------------------------- Xplique


def _xq_saliency(ctx: Ctx) -> Pair:
    from xplique.attributions import Saliency

    ex = Saliency(ctx.raw_model, batch_size=ctx.n, reducer="max")
    att = _att(ctx, "saliency")
    return Pair(lambda: max_abs(_attribute(att, ctx)()),
                lambda: squeeze_map(ex.explain(ctx.x, ctx.onehot)),
                map_agreement, (1, 1), "max |grad| over channels")


def _xq_cam(cls_name: str, method: str) -> Callable[[Ctx], Pair]:
    def build(ctx: Ctx) -> Pair:
        import xplique.attributions as xa

        ex = getattr(xa, cls_name)(ctx.raw_model, batch_size=ctx.n, conv_layer=ctx.conv_layer)
        att = _att(ctx, method)
        return Pair(lambda: squeeze_map(_attribute(att, ctx)()),
                    lambda: squeeze_map(ex.explain(ctx.x, ctx.onehot)),
                    map_agreement, (1, 1),
                    f"layer {ctx.conv_layer}; floor counts a full backward pass")
    return build


def _xq_ig(ctx: Ctx) -> Pair:
    from xplique.attributions import IntegratedGradients

    ex = IntegratedGradients(ctx.raw_model, batch_size=32, reducer=None, steps=IG_STEPS + 1,
                             baseline_value=0.0)
    att = _att(ctx, "integrated_gradients", steps=IG_STEPS, rule="trapezoid", baseline="black")
    return Pair(lambda: channel_sum(_attribute(att, ctx)()),
                lambda: channel_sum(ex.explain(ctx.x, ctx.onehot)),
                map_agreement, (IG_STEPS + 1, IG_STEPS + 1),
                f"trapezoid, {IG_STEPS + 1} points, black baseline; map: channel sum; "
                "gradient batch 16 (tfxai default) vs 32 (Xplique default)")


def _xq_smoothgrad(ctx: Ctx) -> Pair:
    from xplique.attributions import SmoothGrad

    ex = SmoothGrad(ctx.raw_model, batch_size=ctx.n * SG_SAMPLES, reducer=None,
                    nb_samples=SG_SAMPLES, noise=SG_SIGMA * 255.0)
    att = _att(ctx, "saliency+smoothgrad", n=SG_SAMPLES, sigma=SG_SIGMA)
    ref = max_abs(_other_seed(att, ctx))
    return Pair(lambda: max_abs(_attribute(att, ctx)()),
                lambda: max_abs(ex.explain(ctx.x, ctx.onehot)),
                lambda a, b: map_agreement(a, b, ref), (SG_SAMPLES, SG_SAMPLES),
                f"n={SG_SAMPLES}, sigma={SG_SIGMA}*255 on both; mean gradient, then max |.| "
                "over channels")


def _xq_occlusion(ctx: Ctx) -> Pair:
    from xplique.attributions import Occlusion

    ctx = ctx.head(HEAVY_IMAGES)
    ex = Occlusion(ctx.raw_model, batch_size=64, patch_size=OCC_PATCH, patch_stride=OCC_STRIDE,
                   occlusion_value=0.0)
    att = _att(ctx, "occlusion", patch=OCC_PATCH, stride=OCC_STRIDE, fill="zero", score="logit",
               model_batch_size=64)
    h = ctx.bb.input_size[0]
    n_pos = ((h - OCC_PATCH) // OCC_STRIDE + 1) ** 2
    return Pair(lambda: channel_sum(_attribute(att, ctx)()),
                lambda: channel_sum(ex.explain(ctx.x, ctx.onehot)),
                map_agreement, (n_pos + 1, 0),
                f"patch {OCC_PATCH}, stride {OCC_STRIDE}, fill 0, logit drop; {n_pos} patches; "
                "Xplique sums the drops over the covering patches, tfxai averages them; "
                f"first {ctx.n} images", n=ctx.n)


def _saliency_inputs(ctx: Ctx, method: str = "saliency") -> tuple[Any, np.ndarray, np.ndarray]:
    """The explanation of the metric rows: tfxai's attributer (default batch size, as a metric
    re-runs it on many perturbed images), its raw attributions and (N, H, W) float32 maps."""
    att = tfxai.get_attributer(method, ctx.bb)
    raw = np.asarray(att.attribute(ctx.x, ctx.t, seeds=ctx.seeds))
    return att, raw, max_abs(raw).astype(np.float32)


def _xq_curve(insert: bool) -> Callable[[Ctx], Pair]:
    def build(ctx: Ctx) -> Pair:
        from scipy import ndimage
        from xplique.metrics import Deletion, Insertion

        att, raw, maps = _saliency_inputs(ctx)
        name = "insertion" if insert else "deletion"
        params = {"steps": CURVE_STEPS, "batch_size": 64}
        if insert:
            params["blur_sigma"] = BLUR_SIGMA
        metric = tfxai.get_metric(name, **params)

        def blurred(inputs: Any) -> np.ndarray:  # a plain function: Xplique checks isfunction
            return ndimage.gaussian_filter(np.asarray(inputs, np.float32),
                                           sigma=(0, BLUR_SIGMA, BLUR_SIGMA, 0))

        def peer() -> float:
            cls = Insertion if insert else Deletion
            m = cls(ctx.raw_model, ctx.x, ctx.onehot, batch_size=64, steps=CURVE_STEPS,
                    baseline_mode=blurred if insert else 0.0, activation="softmax")
            return m.evaluate(maps)

        def ours() -> float:
            v = metric.score(ctx.bb, att, ctx.x, ctx.t, attributions=raw, seeds=ctx.seeds)
            return float(np.mean(v))

        canvas = f"into a sigma={BLUR_SIGMA:g} px blur" if insert else "to 0"
        return Pair(ours, peer, lambda a, b: value_agreement(a, b, 0.01),
                    (CURVE_STEPS + 1, 0),
                    f"{CURVE_STEPS} steps, pixels {canvas}, target probability, saliency map; "
                    "Xplique reports the batch mean")
    return build


def _xq_mufidelity(ctx: Ctx) -> Pair:
    from xplique.metrics import MuFidelity

    _, _, maps = _saliency_inputs(ctx)

    def peer() -> float:
        m = MuFidelity(ctx.raw_model, ctx.x, ctx.onehot, batch_size=64, grid_size=9,
                       subset_percent=0.2, baseline_mode=0.0, nb_samples=INF_SAMPLES)
        return m.evaluate(maps)

    return Pair(None, peer, None, (INF_SAMPLES + 1, 0),  # type: ignore[arg-type]
                f"tfxai has no mu-fidelity; {INF_SAMPLES} subsets, 9x9 grid, 20 % removed")


def _xq_stability(ctx: Ctx) -> Pair:
    from xplique.metrics import AverageStability

    att, raw, _ = _saliency_inputs(ctx)
    # Xplique draws one set of perturbations for all images; tfxai draws them per image seed, so
    # tfxai gets one seed for every image and Xplique is handed tfxai's perturbations of it
    seeds = np.full(ctx.n, int(ctx.seeds[0]))
    metric = tfxai.get_metric("avg_sensitivity", n_samples=SENS_SAMPLES, radius=SENS_RADIUS)
    deltas = metric.perturbations(int(seeds[0]) + metric.params["seed"], ctx.x.shape[1:])

    def explainer(inputs: Any, targets: Any) -> np.ndarray:
        tt = np.asarray(targets).argmax(axis=-1)
        return np.asarray(att.attribute(np.asarray(inputs, np.float32), tt))

    def peer() -> float:
        m = AverageStability(ctx.raw_model, ctx.x, ctx.onehot, batch_size=64,
                             radius=SENS_RADIUS * 255.0, nb_samples=SENS_SAMPLES)
        m.noisy_masks = tf.constant(deltas)
        return m.evaluate(explainer, base_explanations=raw)

    def ours() -> float:
        out = metric.evaluate(ctx.bb, att, ctx.x, ctx.t, attributions=raw, seeds=seeds)
        return float(np.mean(out.values[""]))

    return Pair(ours, peer, lambda a, b: value_agreement(a, b, 0.01),
                (SENS_SAMPLES, SENS_SAMPLES),
                f"= tfxai avg_sensitivity (absolute), {SENS_SAMPLES} samples, radius "
                f"{SENS_RADIUS}*255, L2; same perturbations; explanation: tfxai saliency")


# ---------------------------------------------------------------- Quantus


def quantus_model(ctx: Ctx) -> Any:
    """The peers' model with a linear ``Activation`` on top: Quantus reads (and swaps) the last
    layer's ``activation``, which tfxai's logit head does not expose."""
    out = keras.layers.Activation("linear", name="logits")(ctx.raw_model.outputs[0])
    return keras.Model(ctx.raw_model.inputs, out, name="peers_quantus")


class _Replay:
    """A Quantus ``perturb_func`` that returns tfxai's perturbations: call k adds δ_k of each
    image (tfxai's ``metric.perturbations(seed_i)[k]``), so both sides see the same inputs."""

    def __init__(self, deltas: np.ndarray) -> None:
        self.deltas = deltas  # (N, n, H, W, 3)
        self.k = 0

    def __call__(self, arr: np.ndarray, indices: Any = None, **kwargs: Any) -> np.ndarray:
        d = self.deltas[:, self.k % self.deltas.shape[1]]
        self.k += 1
        return arr + d.reshape(len(arr), -1)


def _quantus_sensitivity(kind: str) -> Callable[[Ctx], Pair]:
    def build(ctx: Ctx) -> Pair:
        import quantus

        att, raw, _ = _saliency_inputs(ctx, "gradcam")
        name = f"{kind}_sensitivity"
        metric = tfxai.get_metric(name, n_samples=SENS_SAMPLES, radius=SENS_RADIUS)
        s = ctx.seeds + metric.params["seed"]
        # Quantus perturbs its channel-first copy of the batch: replay tfxai's δ in that layout
        deltas = np.stack([metric.perturbations(int(v), ctx.x.shape[1:]) for v in s])
        deltas = np.ascontiguousarray(deltas.transpose(0, 1, 4, 2, 3))

        def explain(model: Any, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
            return np.asarray(att.attribute(np.asarray(inputs, np.float32),
                                            np.asarray(targets).astype(np.int32)))

        cls = quantus.MaxSensitivity if kind == "max" else quantus.AvgSensitivity
        qm = quantus_model(ctx)

        def peer() -> np.ndarray:
            q = cls(nr_samples=SENS_SAMPLES, perturb_func=_Replay(deltas),
                    lower_bound=SENS_RADIUS * 255.0, normalise=False, abs=False,
                    disable_warnings=True, display_progressbar=False)
            return np.asarray(q(model=qm, x_batch=ctx.x, y_batch=ctx.t,
                                a_batch=raw[:, None], explain_func=explain,
                                channel_first=False, softmax=False, batch_size=ctx.n))

        def ours() -> np.ndarray:
            out = metric.evaluate(ctx.bb, att, ctx.x, ctx.t, attributions=raw, seeds=ctx.seeds)
            return out.values["relative"]

        return Pair(ours, peer, lambda a, b: value_agreement(a, b, 0.01),
                    (SENS_SAMPLES, SENS_SAMPLES),
                    f"= tfxai {name} relative, {SENS_SAMPLES} samples, radius {SENS_RADIUS}*255; "
                    "same perturbations (tfxai's, replayed); explanation: tfxai gradcam")
    return build


def _quantus_infidelity(ctx: Ctx) -> Pair:
    import quantus

    att, raw, _ = _saliency_inputs(ctx, "gradcam")
    metric = tfxai.get_metric("infidelity", n_samples=INF_SAMPLES)
    h = ctx.bb.input_size[0]
    patch = h // 2  # 4 patches × 5 repeats = INF_SAMPLES forward passes per image
    reps = INF_SAMPLES // 4
    qm = quantus_model(ctx)

    def peer() -> np.ndarray:
        q = quantus.Infidelity(perturb_patch_sizes=[patch], n_perturb_samples=reps,
                               perturb_baseline="black", disable_warnings=True,
                               display_progressbar=False)
        return np.asarray(q(model=qm, x_batch=ctx.x, y_batch=ctx.t,
                            a_batch=raw[:, None], channel_first=False, softmax=False,
                            batch_size=ctx.n))

    def ours() -> np.ndarray:
        return metric.score(ctx.bb, att, ctx.x, ctx.t, attributions=raw, seeds=ctx.seeds)

    return Pair(ours, peer, None, (INF_SAMPLES + 1, 0),
                f"definitions differ: tfxai Gaussian I (Yeh 2019), Quantus cumulative "
                f"{patch}px patches to black; both {INF_SAMPLES} forward passes per image")


def _quantus_faithcorr(ctx: Ctx) -> Pair:
    import quantus

    _, raw, _ = _saliency_inputs(ctx, "gradcam")
    qm = quantus_model(ctx)

    def peer() -> np.ndarray:
        q = quantus.FaithfulnessCorrelation(nr_runs=INF_SAMPLES, subset_size=224,
                                            perturb_baseline="black", disable_warnings=True,
                                            display_progressbar=False)
        return np.asarray(q(model=qm, x_batch=ctx.x, y_batch=ctx.t,
                            a_batch=raw[:, None], channel_first=False, softmax=False,
                            batch_size=ctx.n))

    return Pair(None, peer, None, (INF_SAMPLES + 1, 0),  # type: ignore[arg-type]
                f"tfxai has no faithfulness correlation; {INF_SAMPLES} runs of 224 pixels")


# ---------------------------------------------------------------- tf-keras-vis


def _tkv_cam(cls_name: str, method: str) -> Callable[[Ctx], Pair]:
    def build(ctx: Ctx) -> Pair:
        import tf_keras_vis.gradcam as tg
        import tf_keras_vis.gradcam_plus_plus as tgp
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore

        # tf-keras-vis reads ``layer.output``, which a layer shared by two graphs (the peers'
        # flat model) does not have: it gets the backbone's own Keras model, cloned with its
        # softmax made linear (its documented usage), and the preprocessed batch
        cls = getattr(tgp if cls_name == "GradcamPlusPlus" else tg, cls_name)
        viz = cls(ctx.bb.keras_model, model_modifier=ReplaceToLinear(), clone=True)
        score = CategoricalScore(list(ctx.t))
        att = _att(ctx, method)
        layer = ctx.bb.last_conv_layer

        def peer() -> np.ndarray:
            pre = np.asarray(ctx.bb.preprocess(ctx.x))  # inside the timing, as tfxai's
            return np.asarray(viz(score, pre, penultimate_layer=layer,
                                  seek_penultimate_conv_layer=False, normalize_cam=False))

        return Pair(lambda: squeeze_map(_attribute(att, ctx)()), peer, map_agreement, (1, 1),
                    f"layer {layer}; clone with linear head, preprocessed input; "
                    "floor counts a full backward pass")
    return build


def _tkv_saliency(smooth: bool) -> Callable[[Ctx], Pair]:
    def build(ctx: Ctx) -> Pair:
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.utils.scores import CategoricalScore

        viz = Saliency(ctx.raw_model, clone=False)
        score = CategoricalScore(list(ctx.t))
        kw = {"smooth_samples": SG_SAMPLES, "smooth_noise": SG_SIGMA} if smooth else {}
        if smooth:
            att = _att(ctx, "saliency+smoothgrad", n=SG_SAMPLES, sigma=SG_SIGMA)
            ref = max_abs(_other_seed(att, ctx))
            agree = lambda a, b: map_agreement(a, b, ref)  # noqa: E731
            spread = np.median(ctx.x.max(axis=(1, 2, 3)) - ctx.x.min(axis=(1, 2, 3)))
            note = (f"n={SG_SAMPLES}; tf-keras-vis sigma={SG_SIGMA}*(max-min of each image), "
                    f"median max-min {spread:.0f} vs tfxai's 255")
            passes = (SG_SAMPLES, SG_SAMPLES)
        else:
            att = _att(ctx, "saliency")
            agree, note, passes = map_agreement, "max |grad| over channels", (1, 1)

        def peer() -> np.ndarray:
            return np.asarray(viz(score, ctx.x, normalize_map=False, **kw))

        return Pair(lambda: max_abs(_attribute(att, ctx)()), peer, agree, passes, note)
    return build


# ---------------------------------------------------------------- shap, lime


def _shap_gradient(ctx: Ctx) -> Pair:
    import shap

    n_samples = SHAP_BG * SHAP_PER_BG
    att = _att(ctx, "gradient_shap", background=ctx.background, n_samples=SHAP_PER_BG,
               sigma=0.0, alpha_sampling="uniform")
    ref = channel_sum(_other_seed(att, ctx))
    explainer = shap.GradientExplainer(ctx.raw_model, ctx.background, batch_size=32)

    def peer() -> np.ndarray:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The structure of `inputs`")
            vals, _ = explainer.shap_values(ctx.x, nsamples=n_samples,
                                            ranked_outputs=ctx.t[:, None],
                                            output_rank_order="custom", rseed=0)
        return channel_sum(np.asarray(vals)[..., 0] if np.ndim(vals) == 5 else vals[0])

    return Pair(lambda: channel_sum(_attribute(att, ctx)()), peer,
                lambda a, b: map_agreement(a, b, ref), (n_samples, n_samples),
                f"expected gradients, {SHAP_BG} background images (other images of the folder) "
                f"x {SHAP_PER_BG} = {n_samples} samples per image; no smoothing noise; "
                "gradient batch 16 (tfxai) vs 32 (shap)")


def _lime(ctx: Ctx) -> Pair:
    from lime import lime_image

    from tfxai.attribution.superpixel import make_segmenter

    ctx = ctx.head(HEAVY_IMAGES)
    att = _att(ctx, "lime", n_samples=LIME_SAMPLES, model_batch_size=50)
    segmenter = make_segmenter("quickshift")
    logits = tf.function(lambda b: tf.nn.softmax(ctx.raw_model(b, training=False)),
                         reduce_retracing=True)

    def classifier(b: np.ndarray) -> np.ndarray:  # the fastest classifier one can hand lime
        return logits(tf.constant(np.asarray(b, np.float32))).numpy()

    def ours() -> np.ndarray:
        att.attribute(ctx.x, ctx.t, seeds=ctx.seeds)
        return [r.weights for r in att.last_results]

    def peer() -> list[np.ndarray]:
        out = []
        for img, target, seed in zip(ctx.x, ctx.t, ctx.seeds, strict=True):
            ex = lime_image.LimeImageExplainer(random_state=int(seed))
            with contextlib.redirect_stderr(io.StringIO()):  # lime's progress bar
                exp = ex.explain_instance(img, classifier, labels=(int(target),),
                                          top_labels=None, hide_color=0,
                                          num_samples=LIME_SAMPLES, batch_size=50,
                                          segmentation_fn=lambda im: segmenter(im / 255.0))
            w = np.zeros(int(exp.segments.max()) + 1)
            for j, v in exp.local_exp[int(target)]:
                w[j] = v
            out.append(w)
        return out

    def agree(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[str, str]:
        if any(len(u) != len(v) for u, v in zip(a, b, strict=True)):
            return "different superpixel counts", "POOR"
        diff = max(float(np.abs(u - v).max()) for u, v in zip(a, b, strict=True))
        scale = max(float(np.abs(u).max()) for u in a)
        return f"superpixel weights: max |diff| {diff:.1e} (max |w| {scale:.2g})", (
            "ok" if diff <= 1e-3 * max(scale, 1e-12) else "POOR")

    return Pair(ours, peer, agree, (LIME_SAMPLES, 0),
                f"{LIME_SAMPLES} samples, quickshift, hide 0, probability, same seed per "
                f"image, model batch 50; floor omits the segmentation; first {ctx.n} images",
                n=ctx.n)


ROWS: list[Row] = [
    Row("xplique.saliency", "Xplique Saliency", "xplique", _xq_saliency),
    Row("xplique.gradcam", "Xplique GradCAM", "xplique", _xq_cam("GradCAM", "gradcam")),
    Row("xplique.gradcampp", "Xplique GradCAMPP", "xplique", _xq_cam("GradCAMPP", "gradcam_pp")),
    Row("xplique.integrated_gradients", "Xplique IntegratedGradients", "xplique", _xq_ig),
    Row("xplique.smoothgrad", "Xplique SmoothGrad", "xplique", _xq_smoothgrad),
    Row("xplique.occlusion", "Xplique Occlusion", "xplique", _xq_occlusion),
    Row("xplique.deletion", "Xplique Deletion", "xplique", _xq_curve(False)),
    Row("xplique.insertion", "Xplique Insertion", "xplique", _xq_curve(True)),
    Row("xplique.mufidelity", "Xplique MuFidelity", "xplique", _xq_mufidelity),
    Row("xplique.averagestability", "Xplique AverageStability", "xplique", _xq_stability),
    Row("quantus.maxsensitivity", "Quantus MaxSensitivity", "quantus",
        _quantus_sensitivity("max")),
    Row("quantus.avgsensitivity", "Quantus AvgSensitivity", "quantus",
        _quantus_sensitivity("avg")),
    Row("quantus.infidelity", "Quantus Infidelity", "quantus", _quantus_infidelity),
    Row("quantus.faithfulnesscorrelation", "Quantus FaithfulnessCorrelation", "quantus",
        _quantus_faithcorr),
    Row("tkv.gradcam", "tf-keras-vis Gradcam", "tf-keras-vis", _tkv_cam("Gradcam", "gradcam")),
    Row("tkv.gradcampp", "tf-keras-vis GradcamPlusPlus", "tf-keras-vis",
        _tkv_cam("GradcamPlusPlus", "gradcam_pp")),
    Row("tkv.saliency", "tf-keras-vis Saliency", "tf-keras-vis", _tkv_saliency(False)),
    Row("tkv.smoothgrad", "tf-keras-vis SmoothGrad", "tf-keras-vis", _tkv_saliency(True)),
    Row("shap.gradient", "shap GradientExplainer", "shap", _shap_gradient),
    Row("lime", "lime explain_instance", "lime", _lime),
]


# --------------------------------------------------------------------------------------- timing


class Floor:
    """Batched forward and forward+backward (target logit → input) passes of the batch."""

    def __init__(self, ctx: Ctx) -> None:
        bb = ctx.bb
        spec = [tf.TensorSpec((None, *bb.input_shape), tf.float32),
                tf.TensorSpec((None,), tf.int32)]

        def fwd_bwd(x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(x)
                s = bb.target_logits(x, t)
            return tape.gradient(s, x)

        self._fwd = tf.function(bb.target_logits, input_signature=spec, autograph=False)
        self._fwd_bwd = tf.function(fwd_bwd, input_signature=spec, autograph=False)
        self.x, self.t = tf.constant(ctx.x), tf.constant(ctx.t, tf.int32)

    def fwd(self) -> Any:
        return self._fwd(self.x, self.t).numpy()

    def fwd_bwd(self) -> Any:
        return self._fwd_bwd(self.x, self.t).numpy()


def interleaved(fns: list[Callable[[], Any] | None], repeats: int) -> tuple[list[float], list[Any]]:
    """Median seconds of each function (None: skipped) over ``repeats`` rounds in which they
    alternate, after one warm-up call each; also the warm-up outputs."""
    outs = [fn() if fn is not None else None for fn in fns]
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            if fn is None:
                continue
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(ts) if ts else float("nan") for ts in times], outs


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ImportError):
        return f"not installed ({exc.name or exc})"
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg[:160]}"


def run_row(row: Row, ctx: Ctx, floor: Floor, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {"row": row.key, "peer": row.peer, "version": _version(row.package)}
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            pair = row.build(ctx)
            (t_ours, t_peer, t_f, t_fb), (o_ours, o_peer, _, _) = interleaved(
                [pair.ours, pair.peer, floor.fwd, floor.fwd_bwd], repeats)
    except Exception as exc:  # noqa: BLE001 - a failing peer is a row, never a crash
        out.update(status="not run", reason=_reason(exc))
        out["traceback"] = traceback.format_exc(limit=3)
        return out
    n = pair.n or ctx.n
    t_b = max(t_fb - t_f, 0.0)
    floor_s = (pair.passes[0] * t_f + pair.passes[1] * t_b) * n / ctx.n
    if pair.agree is not None and pair.ours is not None:
        try:
            agreement, flag = pair.agree(o_ours, o_peer)
        except Exception as exc:  # noqa: BLE001
            agreement, flag = f"check failed: {_reason(exc)}", "POOR"
    else:
        agreement, flag = "not comparable", "n/a"
    out.update(
        status="run", tfxai_s=t_ours / n, peer_s=t_peer / n, ratio=t_peer / t_ours,
        floor_s=floor_s / n, peer_over_floor=t_peer / floor_s if floor_s > 0 else float("nan"),
        tfxai_over_floor=t_ours / floor_s if floor_s > 0 else float("nan"),
        agreement=agreement, flag=flag, note=pair.note,
    )
    return out


# --------------------------------------------------------------------------------------- output


HEAD = (f"{'peer':<32} {'tfxai s/img':>11} {'peer s/img':>10} {'ratio':>6} {'peer/floor':>10} "
        f"{'agree':<5} check; note")


def format_row(r: dict[str, Any]) -> str:
    if r["status"] != "run":
        return f"{r['peer']:<32} not run: {r['reason']}"
    ours = "-" if np.isnan(r["tfxai_s"]) else f"{r['tfxai_s']:.4f}"
    ratio = "-" if np.isnan(r["ratio"]) else f"{r['ratio']:.2f}"
    return (f"{r['peer']:<32} {ours:>11} {r['peer_s']:>10.4f} {ratio:>6} "
            f"{r['peer_over_floor']:>10.2f} {r['flag']:<5} {r['agreement']}; {r['note']}")


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    ran = [r for r in rows if r["status"] == "run" and np.isfinite(r["ratio"])]
    slower = [r["peer"] for r in ran if r["ratio"] < 1.0]
    above = [r for r in ran if r["peer_over_floor"] >= 2.0]
    under2 = [r["peer"] for r in above if r["ratio"] < 2.0]
    poor = [r["peer"] for r in rows if r.get("flag") == "POOR"]
    lines = [
        f"tfxai never slower (ratio >= 1.0 on every timed pair): "
        f"{'MET' if not slower else 'NOT MET'} ({len(ran) - len(slower)}/{len(ran)}"
        + (f"; slower than {', '.join(slower)}" if slower else "") + ")",
        f">= 2x faster where the peer is >= 2x its floor: "
        f"{'MET' if not under2 else 'NOT MET'} ({len(above) - len(under2)}/{len(above)}"
        + (f"; under 2x: {', '.join(under2)}" if under2 else "") + ")",
        f"agreement: {sum(r.get('flag') == 'ok' for r in rows)} ok, {len(poor)} poor"
        + (f" ({', '.join(poor)})" if poor else "")
        + f", {sum(r.get('flag') == 'n/a' for r in rows)} not comparable, "
        f"{sum(r['status'] != 'run' for r in rows)} not run",
    ]
    return lines


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="efficientnet_lite0",
                    help="efficientnet_lite0 (offline ImageNet weights) or a registered model, "
                         "e.g. efficientnetb0 (weights none)")
    ap.add_argument("--images", default=DEFAULT_IMAGES)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="", help="comma list of row keys (default: every row)")
    ap.add_argument("--json", default="", help="also write the rows and run facts as JSON here")
    args = ap.parse_args(argv)
    wanted = [k for k in args.only.split(",") if k]
    unknown = sorted(set(wanted) - {r.key for r in ROWS})
    if unknown:
        ap.error(f"unknown rows {unknown}; rows: {', '.join(r.key for r in ROWS)}")
    rows = [r for r in ROWS if not wanted or r.key in wanted]

    facts: dict[str, Any] = {
        "python": platform.python_version(), "model": args.model, "batch": args.batch,
        "repeats": args.repeats, "load_before": _load(), "cpus": os.cpu_count(),
        "versions": {p: _version(p) for p in ("tfxai", "tensorflow", "keras", "numpy",
                                               "xplique", "quantus", "tf-keras-vis", "shap",
                                               "lime", "scipy", "scikit-image")},
    }
    print(f"load average before: {facts['load_before']} ({facts['cpus']} CPUs)", flush=True)
    print("versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()), flush=True)
    t0 = time.perf_counter()
    ctx = make_ctx(args.model, args.images, args.batch)
    floor = Floor(ctx)
    print(f"model {ctx.bb.name} (weights {ctx.bb.weights}), {ctx.n} images "
          f"({ctx.ids[0]}..{ctx.ids[-1]}), targets = predicted classes {ctx.t.tolist()}, "
          f"{args.repeats} repeats; Grad-CAM layer {ctx.conv_layer}", flush=True)
    print(HEAD, flush=True)
    results = []
    for row in rows:
        results.append(run_row(row, ctx, floor, args.repeats))
        print(format_row(results[-1]), flush=True)
    facts["load_after"] = _load()
    facts["wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"load average after: {facts['load_after']}; wall {facts['wall_s']} s", flush=True)
    lines = verdict(results)
    for line in lines:
        print(line, flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**facts, "rows": results, "verdict": lines},
                                              indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
