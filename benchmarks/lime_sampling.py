"""LIME: forward passes each sampling option needs for lime's top-5 superpixels at 1000 samples.

Issue 18, item 2. On EfficientNet-Lite0 (ImageNet weights, offline) and the 15 ImageNet validation
photos of ``../shared/data/imagenet-val-15`` (loaded like the CLI, squash-resized), target = the
predicted class, image i explained with seed i (the attributer's default per-image seeds):

* **reference**: tfxai's default LIME at ``n_samples=1000`` (identical to lime's
  ``explain_instance``: quickshift, hide colour 0, kernel width 0.25), and its top-5 set, the
  first 5 superpixels of lime's ranking (|weight|, lime's ``local_exp`` order);
* **options**, each at several budgets: ``sampling`` = ``lime`` (the default, fewer samples),
  ``paired``; and ``stop="topk_stable"`` (block 50, patience 1..4, at most 1000 samples) over
  either sampling;
* **agreement**: the share of images whose top-5 set equals the reference's, against the forward
  passes per image (the samples the model saw; mean over images for the stopping rules).

Counts, not seconds (the machine is shared). It prints, for every option, the fewest passes at
which agreement reaches 90% (the issue's target: ≥ 3× fewer than the reference's 1000), writes
the agreement curve to ``benchmarks/lime_sampling.png`` (matplotlib, Agg) and, with ``--json``,
every figure. ``--ceiling`` adds lime at 1000 samples with another seed (i + 1000): how often
two 1000-sample LIME runs agree with each other, the noise floor of the comparison.

Every option runs through :func:`tfxai.attribution.superpixel.lime_explain`, the function behind
``tfxai.get_attributer("lime", ...)``. The model's outputs are cached by perturbed-image content
(SHA-1 of its bytes), so options that share masks (lime at 300 samples uses the first 300 masks
of lime at 1000) do not pay for them twice; a count reported for an option is always its own
number of samples. The reference of the first ``--check`` images is also computed through the
attributer itself (``Lime.attribute``, no cache) and compared.

Usage::

    python benchmarks/lime_sampling.py [--images DIR] [--limit 15] [--ceiling] [--json out.json]
                                       [--cache /tmp/lime_cache.pkl] [--check 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imagenet-val-15"
PLOT = Path(__file__).resolve().parent / "lime_sampling.png"
REF_SAMPLES = 1000
TOP = 5
BUDGETS = (50, 100, 150, 200, 250, 300, 350, 400, 500, 600, 800, 1000)
PATIENCE = (1, 2, 3, 4, 6, 8)
REPRO_BUDGETS = (250, 500, 1000)
BLOCK = 50
TARGET_SHARE = 0.9


class CachedModel:
    """``backbone.predict`` memoised by image content; counts the passes really made."""

    def __init__(self, bb: Any, cache: dict[bytes, np.ndarray], batch: int = 50) -> None:
        self.bb, self.cache, self.batch = bb, cache, batch
        self.model_passes = 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, np.float32)
        keys = [hashlib.sha1(im.tobytes()).digest() for im in images]
        todo = [j for j, k in enumerate(keys) if k not in self.cache]
        if todo:
            probs = self.bb.predict(images[todo], batch_size=self.batch)
            for j, p in zip(todo, probs, strict=True):
                self.cache[keys[j]] = p.astype(np.float32)
            self.model_passes += len(todo)
        return np.stack([self.cache[k] for k in keys])


def run(images: Path, limit: int, ceiling: bool, cache_path: Path | None, check: int = 2
        ) -> dict[str, Any]:
    import tfxai
    from tfxai.attribution.superpixel import lime_explain, make_segmenter
    from tfxai.data import discover, load_batch

    bb = tfxai.load_model("efficientnet_lite0")
    batch = load_batch(discover(images, limit=limit), bb.input_size)
    x = batch.images
    ids = [s.image_id for s in batch.samples]
    targets = bb.predict_logits(x).argmax(axis=1)
    seeds = np.arange(len(x))
    cache: dict[bytes, np.ndarray] = {}
    if cache_path and cache_path.exists():
        cache = pickle.loads(cache_path.read_bytes())
    model = CachedModel(bb, cache)
    segment = make_segmenter("quickshift")
    segs = [np.asarray(segment(im / 255.0)) for im in x]

    def explain(i: int, seed: int | None = None, **kw: Any) -> Any:
        return lime_explain(x[i], model, int(targets[i]), int(seeds[i] if seed is None else seed),
                            segmenter=lambda _img, s=segs[i]: s, chunk=100, **kw)

    def save() -> None:
        if cache_path:
            cache_path.write_bytes(pickle.dumps(cache))

    ref = [explain(i, n_samples=REF_SAMPLES) for i in range(len(x))]
    save()
    ref_top = [r.top(TOP) for r in ref]
    print(f"reference: {len(x)} images, superpixels {[len(r.weights) for r in ref]}",
          file=sys.stderr, flush=True)

    def agreement(results: list[Any]) -> float:
        return float(np.mean([r.top(TOP) == t for r, t in zip(results, ref_top, strict=True)]))

    curves: dict[str, list[dict[str, float]]] = {}
    for sampling in ("lime", "paired"):
        pts = []
        for n in BUDGETS:
            res = [explain(i, n_samples=n, sampling=sampling) for i in range(len(x))]
            pts.append({"passes": float(np.mean([r.samples for r in res])),
                        "agreement": agreement(res), "setting": f"n_samples={n}"})
            print(f"  {sampling:8s} {n:5d} samples: agreement {pts[-1]['agreement']:.2f}  "
                  f"(model passes so far {model.model_passes})", file=sys.stderr, flush=True)
            save()
        curves[sampling] = pts
        pts = []
        for patience in PATIENCE:
            res = [explain(i, n_samples=REF_SAMPLES, sampling=sampling, stop="topk_stable",
                           stop_k=TOP, block=BLOCK, patience=patience) for i in range(len(x))]
            used = [r.samples for r in res]
            pts.append({"passes": float(np.mean(used)), "agreement": agreement(res),
                        "setting": f"patience={patience}", "max_passes": float(max(used)),
                        "median_passes": float(np.median(used))})
            print(f"  {sampling:8s} topk_stable patience {patience}: mean passes "
                  f"{pts[-1]['passes']:.0f}, agreement {pts[-1]['agreement']:.2f}",
                  file=sys.stderr, flush=True)
            save()
        curves[f"{sampling}+topk_stable"] = pts

    # the reference through the attributer itself, without the cache (first ``check`` images)
    att = tfxai.get_attributer("lime", bb, n_samples=REF_SAMPLES, seed=0)
    att.attribute(x[:check], targets[:check])
    same = all(np.array_equal(a.weights, r.weights) for a, r in zip(att.last_results, ref,
                                                                      strict=False))
    out: dict[str, Any] = {
        "model": "efficientnet_lite0 (imagenet)", "images": ids, "targets": targets.tolist(),
        "reference_samples": REF_SAMPLES, "top": TOP, "block": BLOCK,
        "superpixels": [len(r.weights) for r in ref], "curves": curves,
        "attributer_equals_cached_reference": bool(same), "attributer_checked_images": check,
        "model_passes": model.model_passes,
    }
    out["boundary_gap_se"] = [boundary_gap(r, x[i], model, segs[i], int(targets[i]),
                                           int(seeds[i])) for i, r in enumerate(ref)]
    if ceiling:
        other = [explain(i, seed=int(seeds[i]) + 1000, n_samples=REF_SAMPLES)
                 for i in range(len(x))]
        save()
        out["ceiling"] = agreement(other)
        # each option against itself with another seed: the noise of the option at n passes
        repro: dict[str, list[dict[str, float]]] = {}
        for sampling in ("lime", "paired"):
            repro[sampling] = []
            for n in REPRO_BUDGETS:
                a = [explain(i, n_samples=n, sampling=sampling) for i in range(len(x))]
                b = [explain(i, seed=int(seeds[i]) + 1000, n_samples=n, sampling=sampling)
                     for i in range(len(x))]
                save()
                pairs = list(zip(a, b, strict=True))
                repro[sampling].append({
                    "passes": float(n),
                    "same_top5": float(np.mean([p.top(TOP) == q.top(TOP) for p, q in pairs])),
                    "top5_overlap": float(np.mean([len(p.top(TOP) & q.top(TOP)) / TOP
                                                   for p, q in pairs])),
                    "weight_corr": float(np.mean([np.corrcoef(p.weights, q.weights)[0, 1]
                                                  for p, q in pairs])),
                })
                print(f"  reproducibility {sampling:8s} {n:5d}: {repro[sampling][-1]}",
                      file=sys.stderr, flush=True)
        out["reproducibility"] = repro
    out["needed"] = {k: passes_needed(v) for k, v in curves.items()}
    return out


def boundary_gap(res: Any, image: np.ndarray, model: Any, segments: np.ndarray, target: int,
                 seed: int) -> float:
    """How settled the reference's top-5 is: the gap between the 5th and the 6th |weight| in
    units of their standard errors (heteroscedasticity-robust sandwich of lime's weighted
    Ridge(alpha=1) on the same 1000 rows; model outputs from the cache)."""
    import sklearn.metrics

    from tfxai.attribution.superpixel import lime_rows, perturbed_images

    rs = np.random.RandomState(seed % 2**32)
    rs.randint(0, 1000)
    n = len(res.weights)
    data = lime_rows(rs, REF_SAMPLES, n, "lime").astype(np.float64)
    y = model(perturbed_images(image, np.zeros_like(image), segments, data.astype(int)))[:, target]
    d = sklearn.metrics.pairwise_distances(data, data[:1], metric="cosine").ravel()
    w = np.sqrt(np.exp(-(d**2) / 0.25**2))
    xm, ym = (w[:, None] * data).sum(0) / w.sum(), (w * y).sum() / w.sum()
    xc, yc = data - xm, y - ym
    a_inv = np.linalg.inv(xc.T @ (w[:, None] * xc) + np.eye(n))
    beta = a_inv @ (xc.T @ (w * yc))
    g = xc * (w * (yc - xc @ beta))[:, None]
    se = np.sqrt(np.diag(a_inv @ (g.T @ g) @ a_inv))
    if not np.allclose(beta, res.weights, atol=1e-6):  # the same regression as lime's
        return float("nan")
    order = res.ranking
    j, k = order[TOP - 1], order[TOP]
    return float((abs(beta[j]) - abs(beta[k])) / np.hypot(se[j], se[k]))


def passes_needed(points: list[dict[str, float]]) -> float | None:
    """Fewest passes from which agreement stays ≥ 90% at every larger setting measured."""
    pts = sorted(points, key=lambda p: p["passes"])
    for j, p in enumerate(pts):
        if all(q["agreement"] >= TARGET_SHARE for q in pts[j:]):
            return p["passes"]
    return None


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    styles = {"lime": "o-", "paired": "s-", "lime+topk_stable": "^--",
              "paired+topk_stable": "v--"}
    for name, pts in r["curves"].items():
        pts = sorted(pts, key=lambda p: p["passes"])
        ax.plot([p["passes"] for p in pts], [100 * p["agreement"] for p in pts],
                styles.get(name, "o-"), label=name)
    ax.axhline(100 * TARGET_SHARE, color="grey", lw=0.8, ls=":")
    ax.axvline(REF_SAMPLES / 3, color="grey", lw=0.8, ls=":")
    if "ceiling" in r:
        ax.axhline(100 * r["ceiling"], color="red", lw=0.8, ls="--",
                   label="lime 1000, other seed")
    ax.set_xlabel("forward passes per image (mean)")
    ax.set_ylabel(f"images with the reference top-{TOP} set (%)")
    ax.set_title(f"LIME on {r['model'].split()[0]}, {len(r['images'])} images: "
                 f"agreement with lime at {REF_SAMPLES} samples", fontsize=10)
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(r: dict[str, Any]) -> None:
    n = len(r["images"])
    print(f"LIME on {r['model']}, {n} images, superpixels {min(r['superpixels'])}.."
          f"{max(r['superpixels'])}; reference: lime at {r['reference_samples']} samples "
          f"(attributer == cached run on {r['attributer_checked_images']} images: "
          f"{r['attributer_equals_cached_reference']})")
    print(f"share of images whose top-{r['top']} set equals the reference's")
    for name, pts in r["curves"].items():
        row = "  ".join(f"{p['passes']:.0f}:{p['agreement']:.2f}"
                        for p in sorted(pts, key=lambda p: p["passes"]))
        print(f"  {name:20s} {row}")
    if "ceiling" in r:
        print(f"  lime at {r['reference_samples']} with another seed: {r['ceiling']:.2f}")
    gaps = np.asarray(r["boundary_gap_se"])
    print(f"reference 5th-6th |weight| gap in standard errors: median {np.nanmedian(gaps):.2f}; "
          f"< 1 SE in {int(np.sum(gaps < 1))}/{n} images: {np.round(gaps, 2).tolist()}")
    for name, pts in r.get("reproducibility", {}).items():
        for p in pts:
            print(f"  {name:8s} seed i vs seed i+1000 at {p['passes']:5.0f} passes: same top-5 "
                  f"{p['same_top5']:.2f}, top-5 overlap {p['top5_overlap']:.2f}, "
                  f"weight correlation {p['weight_corr']:.3f}")
    print(f"passes for >= {TARGET_SHARE:.0%} agreement (target: <= {REF_SAMPLES / 3:.0f}, "
          "3x fewer than the reference)")
    for name, v in r["needed"].items():
        verdict = "not reached" if v is None else (
            f"{v:.0f}  ({REF_SAMPLES / v:.1f}x fewer; {'met' if v <= REF_SAMPLES / 3 else 'NOT met'})")
        print(f"  {name:20s} {verdict}")
    print(f"model passes actually made (cache misses): {r['model_passes']}")


def main(argv: list[str] | None = None) -> int:
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, default=DATA)
    ap.add_argument("--limit", type=int, default=15)
    ap.add_argument("--ceiling", action="store_true",
                    help="also lime at 1000 samples with other seeds (15k more passes)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="pickle of model outputs kept between runs (same model and images)")
    ap.add_argument("--check", type=int, default=2,
                    help="images whose reference is recomputed by the attributer, uncached")
    ap.add_argument("--plot", type=Path, default=PLOT)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.images.is_dir():
        print(f"no images: {args.images} is absent", file=sys.stderr)
        return 2
    r = run(args.images, args.limit, args.ceiling, args.cache, args.check)
    report(r)
    plot(r, args.plot)
    print(f"plot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
