"""Integrated gradients: gradient evaluations each quadrature rule needs for 1% completeness.

Issue 18, item 1. On a real pretrained model (EfficientNet-Lite0, ImageNet weights, offline) and
the 15 ImageNet validation photos of ``../shared/data/imagenet-val-15`` (loaded like the CLI:
``tfxai.data.discover`` + ``load_batch``, squash-resized), target = the predicted class, black
baseline, it reports for every rule of :class:`tfxai.attribution.integrated.IntegratedGradients`
the number of **gradient evaluations** needed to reach a completeness error

    ε = |Σ IG − (F(x) − F(x'))| / |F(x) − F(x')|  ≤  1%

(median over images) and its ratio to ``riemann_right``. Counts, not seconds: they do not depend
on the machine's load.

* Fixed rules (``riemann_right``, ``trapezoid``, ``gauss_legendre``): the step count m is searched
  on a grid (m ∈ {4, 6}·2^j up to ``--max-m`` (512) for the uniform rules; every m up to 8, then
  that grid up to ``--max-gl`` (128), for Gauss–Legendre, whose nodes do not nest). An image needs the smallest grid m from which ε ≤ 1% holds at
  that m and at the next ``--confirm`` (1) grid values, so that a lucky cancellation at one m
  does not count. Evaluations: m (Riemann, Gauss–Legendre), m + 1 (trapezoid). An image that
  does not get there within the grid counts as ∞ (the median is then a lower bound, shown
  as "> max").
* ``adaptive``: one run with ``tolerance=0.01`` and a budget of ``--budget`` (1024) gradients;
  the count is the rule's own ``last_diagnostics["gradient_evaluations"]`` (it also makes
  2 forward-only passes per image, F(x) and F(x'), reported separately).

To search the grid without paying Σ m per image, the fixed rules are scored through the scalar
path integrand g(α) = ∇F(x' + α(x − x'))·(x − x'): Σ IG = Σ_k w_k g(α_k) is exactly what the
attributer sums, and a cache keyed by the node (an exact fraction k/m, or the Gauss–Legendre
(m, k)) shares nodes between grid values (all of 4·2^j's nodes are nodes of 4·2^(j+1), ...).
The count reported for a rule is its own m, never the cache's work. ``--verify`` images are then
re-run through the real attributer at the m found, and its ε is printed next to the cached one.

Also measured (``--shap``): gradient SHAP's completeness over its α draws for the three
``alpha_sampling`` schemes (uniform, stratified, gauss_legendre) with a background of two of
the 15 images (the other 13 are explained): per image, |Σ φ − (F(x) − mean_b F(b))| / |…| at
S samples per background image, median over images (uniform and stratified: median over 3 seeds
too).

Usage::

    python benchmarks/ig_rules.py [--images DIR] [--limit 15] [--budget 1024] [--max-m 512] [--max-gl 128]
                                  [--verify 3] [--shap] [--cache FILE] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imagenet-val-15"
TARGET = 0.01
FIXED = ("riemann_right", "trapezoid", "gauss_legendre")


def uniform_grid(limit: int) -> list[int]:
    """{4, 6}·2^j up to ``limit``: ratio ≤ 1.5 between neighbours, two nested families (the
    nodes k/m of 4·2^j are nodes of 4·2^(j+1)), so the search costs ≈ 1.5·m, not Σ m."""
    return sorted({k << j for k in (4, 6) for j in range(12) if (k << j) <= limit})


def gl_grid(limit: int) -> list[int]:
    """Every m up to 8, then the uniform grid (Gauss–Legendre nodes do not nest)."""
    return sorted({*range(1, 9), *uniform_grid(limit)})


class PathOracle:
    """g(α) and F(α) along each image's path, cached per node; one compiled batched pass."""

    def __init__(self, bb: Any, x: np.ndarray, x0: np.ndarray, targets: np.ndarray,
                 ids: list[str], batch: int = 32, path: Path | None = None) -> None:
        import tensorflow as tf

        self.tf = tf
        self.x0 = tf.constant(x0)
        self.delta = tf.constant(x - x0)
        self.t = tf.constant(targets, tf.int32)
        self.batch = batch
        self.path = path
        stored = pickle.loads(path.read_bytes()) if path and path.exists() else {}
        self.cache: list[dict[Any, float]] = [stored.get(i, {}) for i in ids]
        self.ids = ids
        self.evaluations = 0

        @tf.function(reduce_retracing=True)
        def scalars(img: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
            pts = tf.gather(self.x0, img) + tf.reshape(alpha, (-1, 1, 1, 1)) * tf.gather(
                self.delta, img)
            with tf.GradientTape() as tape:
                tape.watch(pts)
                score = tf.gather(bb.logits(pts), tf.gather(self.t, img), batch_dims=1)
            grad = tape.gradient(score, pts)
            return tf.reduce_sum(grad * tf.gather(self.delta, img), axis=[1, 2, 3])

        self._scalars = scalars

    def need(self, requests: list[tuple[int, Any, float]]) -> None:
        """Evaluate the (image, key, α) not cached yet, all images together."""
        todo = [(i, k, a) for i, k, a in requests if k not in self.cache[i]]
        todo = list({(i, k): (i, k, a) for i, k, a in todo}.values())
        tf = self.tf
        for s in range(0, len(todo), self.batch):
            part = todo[s : s + self.batch]
            g = self._scalars(tf.constant([p[0] for p in part], tf.int32),
                              tf.constant(np.array([p[2] for p in part], np.float32)))
            for (i, k, _), v in zip(part, g.numpy(), strict=True):
                self.cache[i][k] = float(v)
            self.evaluations += len(part)
        if todo and self.path:
            self.path.write_bytes(pickle.dumps(dict(zip(self.ids, self.cache, strict=True))))

    def total(self, i: int, nodes: list[tuple[Any, float, float]]) -> float:
        """Σ w·g over (key, α, w) nodes of image i (evaluated with :meth:`need` first)."""
        return float(sum(np.float32(w) * self.cache[i][k] for k, _, w in nodes))


def rule_nodes(rule: str, m: int) -> list[tuple[Any, float, float]]:
    """(cache key, α as float32 like the attributer, weight) of a fixed rule with m steps."""
    from tfxai.attribution.integrated import ig_path

    alphas, weights = ig_path(m, rule)
    if rule == "gauss_legendre":
        keys: list[Any] = [("gl", m, k) for k in range(m)]
    else:
        start = 0 if rule == "trapezoid" else 1
        keys = [Fraction(k, m) for k in range(start, m + 1)]
    return list(zip(keys, alphas.tolist(), weights.tolist(), strict=True))


def search_fixed(oracle: PathOracle, rule: str, grid: list[int], delta_f: np.ndarray,
                 confirm: int) -> tuple[list[int | None], dict[int, np.ndarray]]:
    """Per image, the smallest grid m from which ε ≤ 1% for ``confirm`` more grid values."""
    n = len(delta_f)
    found: list[int | None] = [None] * n
    run = [0] * n  # consecutive grid values meeting the target
    first: list[int | None] = [None] * n
    errs: dict[int, np.ndarray] = {}
    for m in grid:  # every image at every m: the median error per m is reported too
        live = [i for i in range(n) if found[i] is None]
        nodes = rule_nodes(rule, m)
        oracle.need([(i, k, a) for i in range(n) for k, a, _ in nodes])
        errs[m] = np.array([abs(oracle.total(i, nodes) - delta_f[i]) / abs(delta_f[i])
                            for i in range(n)])
        for i in live:
            if errs[m][i] <= TARGET:
                first[i] = m if run[i] == 0 else first[i]
                run[i] += 1
                if run[i] > confirm:
                    found[i] = first[i]
            else:
                run[i] = 0
        print(f"  {rule:15s} m={m:5d}  images done {sum(f is not None for f in found):2d}/{n}"
              f"  errors {np.round(errs[m], 4).tolist()}"
              f"  oracle gradients so far {oracle.evaluations}", file=sys.stderr, flush=True)
    return found, errs


def evals_of(rule: str, m: int | None) -> float:
    if m is None:
        return float("inf")
    return float(m + 1 if rule == "trapezoid" else m)


def completeness(bb: Any, raw: np.ndarray, delta_f: np.ndarray) -> np.ndarray:
    return np.abs(raw.reshape(len(raw), -1).sum(axis=1) - delta_f) / np.abs(delta_f)


def run(images: Path, limit: int, budget: int, confirm: int, verify: int, max_m: int,
        max_gl: int, cache: Path | None = None) -> dict[str, Any]:
    import tfxai
    from tfxai.data import discover, load_batch

    bb = tfxai.load_model("efficientnet_lite0")
    batch = load_batch(discover(images, limit=limit), bb.input_size)
    x = batch.images
    ids = [s.image_id for s in batch.samples]
    logits = bb.predict_logits(x)
    t = logits.argmax(axis=1).astype(np.int32)
    x0 = np.zeros_like(x)
    idx = np.arange(len(x))
    delta_f = (logits[idx, t] - bb.predict_logits(x0)[idx, t]).astype(np.float64)
    print(f"{len(x)} images, efficientnet_lite0, black baseline; |F(x) − F(x')| from "
          f"{np.abs(delta_f).min():.2f} to {np.abs(delta_f).max():.2f}", file=sys.stderr)

    att = tfxai.get_attributer("integrated_gradients", bb, rule="adaptive", steps=budget,
                               tolerance=TARGET, internal_batch_size=32)
    raw = att.attribute(x, t)
    diag = att.last_diagnostics
    err_adaptive = completeness(bb, raw, delta_f)
    adaptive = [float(g) if e <= TARGET else float("inf")
                for g, e in zip(diag["gradient_evaluations"], err_adaptive, strict=True)]
    print(f"  adaptive: gradient evaluations {diag['gradient_evaluations'].tolist()}",
          file=sys.stderr, flush=True)

    oracle = PathOracle(bb, x, x0, t, ids, path=cache)
    per_image: dict[str, list[float]] = {}
    found_m: dict[str, list[int | None]] = {}
    errors_by_m: dict[str, dict[int, float]] = {}
    for rule in FIXED:
        grid = gl_grid(max_gl) if rule == "gauss_legendre" else uniform_grid(max_m)
        found, errs = search_fixed(oracle, rule, grid, delta_f, confirm)
        found_m[rule] = found
        per_image[rule] = [evals_of(rule, m) for m in found]
        errors_by_m[rule] = {m: float(np.median(e)) for m, e in errs.items()}
    per_image["adaptive"] = adaptive

    checks = []
    for rule in FIXED:
        for i in range(min(verify, len(x))):
            m = found_m[rule][i]
            if m is None:
                continue
            a = tfxai.get_attributer("integrated_gradients", bb, rule=rule, steps=m,
                                     internal_batch_size=32)
            err = float(completeness(bb, a.attribute(x[i : i + 1], t[i : i + 1]),
                                     delta_f[i : i + 1])[0])
            nodes = rule_nodes(rule, m)
            cached = abs(oracle.total(i, nodes) - delta_f[i]) / abs(delta_f[i])
            checks.append({"rule": rule, "image": ids[i], "m": m, "attributer_error": err,
                           "cached_error": cached})

    med = {r: float(np.median(v)) for r, v in per_image.items()}
    return {
        "model": "efficientnet_lite0 (imagenet)", "images": ids, "targets": t.tolist(),
        "delta_f": delta_f.tolist(), "target_error": TARGET, "confirm": confirm,
        "per_image_evaluations": per_image, "median": med,
        "ratio_vs_riemann": {r: med["riemann_right"] / v for r, v in med.items()},
        "adaptive_forward_passes": diag["forward_passes"].tolist(),
        "adaptive_error": err_adaptive.tolist(), "adaptive_budget": budget,
        "verify": checks, "oracle_gradients": oracle.evaluations,
        "max_m": {"riemann_right": max_m, "trapezoid": max_m, "gauss_legendre": max_gl,
                  "adaptive": budget},
        "median_error_by_m": errors_by_m,
        "adaptive_median_error": float(np.median(err_adaptive)),
    }


def run_shap(images: Path, limit: int, samples: list[int], seeds: int) -> dict[str, Any]:
    """Completeness over α of gradient SHAP for each ``alpha_sampling`` (background: 2 images)."""
    import tfxai
    from tfxai.data import discover, load_batch

    bb = tfxai.load_model("efficientnet_lite0")
    batch = load_batch(discover(images, limit=limit), bb.input_size)
    bg, x = batch.images[:2], batch.images[2:]
    t = bb.predict_logits(x).argmax(axis=1).astype(np.int32)
    idx = np.arange(len(x))
    target_sum = (bb.predict_logits(x)[idx, t]
                  - bb.predict_logits(bg)[:, t].mean(axis=0)).astype(np.float64)
    table: dict[str, dict[int, float]] = {}
    for scheme in ("uniform", "stratified", "gauss_legendre"):
        table[scheme] = {}
        for s in samples:
            errs = []
            for seed in range(seeds if scheme != "gauss_legendre" else 1):
                att = tfxai.get_attributer("gradient_shap", bb, background=bg, samples=s,
                                           alpha_sampling=scheme, seed=seed,
                                           internal_batch_size=32)
                errs.append(completeness(bb, att.attribute(x, t), target_sum))
            table[scheme][s] = float(np.median(np.stack(errs)))
            print(f"  gradient_shap {scheme:15s} S={s:3d}  median error {table[scheme][s]:.4f}",
                  file=sys.stderr, flush=True)
    return {"background": [s.image_id for s in batch.samples[:2]], "explained": len(x),
            "samples_per_baseline": samples, "median_error": table}


def report(r: dict[str, Any]) -> None:
    n = len(r["images"])
    print(f"Integrated gradients on {r['model']}, {n} images, black baseline, target = predicted")
    print(f"gradient evaluations for a completeness error <= {r['target_error']:.0%} "
          f"(fixed rules: confirmed at {r['confirm']} more grid steps)")
    print(f"{'rule':16s}{'median':>8s}{'min':>7s}{'max':>7s}{'ratio':>8s}  reached")
    for rule, v in r["per_image_evaluations"].items():
        v = np.asarray(v)
        ok = np.isfinite(v)
        lo, hi = (v[ok].min(), v[ok].max()) if ok.any() else (np.inf, np.inf)
        med = r["median"][rule]
        med_s = f"{med:8.0f}" if np.isfinite(med) else f"{'>' + str(r['max_m'][rule]):>8s}"
        ratio = r["ratio_vs_riemann"][rule]
        ratio_s = f"{ratio:7.1f}x" if np.isfinite(ratio) else "      ? "
        if not np.isfinite(r["median"]["riemann_right"]) and np.isfinite(med):
            ratio_s = f">{r['max_m']['riemann_right'] / med:6.1f}x"
        print(f"{rule:16s}{med_s}{lo:7.0f}{hi:7.0f}{ratio_s}  {ok.sum()}/{n}")
    fw = np.asarray(r["adaptive_forward_passes"])
    print(f"adaptive: + {int(np.median(fw))} forward-only passes per image (F(x), F(x')); "
          f"budget {r['adaptive_budget']}; max error {max(r['adaptive_error']):.4f}")
    med = r["median"]
    best = min((k for k in med if k != "riemann_right"), key=med.get)
    ratio = med["riemann_right"] / med[best]
    bound = "" if np.isfinite(med["riemann_right"]) else " at least"
    if not np.isfinite(ratio):
        ratio = r["max_m"]["riemann_right"] / med[best]
    print(f"target >= 4x fewer than riemann_right: best {best},{bound} {ratio:.1f}x "
          f"({'met' if ratio >= 4 else 'NOT met'})")
    print("median completeness error over the images at m gradient evaluations:")
    ms = sorted({int(m) for e in r["median_error_by_m"].values() for m in e} & {
        8, 16, 32, 64, 128, 256, 512})
    print(f"{'m':>6s}" + "".join(f"{k:>16s}" for k in r["median_error_by_m"]))
    for m in ms:
        print(f"{m:6d}" + "".join(
            f"{e[m]:16.4f}" if m in e else f"{'':16s}"
            for e in ({int(k): v for k, v in d.items()} for d in r["median_error_by_m"].values())))
    print(f"adaptive: median error {r['adaptive_median_error']:.4f} at a median "
          f"{r['median']['adaptive']:.0f} gradient evaluations")
    for c in r["verify"]:
        print(f"  check {c['rule']:15s} {c['image']}  m={c['m']:4d}  attributer ε="
              f"{c['attributer_error']:.5f}  cached ε={c['cached_error']:.5f}")
    if "shap" in r:
        s = r["shap"]
        print(f"gradient SHAP, background {s['background']}, {s['explained']} images: median "
              "completeness error over α")
        print(f"{'S per baseline':16s}" + "".join(f"{k:>16s}" for k in s["median_error"]))
        for n_s in s["samples_per_baseline"]:
            print(f"{n_s:<16d}" + "".join(f"{s['median_error'][k][n_s]:16.4f}"
                                          for k in s["median_error"]))


def run_pixelwise(images: Path, limit: int, budget: int, ms: list[int]) -> dict[str, Any]:
    """Is a 1%-complete attribution close to the converged one, pixel by pixel?

    Completeness is a scalar check: an estimate can sum to F(x) − F(x') while its pixels are
    off. Reference: the trapezoid rule at m = 512 (its completeness error is ~1%, see the table
    above, and it converges pixel-wise as O(1/m²) between the kinks of the path). For the
    adaptive rule (``tolerance=0.01``) and for the fixed rules at each m: the relative L2
    distance ‖A − A_ref‖ / ‖A_ref‖ per image, median over images.
    """
    import tfxai
    from tfxai.data import discover, load_batch

    bb = tfxai.load_model("efficientnet_lite0")
    batch = load_batch(discover(images, limit=limit), bb.input_size)
    x = batch.images.astype(np.float32)
    t = bb.predict_logits(x).argmax(axis=1).astype(np.int32)

    def attribute(**params: Any) -> tuple[np.ndarray, Any]:
        att = tfxai.get_attributer("integrated_gradients", bb, **params)
        return att.attribute(x, t), att

    ref, _ = attribute(steps=512, rule="trapezoid")
    norm = np.linalg.norm(ref.reshape(len(x), -1), axis=1)

    def rel(a: np.ndarray) -> list[float]:
        return (np.linalg.norm((a - ref).reshape(len(x), -1), axis=1) / norm).tolist()

    adaptive, att = attribute(steps=budget, rule="adaptive", tolerance=TARGET)
    out: dict[str, Any] = {
        "images": len(x),
        "adaptive": {"evaluations": att.last_diagnostics["gradient_evaluations"].tolist(),
                     "rel_l2": rel(adaptive)},
        "fixed": {},
    }
    for m in ms:
        for rule in ("riemann_right", "gauss_legendre"):
            out["fixed"].setdefault(rule, {})[m] = rel(attribute(steps=m, rule=rule)[0])
    return out


def report_pixelwise(p: dict[str, Any]) -> None:
    ad = p["adaptive"]
    print(f"\npixel-wise: relative L2 distance to trapezoid m=512, {p['images']} images "
          "(median [max])")
    print(f"adaptive (tolerance 1%)  {np.median(ad['rel_l2']):.3f} [{max(ad['rel_l2']):.3f}] "
          f"at a median {np.median(ad['evaluations']):.0f} gradient evaluations")
    for rule, by_m in p["fixed"].items():
        for m, r in by_m.items():
            print(f"{rule:<16} m={m:<5d}  {np.median(r):.3f} [{max(r):.3f}]")


def main(argv: list[str] | None = None) -> int:
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, default=DATA)
    ap.add_argument("--limit", type=int, default=15)
    ap.add_argument("--budget", type=int, default=1024, help="adaptive rule: most gradients")
    ap.add_argument("--max-m", type=int, default=512, help="largest m searched (uniform rules)")
    ap.add_argument("--max-gl", type=int, default=128,
                    help="largest m searched for Gauss–Legendre (nodes do not nest: Σ m)")
    ap.add_argument("--confirm", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=None,
                    help="pickle of path-integrand values kept between runs")
    ap.add_argument("--verify", type=int, default=3, help="images re-run by the attributer")
    ap.add_argument("--shap", action="store_true", help="also gradient SHAP's alpha_sampling")
    ap.add_argument("--shap-samples", default="2,4,8,16")
    ap.add_argument("--pixelwise", type=int, default=0, metavar="N",
                    help="also compare, on the first N images, each rule's attribution with a "
                    "converged one (trapezoid m=512), pixel by pixel")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.images.is_dir():
        print(f"no images: {args.images} is absent", file=sys.stderr)
        return 2
    r = run(args.images, args.limit, args.budget, args.confirm, args.verify, args.max_m,
            args.max_gl, args.cache)
    if args.shap:
        r["shap"] = run_shap(args.images, args.limit,
                             [int(s) for s in args.shap_samples.split(",")], seeds=3)
    if args.pixelwise:
        r["pixelwise"] = run_pixelwise(args.images, args.pixelwise, args.budget, [24, 64, 128])
    report(r)
    if args.pixelwise:
        report_pixelwise(r["pixelwise"])
    if args.json:
        args.json.write_text(json.dumps(r, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
