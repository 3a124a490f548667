"""Speed of the attribution methods against their compute floor, and against tf-keras-vis.

For every (model, method) it prints the seconds per image at batch ``--batch`` and the ratio to
the method's compute floor measured in the same run (DESIGN.md, Conventions):

    floor = forward passes × T_fwd + backward passes × T_bwd

where ``T_fwd`` is a batched forward pass of the model (compiled, target logits) and ``T_bwd`` is
(batched forward + backward to the input) − ``T_fwd``, both on the same batch. The passes of a
method are counted in batches of ``--batch`` images (integrated gradients with m steps: m forward
and m backward passes). Target: ratio ≤ 1.3 for every gradient method.

Grad-CAM is also timed side by side with tf-keras-vis ``Gradcam`` on the same model, batch, layer
and (preprocessed) input; target: at least 2× faster.

Timings are medians of ``--repeats`` runs after one warm-up (tracing) call; the floor is
re-measured next to every method, its runs interleaved with the method's, since the machine may
be shared.

LIME (issue 4) is measured after the table on the first model of ``--models`` (``--lime-samples``
samples, 200 by default; 0 skips it) by ``lime_bench.run``: tfxai's LIME against lime's own
``explain_instance`` on the same model, image, segmentation and seed, and against its floor
(segmentation + samples × forward time). Targets: ≥ 2× faster than lime, ≤ 1.3× the floor.

LRP (issue 15) is also timed side by side with innvestigate 2.1.2's ``lrp.epsilon`` in its worker
(:mod:`tfxai.attribution.innvestigate`) on the same model and batch, when the worker can run
(``--no-innvestigate`` skips it); the worker's start (model export, process start, analyzer
build) is reported separately. Target: tfxai's ``lrp_epsilon`` faster than innvestigate on VGG16.

Adding a method: append a :class:`Case` to :data:`CASES` (method id, parameters, and the passes
as a function of the batch size). Methods with a background or other inputs get them from
:func:`case_params`.

Usage::

    python benchmarks/methods.py                       # vgg16 and efficientnetb0, batch 8
    python benchmarks/methods.py --models vgg16 --methods gradcam,deeplift --repeats 5
    python benchmarks/methods.py --csv results/bench_methods.csv
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

import tfxai
from tfxai.backend import keras

Passes = Callable[[dict[str, Any], int], tuple[float, float]]


@dataclass
class Case:
    """One benchmarked method: id, parameters and its (forward, backward) passes in batches."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)
    passes: Passes = lambda p, b: (1.0, 1.0)  # noqa: E731
    note: str = ""
    gradient: bool = True  # counted against the ≤ 1.3 target


def _ig_passes(p: dict[str, Any], b: int) -> tuple[float, float]:
    m = p["steps"] + (1 if p.get("rule") == "trapezoid" else 0)
    return float(m), float(m)


def _shap_passes(p: dict[str, Any], b: int) -> tuple[float, float]:
    k = p["n_samples"] * len(p["background"])
    return float(k), float(k)


def _tunnel_passes(p: dict[str, Any], b: int) -> tuple[float, float]:
    return float(p["n_samples"]), float(p["n_samples"])


def _deeplift_passes(p: dict[str, Any], b: int) -> tuple[float, float]:
    # one pass of the paired batch: b images + 1 shared reference row
    return (b + 1) / b, (b + 1) / b


#: the benchmark table; extend it with new methods
CASES: list[Case] = [
    Case("saliency"),
    Case("guided_backprop"),
    Case("deconvnet"),
    Case("gradcam", note="backward stops at the layer: floor overestimates"),
    Case("gradcam_pp", note="backward stops at the layer: floor overestimates"),
    Case("guided_gradcam", passes=lambda p, b: (2.0, 2.0)),
    Case("integrated_gradients", {"steps": 16, "internal_batch_size": 8}, _ig_passes,
         note="16 steps (time is linear in steps)"),
    Case("deeplift", passes=_deeplift_passes),
    Case("gradient_shap", {"n_samples": 2, "internal_batch_size": 8}, _shap_passes,
         note="4 background images × 2 samples"),
    Case("saliency+smoothgrad", {"n_samples": 4, "internal_batch_size": 8}, _tunnel_passes),
    Case("saliency+vargrad", {"n_samples": 4, "internal_batch_size": 8}, _tunnel_passes),
    # LRP (issue 15): one forward and one modified backward pass. ε needs nothing more; z⁺, αβ,
    # γ and z^B also run convolutions with modified weights inside the backward pass, which the
    # floor does not count.
    Case("lrp_epsilon"),
    Case("lrp_epsilon_plus", note="z+: +1 conv per layer (x2 on signed inputs)"),
    Case("lrp_epsilon_gamma_box", note="γ: +1 conv per layer; +1-2 transposed convs without ReLU"),
    Case("lrp_epsilon_alpha2_beta1", note="α2β1: +2 conv, +1 transposed conv per layer (x2 signed)"),
]


