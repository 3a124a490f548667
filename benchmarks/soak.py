"""Soak benchmark: resident memory of a long ``tfxai evaluate`` run must stay flat.

Generates N small JPEG photographs-like images (224×224, smooth random blobs) with one Pascal-VOC
box each into a temporary folder, then runs, in a child process::

    tfxai evaluate --model efficientnetb0 --weights none --method gradcam --metric iou ...

(``--method``, ``--metric`` and ``--param`` change the run; ``--model tiny`` saves a small
Keras CNN (64×64 input, two conv blocks, 1000 logits) into the work folder and runs it as a custom
model, so that a 2,000-image soak of the heavier metrics fits in half an hour on 2 CPU cores: a
memory leak in the pipeline, in the metrics or in TensorFlow's per-call state does not depend on
the size of the network.)

and samples the child's resident set size (``VmRSS`` in ``/proc/<pid>/status``) while counting the
images that have score rows in ``scores.csv``. The RSS is recorded when the count first reaches each
multiple of ``--every`` (50) images, plus the peak (``VmHWM``). The run passes when the RSS growth
between image ``--from`` (100) and the last image (500) is below ``--max-growth`` (10%).

Usage::

    python benchmarks/soak.py [--images 500] [--every 50] [--batch-size 8] [--json out.json]
    python benchmarks/soak.py --images 2000 --model tiny --metric ssim_augmentation,infidelity \
        --max-growth 0.05          # issue 18 item 4

On two shared CPU cores this takes several minutes (efficientnetb0 forward + backward per image).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int, size: int = 224, seed: int = 0) -> None:
    """``n`` JPEGs of smooth random colour fields with one VOC box (an object-like blob) each."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for i in range(n):
        base = rng.uniform(40, 200, 3).astype(np.float32)
        img = np.broadcast_to(base, (size, size, 3)).copy()
        img += rng.normal(0, 12, (size, size, 3)).astype(np.float32)
        w, h = rng.integers(size // 5, size // 2, 2)
        x0, y0 = rng.integers(0, size - w), rng.integers(0, size - h)
        cx, cy = x0 + w / 2, y0 + h / 2
        blob = np.exp(-(((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2))
        img += blob[..., None] * rng.uniform(-120, 120, 3).astype(np.float32)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            folder / f"soak{i:05d}.jpg", quality=90)
        (folder / f"soak{i:05d}.xml").write_text(
            f"<annotation><size><width>{size}</width><height>{size}</height><depth>3</depth>"
            f"</size><object><name>n01440764</name><bndbox><xmin>{x0 + 1}</xmin>"
            f"<ymin>{y0 + 1}</ymin><xmax>{x0 + w}</xmax><ymax>{y0 + h}</ymax></bndbox>"
            f"</object></annotation>")


def tiny_model(path: Path) -> Path:
    """A small seeded CNN saved as .keras (64×64×3 input in 0..255, 1000 logits)."""
    import keras

    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((64, 64, 3))
    x = L.Rescaling(1 / 255.0)(inp)
    for filters in (16, 32):
        x = L.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(64, 3, padding="same", activation="relu")(x)
    out = L.Dense(1000)(L.GlobalAveragePooling2D()(x))
    keras.Model(inp, out).save(path)
    return path


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _images_done(scores: Path) -> int:
    """Distinct image ids with a score row (only complete lines are counted)."""
    try:
        text = scores.read_text()
    except OSError:
        return 0
    text = text[: text.rfind("\n") + 1]
    return len({row["image_id"] for row in csv.DictReader(io.StringIO(text))})


def soak(n: int, every: int, batch_size: int, workdir: Path, model: str,
         method: str = "gradcam", metric: str = "iou", params: tuple[str, ...] = ()) -> dict:
    images, out = workdir / "images", workdir / "results"
    t0 = time.time()
    make_images(images, n)
    print(f"generated {n} images in {time.time() - t0:.1f}s", file=sys.stderr)
    if model == "tiny":
        model_args = ["--model", str(tiny_model(workdir / "tiny.keras")), "--output", "logits"]
    else:
        model_args = ["--model", model, "--weights", "none"]
    cmd = [sys.executable, "-m", "tfxai.cli.main", "evaluate", *model_args,
           "--method", method, "--metric", metric, "--images", str(images),
           "--annotations", str(images), "--out", str(out), "--batch-size", str(batch_size),
           "--no-progress"]
    for p in params:
        cmd += ["--param", p]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    log = (workdir / "child.log").open("wb")
    child = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    samples: list[dict] = []
    marks = list(range(every, n + 1, every))
    start = time.time()
    peak: int | None = None  # VmHWM of the child, last value seen before it exits
    while True:
        done = _images_done(out / "scores.csv")
        rss = _status_kb(child.pid, "VmRSS")
        hwm = _status_kb(child.pid, "VmHWM")
        if hwm is not None:
            peak = max(peak or 0, hwm)
        while marks and done >= marks[0] and rss is not None:
            samples.append({"images": marks.pop(0), "done": done, "rss_mb": rss / 1024,
                            "seconds": round(time.time() - start, 1)})
            print(f"{samples[-1]['images']:5d} images  RSS {rss / 1024:8.1f} MB  "
                  f"t={samples[-1]['seconds']}s", file=sys.stderr, flush=True)
        if child.poll() is not None:
            break
        time.sleep(0.2)
    code = child.returncode
    log.close()
    return {"returncode": code, "samples": samples, "peak_rss_mb": peak / 1024 if peak else None,
            "seconds": round(time.time() - start, 1), "images": n, "batch_size": batch_size,
            "model": model, "method": method, "metric": metric, "params": list(params)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--from", dest="start", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", default="efficientnetb0",
                    help="a registered model (random weights) or 'tiny' (see the module doc)")
    ap.add_argument("--method", default="gradcam")
    ap.add_argument("--metric", default="iou")
    ap.add_argument("--param", action="append", default=[], help="NAME.PARAM=VALUE, repeatable")
    ap.add_argument("--max-growth", type=float, default=0.10)
    ap.add_argument("--workdir", type=Path, default=None, help="keep files here (default: temp)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tfxai-soak-") as tmp:
        work = args.workdir or Path(tmp)
        res = soak(args.images, args.every, args.batch_size, work, args.model, args.method,
                   args.metric, tuple(args.param))
    by_n = {s["images"]: s["rss_mb"] for s in res["samples"]}
    first = by_n.get(args.start)
    last_n = max(by_n) if by_n else args.images
    last = by_n.get(last_n)
    growth = (last - first) / first if first and last else float("nan")
    res.update({"rss_from_mb": first, "rss_last_mb": last, "growth": growth,
                "max_growth": args.max_growth})
    ok = res["returncode"] == 0 and growth == growth and growth < args.max_growth
    res["passed"] = bool(ok)
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    print(f"RSS at image {args.start}: {first} MB, at image {last_n}: {last} MB, "
          f"growth {growth:+.1%} (limit {args.max_growth:.0%}) -> {'PASS' if ok else 'FAIL'}",
          file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
