"""One ``evaluate`` over several methods and metrics against the sum of its compute floors.

Issue 18, item 3. ``tfxai evaluate`` predicts each image once per model and keeps, per loaded
batch, a memo of the work that does not depend on the attribution (:mod:`tfxai.evaluation.shared`):
infidelity's ``F(x)`` and ``F(x − I)``, and ``ssim_augmentation``'s augmented images and their
prediction gate. Every later method of the batch reuses them. This script measures how close the
whole run then comes to the sum of its floors.

It runs, in this process, on one model (default ``efficientnet_lite0``, offline ImageNet weights)
and the first ``--limit`` photos of ``../shared/data/imagenet-val-15``:

1. ``import tfxai`` (TensorFlow included) and the model load, timed and reported separately;
2. the run itself (``tfxai.run.run_evaluate``, what ``tfxai evaluate`` calls) into a fresh
   folder, its model load subtracted; then the same run with sharing switched off (each metric
   call gets a fresh memo), for the saving;
3. the floors, measured in the same process on the same images (``benchmarks/methods.py``'s
   definition, DESIGN.md Conventions: passes × T_fwd + passes × T_bwd, T measured on batches of
   ``--batch-size``):

   * prediction: one forward pass per image;
   * each method: its passes (``methods.CASES``) per image;
   * infidelity: ``1 + n_samples`` forward passes per image, **once** for all methods
     (they are attribution-independent), plus the attribution-dependent part (Iᵀ Φ for every
     method), timed on its own;
   * ssim_augmentation: ``1 + variants`` gate forward passes per image and the augmentations
     (G'MIC filters, rotations; timed), **once**; plus, per method, the re-attribution of every
     augmented image that passed the gate (the method's floor × the pairs in ``scores.csv``)
     and the SSIM itself (timed).

The ratio wall / Σ floors is the figure of the issue (target ≤ 1.15). The rest of the wall time
is what the pipeline adds: tracing each method's ``tf.function`` s (once per run), per-image
calls, storing attributions (HDF5) and rows (CSV), resume checks.

Usage::

    python benchmarks/shared_work.py [--model efficientnet_lite0] [--limit 8]
        [--methods saliency,gradcam,guided_backprop,integrated_gradients]
        [--metrics infidelity,ssim_augmentation] [--batch-size 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "imagenet-val-15"


def _timed_import() -> float:
    t0 = time.perf_counter()
    import tfxai  # noqa: F401
    import tfxai.run  # noqa: F401

    return time.perf_counter() - t0


def _run(cfg: Any, share: bool) -> tuple[float, float]:
    """(wall seconds without the model load, model load seconds) of one evaluate run."""
    import tfxai.pipeline.session as session
    import tfxai.run as run
    from tfxai.evaluation.shared import SharedWork

    loads: list[float] = []
    real_load = session.load_backbone
    real_per_image = SharedWork.per_image

    def timed_load(c: Any, name: str) -> Any:
        t0 = time.perf_counter()
        bb = real_load(c, name)
        loads.append(time.perf_counter() - t0)
        return bb

    def unshared(self: SharedWork, *args: Any, **kwargs: Any) -> np.ndarray:
        self.clear()  # every call computes: no work shared between methods or metrics
        return real_per_image(self, *args, **kwargs)

    session.load_backbone = timed_load
    if not share:
        SharedWork.per_image = unshared
    try:
        t0 = time.perf_counter()
        summary = run.run_evaluate(cfg)
        wall = time.perf_counter() - t0
    finally:
        session.load_backbone = real_load
        SharedWork.per_image = real_per_image
    if summary.errors:
        print(f"warning: {summary.errors} errors (errors.csv)", file=sys.stderr)
    return wall - sum(loads), sum(loads)


def _gate_pairs(out: Path) -> dict[str, int]:
    """Per method: the ssim_augmentation pairs that passed the gate (rows with a value)."""
    counts: dict[str, int] = {}
    with (out / "scores.csv").open() as fh:
        for r in csv.DictReader(fh):
            if r["metric"] == "ssim_augmentation" and r["value"] not in ("", "nan"):
                counts[r["method"]] = counts.get(r["method"], 0) + 1
    return counts


def floors(args: argparse.Namespace, out: Path) -> dict[str, float]:
    """Each component's floor in seconds over the run's images (see the module docstring)."""
    sys.path.insert(0, str(HERE))
    from methods import CASES, Floor, median_time

    import tfxai
    from tfxai.data.dataset import discover, load_batch
    from tfxai.evaluation import augment as aug
    from tfxai.evaluation.faithfulness import Infidelity
    from tfxai.evaluation.robustness import SSIMAugmentation, ssim

    bb = tfxai.load_model(args.model)
    samples = discover(args.images)[: args.limit]
    x = load_batch(samples, bb.input_size).images
    n = len(x)
    t = bb.predict(x).argmax(axis=1).astype(np.int32)
    fl = Floor(bb, x[: args.batch_size], t[: args.batch_size])
    b = len(fl.x)
    t_f = median_time(fl.fwd, 3) / b
    t_b = max(median_time(fl.fwd_bwd, 3) / b - t_f, 0.0)
    cases = {c.method: c for c in CASES}
    out_f: dict[str, float] = {"predict": n * t_f}
    method_floor: dict[str, float] = {}
    for m in args.methods:
        att = tfxai.get_attributer(m, bb)
        nf, nb = cases[m].passes(dict(att.params), b)
        method_floor[m] = nf * t_f + nb * t_b  # per image
        out_f[f"method {m}"] = n * method_floor[m]
    if "infidelity" in args.metrics:
        inf = Infidelity()
        k = inf.params["n_samples"]
        out_f["infidelity forward (shared)"] = n * (1 + k) * t_f
        phi = np.ones_like(x)

        def dots() -> None:
            for i in range(n):
                noise = inf.noise(i, x.shape[1:]).reshape(k, -1)
                noise @ phi[i].reshape(-1)

        out_f["infidelity IᵀΦ (per method)"] = len(args.methods) * median_time(dots, 1)
    if "ssim_augmentation" in args.metrics:
        variants = SSIMAugmentation.variants
        out_f["ssim gate forward (shared)"] = n * (1 + len(variants)) * t_f
        out_f["ssim augmentations (shared)"] = median_time(
            lambda: [aug.augment(x, v) for v in variants], 1)
        pairs = _gate_pairs(out)
        for m in args.methods:
            out_f[f"ssim re-attribution {m}"] = pairs.get(m, 0) * method_floor[m]
        maps = np.random.default_rng(0).random((n, *x.shape[1:3]))
        out_f["ssim SSIM (per pair)"] = (median_time(lambda: ssim(maps, maps[::-1], 1.0), 1) / n
                                         * sum(pairs.values()))
    return out_f


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--images", type=Path, default=DATA)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--methods", default="saliency,gradcam,guided_backprop,integrated_gradients")
    ap.add_argument("--metrics", default="infidelity,ssim_augmentation")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--no-unshared", action="store_true", help="skip the run without sharing")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    args.methods = args.methods.split(",")
    args.metrics = args.metrics.split(",")
    if not args.images.is_dir():
        ap.error(f"--images: {args.images} is not a folder (give the imagenet-val-15 photos)")

    t_import = _timed_import()
    from tfxai.run import RunConfig

    res: dict[str, Any] = {"import_s": t_import}
    with tempfile.TemporaryDirectory() as tmp:
        walls = {}
        for share in ([True] if args.no_unshared else [True, False]):
            out = Path(tmp) / ("shared" if share else "unshared")
            cfg = RunConfig(models=[args.model], methods=args.methods, metrics=args.metrics,
                            images=args.images, limit=args.limit, out=out,
                            batch_size=args.batch_size, progress=False)
            walls[share], res["load_s"] = _run(cfg, share)
        res["floors"] = floors(args, Path(tmp) / "shared")
    total = sum(res["floors"].values())
    res.update(wall_shared_s=walls[True], wall_unshared_s=walls.get(False), floor_s=total,
               ratio=walls[True] / total)
    print(f"model {args.model}, {args.limit} images, methods {','.join(args.methods)}, "
          f"metrics {','.join(args.metrics)}, batch {args.batch_size}")
    print(f"import tfxai + TensorFlow {t_import:7.1f} s   model load {res['load_s']:6.1f} s "
          "(both excluded below)")
    for k, v in res["floors"].items():
        print(f"  floor  {k:34s} {v:8.2f} s")
    print(f"  floor  {'sum':34s} {total:8.2f} s")
    print(f"evaluate, sharing on     {walls[True]:8.2f} s   {res['ratio']:.2f}x the floor "
          "(target <= 1.15)")
    if False in walls:
        print(f"evaluate, sharing off    {walls[False]:8.2f} s   {walls[False] / total:.2f}x "
              f"the floor (sharing saves {walls[False] - walls[True]:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