def case_params(case: Case, bb: tfxai.Backbone, rng: np.random.Generator) -> dict[str, Any]:
    """Parameters of a case on a backbone (adds inputs such as a background set)."""
    params = dict(case.params)
    if case.method.startswith("gradient_shap"):
        params["background"] = rng.uniform(0, 255, (4, *bb.input_shape)).astype(np.float32)
    return params


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Floor:
    """Batched forward and forward+backward timings of one backbone on one batch."""

    def __init__(self, bb: tfxai.Backbone, x: np.ndarray, t: np.ndarray) -> None:
        spec = [tf.TensorSpec((None, *bb.input_shape), tf.float32), tf.TensorSpec((None,), tf.int32)]

        def fwd(x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
            return tf.gather(bb.logits(x), t, batch_dims=1)

        def fwd_bwd(x: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(x)
                s = fwd(x, t)
            return tape.gradient(s, x)

        self._fwd = tf.function(fwd, input_signature=spec)
        self._fwd_bwd = tf.function(fwd_bwd, input_signature=spec)
        self.x, self.t = tf.constant(x), tf.constant(t, tf.int32)

    def fwd(self) -> Any:
        return self._fwd(self.x, self.t).numpy()

    def fwd_bwd(self) -> Any:
        return self._fwd_bwd(self.x, self.t).numpy()


def interleaved(fns: list[Callable[[], Any]], repeats: int) -> list[float]:
    """Median time of each function, the functions alternating within every repeat so that a
    change of machine load affects them alike (after one warm-up call each)."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def bench_model(name: str, cases: list[Case], batch: int, repeats: int,
                with_tkv: bool, with_innvestigate: bool = False) -> list[dict[str, Any]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bb = tfxai.load_model(name, weights="none")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, *bb.input_shape)).astype(np.float32)
    t = rng.integers(0, bb.num_classes, batch).astype(np.int32)
    floor = Floor(bb, x, t)
    rows = []
    for case in cases:
        params = case_params(case, bb, rng)
        att = tfxai.get_attributer(case.method, bb, batch_size=batch, **params)
        sec, t_f, t_fb = interleaved(
            [lambda att=att: att.attribute(x, t), floor.fwd, floor.fwd_bwd], repeats
        )
        t_b = max(t_fb - t_f, 0.0)
        n_f, n_b = case.passes({**att.params, **params}, batch)
        floor_s = n_f * t_f + n_b * t_b
        rows.append({
            "model": name, "method": case.method, "batch": batch,
            "s_per_image": sec / batch, "floor_s_per_image": floor_s / batch,
            "ratio": sec / floor_s, "fwd_passes": n_f, "bwd_passes": n_b,
            "t_fwd": t_f, "t_bwd": t_b, "note": case.note, "gradient": case.gradient,
        })
        _print_row(rows[-1])
        if case.method == "gradcam" and with_tkv:
            rows.append(_tkv_row(bb, x, t, att, repeats, name, batch))
            _print_row(rows[-1])
        if case.method == "lrp_epsilon" and with_innvestigate:
            rows += _innvestigate_rows(bb, x, t, att, repeats, name, batch)
        del att
    return rows


def _tkv_row(bb: tfxai.Backbone, x: np.ndarray, t: np.ndarray, att: Any, repeats: int,
             name: str, batch: int) -> dict[str, Any]:
    """tf-keras-vis Gradcam on the same logit model, layer and preprocessed batch."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.scores import CategoricalScore

    viz = Gradcam(bb.logit_model, clone=False)
    score = CategoricalScore(list(t))

    def run() -> Any:
        pre = bb.preprocess(x)
        return viz(score, pre, penultimate_layer=bb.last_conv_layer,
                   seek_penultimate_conv_layer=False)

    ours, sec = interleaved([lambda: att.attribute(x, t), run], repeats)
    return {
        "model": name, "method": "tf-keras-vis Gradcam", "batch": batch,
        "s_per_image": sec / batch, "floor_s_per_image": float("nan"), "ratio": float("nan"),
        "speedup_of_gradcam": sec / ours, "note": f"tfxai gradcam is {sec / ours:.1f}x faster",
        "gradient": False,
    }


def _innvestigate_rows(bb: tfxai.Backbone, x: np.ndarray, t: np.ndarray, att: Any,
                       repeats: int, name: str, batch: int) -> list[dict[str, Any]]:
    """innvestigate's ``lrp.epsilon`` (same ε) in its worker on the same model and batch,
    interleaved with tfxai's ``lrp_epsilon``; the worker's start is its first call minus a
    steady call."""
    from tfxai.attribution import innvestigate as inn

    ok, reason = inn.innvestigate_available()
    if not ok:
        print(f"{name:<15} innvestigate lrp.epsilon  skipped: {reason.splitlines()[0]}", flush=True)
        return []
    eps = att.params["epsilon"]

    def run() -> Any:
        return inn.analyze(bb, "lrp.epsilon", x, t, batch_size=batch, epsilon=eps)

    t0 = time.perf_counter()
    try:
        run()
    except inn.InnvestigateWorkerError as exc:  # e.g. EfficientNet: layers it does not support
        why = str(exc).split("\n")[-1].split(" | ")[-1][:120]
        print(f"{name:<15} innvestigate lrp.epsilon  refused: {why}", flush=True)
        inn.close_workers()
        return [{"model": name, "method": "innvestigate lrp.epsilon", "batch": batch,
                 "s_per_image": float("nan"), "floor_s_per_image": float("nan"),
                 "ratio": float("nan"), "gradient": False, "note": f"refused: {why}"}]
    first = time.perf_counter() - t0
    ours, sec = interleaved([lambda: att.attribute(x, t), run], repeats)
    rows = [{
        "model": name, "method": "innvestigate lrp.epsilon", "batch": batch,
        "s_per_image": sec / batch, "floor_s_per_image": float("nan"), "ratio": float("nan"),
        "speedup_of_lrp_epsilon": sec / ours, "gradient": False,
        "note": f"tfxai lrp_epsilon is {sec / ours:.1f}x faster; worker start "
                f"{max(first - sec, 0.0):.1f} s (once per model)",
    }]
    _print_row(rows[-1])
    inn.close_workers()
    return rows


def _lime_row(model: str, samples: int, repeats: int) -> dict[str, Any]:
    """LIME against lime's explain_instance and against its floor (``lime_bench.run``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import lime_bench

    print(flush=True)
    r = lime_bench.run(model, samples=samples, repeat=repeats)
    lime_bench.report(r)
    return {
        "model": model, "method": "lime", "batch": 50, "s_per_image": r["tfxai_s"],
        "floor_s_per_image": r["floor_s"], "ratio": r["ratio_to_floor"], "gradient": False,
        "note": "; ".join(f"lime ({k}) {v} s, tfxai {r['speedup_vs_lime'][k]}x faster"
                          for k, v in r["lime_s"].items()),
    }


def _print_row(r: dict[str, Any]) -> None:
    ratio = "" if np.isnan(r["ratio"]) else f"{r['ratio']:5.2f}"
    flag = ""
    if r.get("gradient") and not np.isnan(r["ratio"]):
        flag = "ok" if r["ratio"] <= 1.3 else "SLOW"
    print(f"{r['model']:<15} {r['method']:<24} {r['s_per_image']:8.4f} "
          f"{r['floor_s_per_image']:8.4f} {ratio:>6} {flag:<4} {r.get('note', '')}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="vgg16,efficientnetb0")
    ap.add_argument("--methods", default="", help="comma list (default: every case)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-tf-keras-vis", action="store_true")
    ap.add_argument("--no-innvestigate", action="store_true",
                    help="skip innvestigate's lrp.epsilon next to lrp_epsilon")
    ap.add_argument("--csv", default="")
    ap.add_argument("--lime-samples", type=int, default=200,
                    help="LIME against lime's explain_instance on the first model (0: skip)")
    ap.add_argument("--lime-repeats", type=int, default=2)
    args = ap.parse_args(argv)
    wanted = [m for m in args.methods.split(",") if m]
    cases = [c for c in CASES if not wanted or c.method in wanted]
    print(f"{'model':<15} {'method':<24} {'s/img':>8} {'floor':>8} {'ratio':>6}", flush=True)
    rows = []
    for name in args.models.split(","):
        rows += bench_model(name, cases, args.batch, args.repeats, not args.no_tf_keras_vis,
                            not args.no_innvestigate)
        keras.backend.clear_session()
    if args.lime_samples > 0 and (not wanted or "lime" in wanted):
        rows.append(_lime_row(args.models.split(",")[0], args.lime_samples, args.lime_repeats))
    if args.csv:
        keys = sorted({k for r in rows for k in r})
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    slow = [r for r in rows if r.get("gradient") and r["ratio"] > 1.3]
    print(f"{len(slow)} gradient method(s) above the 1.3 ratio target", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
