"""How much float32 round-off moves a gradient map: the noise floor of "the numbers do not move".

The input gradient of a ReLU/ReLU6 network is discontinuous: a pre-activation within round-off of
a kink (0 or 6) switches a unit's gradient on or off. Two computations of the same model that
differ only in float32 round-off (Keras 2's fused batch norm against Keras 3's decomposed one;
another batch size; another CPU) therefore give gradient maps that differ far more than 1e-7.

This script measures that floor on one stack: it perturbs the input images by a relative
``eps`` (1e-7 is float32's own precision) and reports the relative L2 change of the saliency map
and of integrated gradients per image. A difference between two stacks that is below this floor
is round-off, not a change in what is computed.

    python benchmarks/gradient_roundoff.py [--model efficientnet_lite0] [--images DIR] [--n 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import tfxai
from tfxai.data import discover, load_batch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-15"


def rel_l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(a, axis=1), 1e-30)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--images", type=Path, default=DATA)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--eps", type=float, nargs="+", default=[1e-7, 1e-6])
    args = ap.parse_args(argv)
    bb = tfxai.load_model(args.model)
    samples = discover(args.images, args.images)[: args.n]
    x = load_batch(samples, bb.input_size, "squash").images
    t = bb.predict(x).argmax(axis=1)
    methods = {"saliency": {}, "integrated_gradients": {"steps": 50}}
    base = {m: tfxai.get_attributer(m, bb, **p).attribute(x, t) for m, p in methods.items()}
    rng = np.random.default_rng(0)
    print(f"{args.model}, {len(x)} images: relative L2 change of the map (median / max)")
    for eps in args.eps:
        xe = (x * (1 + eps * rng.standard_normal(x.shape))).astype(np.float32)
        cells = []
        for m, p in methods.items():
            d = rel_l2(base[m], tfxai.get_attributer(m, bb, **p).attribute(xe, t))
            cells.append(f"{m} {np.median(d):.1e} / {d.max():.1e}")
        print(f"  input × (1 + {eps:g}·N(0,1)), max |Δx| {np.abs(xe - x).max():.1e}: "
              + "; ".join(cells))


if __name__ == "__main__":
    main()
