"""Faithfulness/robustness metric speed: seconds per image, batched (tfxai) against naive loops.

Same machine, same run, one backbone (EfficientNetB0 by default, ``weights="none"``: random weights
time the same as ImageNet ones), saliency as the explained method, ``--images`` 224×224 photographs
from ``../shared/data/imagenet-val-15`` (synthetic images when absent).

For each metric, tfxai's batched implementation is timed as ``metric.evaluate(...)`` (attributions
given, as in ``tfxai evaluate``). Where the issue asks for a comparison, the same computation is
also done the naive way, one perturbation at a time, and the values are checked to agree:

* ``infidelity`` (n = 50), one row per kind of per-sample loop:

  - *compiled*: one call of the compiled (``tf.function``) target logit per perturbation: the
    fastest per-sample loop one can write;
  - *eager*: one eager call of the Keras model per perturbation (``model(x)``, what a plain
    Python loop does);
  - *Keras predict*: one ``keras.Model.predict`` call per perturbation (the loop of per-sample
    libraries, e.g. Quantus's TensorFlow model wrapper);
* ``max_sensitivity`` (n = 10): *compiled* = one ``attributer.attribute`` call (tfxai's compiled
  saliency) per perturbed image; *eager* = one eager ``tf.GradientTape`` gradient per perturbed
  image;
* ``deletion`` (20 steps): naive = one forward pass per step.

Target (issue 6): batched ≥ 3× faster than the per-sample loops for infidelity and sensitivity.
The header line prints the single-image and batched forward and saliency times: their ratio is the
most that batching can gain over the *compiled* per-sample loop on this hardware.

Usage::

    .venv/bin/python benchmarks/metrics.py [--model efficientnetb0] [--images 2] [--repeat 1] [--skip-slow]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def _images(n: int, size: tuple[int, int]) -> np.ndarray:
    from tfxai.data import discover, load_batch

    folder = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-val-15"
    if folder.is_dir():
        return load_batch(discover(folder, limit=n), size).images
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (n, *size, 3)).astype(np.float32)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# --------------------------------------------------------------------------------------- naive loops


def naive_infidelity(metric, bb, x, t, raw, seeds) -> np.ndarray:
    from tfxai.evaluation.faithfulness import target_logits_fn

    fn = target_logits_fn(bb)
    out = []
    for i in range(len(x)):
        noise = metric.noise(seeds[i], x.shape[1:])
        phi = np.broadcast_to(raw[i] if raw.ndim == 4 else raw[i][..., None], x.shape[1:])
        f_x = float(fn(x[i : i + 1], t[i : i + 1])[0])
        errs = []
        for eps in noise:  # one perturbation at a time
            df = f_x - float(fn((x[i] - eps)[None], t[i : i + 1])[0])
            errs.append((np.sum(eps.astype(np.float64) * phi) - df) ** 2)
        out.append(np.mean(errs))
    return np.asarray(out)


def naive_infidelity_keras(metric, bb, x, t, raw, seeds) -> np.ndarray:
    """As :func:`naive_infidelity` with ``keras.Model.predict`` per perturbation (the usual loop
    of per-sample libraries)."""
    model = bb.logit_model
    out = []
    for i in range(len(x)):
        noise = metric.noise(seeds[i], x.shape[1:])
        phi = np.broadcast_to(raw[i] if raw.ndim == 4 else raw[i][..., None], x.shape[1:])
        f_x = float(model.predict(bb.preprocess(x[i : i + 1]), verbose=0)[0, t[i]])
        errs = []
        for eps in noise:
            df = f_x - float(model.predict(bb.preprocess((x[i] - eps)[None]), verbose=0)[0, t[i]])
            errs.append((np.sum(eps.astype(np.float64) * phi) - df) ** 2)
        out.append(np.mean(errs))
    return np.asarray(out)


def naive_infidelity_eager(metric, bb, x, t, raw, seeds) -> np.ndarray:
    """As :func:`naive_infidelity` with an eager Keras call per perturbation."""
    out = []
    for i in range(len(x)):
        noise = metric.noise(seeds[i], x.shape[1:])
        phi = np.broadcast_to(raw[i] if raw.ndim == 4 else raw[i][..., None], x.shape[1:])
        f_x = float(bb.target_logits(x[i : i + 1], t[i : i + 1])[0])
        errs = []
        for eps in noise:
            df = f_x - float(bb.target_logits((x[i] - eps)[None], t[i : i + 1])[0])
            errs.append((np.sum(eps.astype(np.float64) * phi) - df) ** 2)
        out.append(np.mean(errs))
    return np.asarray(out)


def _eager_gradient(bb, x: np.ndarray, t: int) -> np.ndarray:
    import tensorflow as tf

    xt = tf.constant(x[None], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = bb.target_logits(xt, tf.constant([t], tf.int32))
    return tape.gradient(score, xt).numpy()[0]


def naive_max_sensitivity_eager(metric, bb, x, t, raw, seeds) -> np.ndarray:
    """Max-sensitivity of saliency with one eager gradient per perturbed image."""
    out = []
    for i in range(len(x)):
        deltas = metric.perturbations(seeds[i], x.shape[1:])
        dists = [np.linalg.norm(_eager_gradient(bb, x[i] + d, int(t[i])).astype(np.float64)
                                - raw[i]) for d in deltas]
        out.append(max(dists))
    return np.asarray(out)


def naive_max_sensitivity(metric, att, x, t, raw, seeds) -> np.ndarray:
    out = []
    for i in range(len(x)):
        deltas = metric.perturbations(seeds[i], x.shape[1:])
        dists = [
            np.linalg.norm(att.attribute((x[i] + d)[None], t[i : i + 1], seeds=seeds[i : i + 1])[0]
                           .astype(np.float64) - raw[i])
            for d in deltas  # one perturbed image at a time
        ]
        out.append(max(dists))
    return np.asarray(out)


def naive_deletion(bb, x, t, maps, steps: int) -> np.ndarray:
    from tfxai.evaluation.faithfulness import curve_auc

    h, w = x.shape[1:3]
    out = []
    for i in range(len(x)):
        order = np.argsort(-maps[i].ravel(), kind="stable")
        ys = []
        for k in range(steps + 1):
            img = x[i].copy().reshape(-1, 3)
            img[order[: int(round(k / steps * h * w))]] = 0.0
            ys.append(bb.predict(img.reshape(1, h, w, 3))[0, t[i]])
        out.append(curve_auc(np.linspace(0, 1, steps + 1), np.asarray(ys)))
    return np.asarray(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnetb0")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    ap.add_argument("--skip-slow", action="store_true",
                    help="skip ssim_augmentation, road and model_randomisation")
    args = ap.parse_args(argv)

    warnings.filterwarnings("ignore")
    import tensorflow as tf

    import tfxai

    tf.get_logger().setLevel("ERROR")
    bb = tfxai.load_model(args.model, weights="none")
    att = tfxai.get_attributer("saliency", bb)
    x = _images(args.images, bb.input_size)
    n = len(x)
    t = bb.predict_logits(x).argmax(axis=1)
    seeds = np.arange(n, dtype=np.int64)
    raw = att.attribute(x, t, seeds=seeds)
    # warm-up: trace every compiled function once (not timed)
    bb.predict_logits(x[:1])
    att.attribute(x[:1], t[:1])
    tfxai.get_metric("infidelity", n_samples=2).evaluate(bb, att, x[:1], t[:1], raw[:1])
    def best_of(fn, k: int = 3) -> float:
        return min(_timed(fn)[1] for _ in range(k))

    t_fwd1 = best_of(lambda: bb.predict_logits(x[:1]))
    t_fwd32 = best_of(lambda: bb.predict_logits(np.repeat(x[:1], 32, 0), batch_size=32))
    t_att1 = best_of(lambda: att.attribute(x[:1], t[:1]))
    t_att16 = best_of(lambda: att.attribute(np.repeat(x[:1], 16, 0), np.repeat(t[:1], 16)))
    fwd, bwd = t_fwd32 / 32, t_att16 / 16
    print(f"# {args.model} (weights=none), saliency, {n} image(s) 224×224, best of {args.repeat}; "
          f"forward: 1 image {t_fwd1 * 1e3:.0f} ms, batched {fwd * 1e3:.0f} ms/image; "
          f"saliency: 1 image {t_att1 * 1e3:.0f} ms, batched {bwd * 1e3:.0f} ms/image",
          flush=True)
    print("# floor = (forward passes × batched forward time) + (attributions × batched "
          "saliency time) per image", flush=True)


    def best(fn):
        times, out = [], None
        for _ in range(args.repeat):
            out, secs = _timed(fn)
            times.append(secs)
        return out, min(times)

    def bench(name, metric_name, naive=None, floor=None, **params):
        metric = tfxai.get_metric(metric_name, **params)
        out, secs = best(lambda: metric.evaluate(bb, att, x, t, raw, seeds=seeds))
        v = out.values[next(iter(out.values))]
        txt = f"{name:34s} tfxai {secs / n:7.2f} s/img"
        if floor is not None:
            txt += f"  floor {floor:6.2f} s/img"
        if naive is not None:
            ref, nsecs = best(lambda: naive(metric))
            agree = bool(np.allclose(v, ref, rtol=1e-3, atol=1e-6))
            txt += f"  naive {nsecs / n:7.2f} s/img  naive/tfxai ×{nsecs / secs:.2f}  agree={agree}"
        print(txt, flush=True)

    bench("infidelity (n=50), compiled", "infidelity", floor=51 * fwd,
          naive=lambda m: naive_infidelity(m, bb, x, t, raw, seeds))
    bench("infidelity, eager loop", "infidelity", floor=51 * fwd,
          naive=lambda m: naive_infidelity_eager(m, bb, x, t, raw, seeds))
    bench("infidelity, Keras predict loop", "infidelity", floor=51 * fwd,
          naive=lambda m: naive_infidelity_keras(m, bb, x, t, raw, seeds))
    bench("max_sensitivity (n=10), compiled", "max_sensitivity", floor=10 * bwd,
          naive=lambda m: naive_max_sensitivity(m, att, x, t, raw, seeds))
    bench("max_sensitivity, eager loop", "max_sensitivity", floor=10 * bwd,
          naive=lambda m: naive_max_sensitivity_eager(m, bb, x, t, raw, seeds))
    bench("avg_sensitivity (n=10)", "avg_sensitivity", floor=10 * bwd)
    maps = att.to_map(raw, scale="none")
    bench("deletion (20 steps)", "deletion", floor=21 * fwd,
          naive=lambda m: naive_deletion(bb, x, t, maps, 20))
    bench("insertion (20 steps)", "insertion", floor=21 * fwd)
    if not args.skip_slow:
        bench("road (9 %, morf+lerf)", "road", floor=18 * fwd)
        bench("ssim_augmentation (9 aug.)", "ssim_augmentation", floor=10 * fwd + 9 * bwd)
        bench("model_randomisation (3)", "model_randomisation", floor=3 * bwd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
