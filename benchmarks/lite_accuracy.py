"""Top-1/top-5 accuracy of the converted EfficientNet-Lite0/1/2 on real ImageNet photographs.

The published ImageNet top-1 of EfficientNet-Lite0, Lite1 and Lite2 is 75.1 / 76.7 / 77.6 %
[Tan & Le 2019; EfficientNet-Lite release]. A conversion bug usually shows up as near-chance accuracy,
so this script proves each conversion on:

- ``imagenet-val-15``: 15 ILSVRC2012 validation images, true synset in the VOC XML ``<name>``;
- ``imagenet50``: photographs named ``sim_<synset>_<n>.jpg``; synsets outside ImageNet-1k are listed
  separately and not scored.

Both resize modes of tfxai are reported, at each model's own input size: ``squash`` (tfxai's default)
and ``crop`` (shorter side to the input size, then centre crop). ``--variants`` also scores the
alternatives considered for the conversion (padding, preprocessing, batch-norm epsilon), which is the
evidence recorded in ``tfxai/zoo/efficientnet_lite.py``. The mean probability of the true class is
printed too: it separates variants more finely than top-1 on a few dozen images.

Usage::

    python benchmarks/lite_accuracy.py [--model lite0,lite1,lite2] [--data ../shared/data] [--variants]
"""

from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfxai.backend import keras  # noqa: E402
from tfxai.data.images import load_image, resize_image  # noqa: E402
from tfxai.zoo import efficientnet_lite as lite  # noqa: E402

#: Published ImageNet top-1 (%) of the float models (EfficientNet-Lite release).
PUBLISHED_TOP1 = {"lite0": 75.1, "lite1": 76.7, "lite2": 77.6}

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255.0


@dataclass
class Dataset:
    """Image paths with their ImageNet class index (``None`` when the synset is not in ImageNet-1k)."""

    name: str
    paths: list[Path]
    labels: list[int | None]
    synsets: list[str]


def _synset_index(data: Path) -> dict[str, int]:
    index = json.loads((data / "imagenet_class_index.json").read_text())
    return {synset: int(i) for i, (synset, _name) in index.items()}


def load_val15(folder: Path, synsets: dict[str, int]) -> Dataset:
    """The ImageNet validation images; the label is the first object's ``<name>`` in the XML."""
    paths = sorted(folder.glob("*.JPEG"))
    names = [ET.parse(p.with_suffix(".xml")).getroot().findtext("object/name") for p in paths]
    return Dataset("imagenet-val-15", paths, [synsets.get(n) for n in names], names)


def load_imagenet50(folder: Path, synsets: dict[str, int]) -> Dataset:
    """The ImageNet50 photographs; the synset is in the file name ``sim_<synset>_<n>.jpg``."""
    paths = sorted(folder.glob("sim_*.jpg"))
    names = [p.stem.split("_")[1] for p in paths]
    return Dataset("imagenet50", paths, [synsets.get(n) for n in names], names)


def preprocess_torch(x: tf.Tensor) -> tf.Tensor:
    """ImageNet mean/std normalisation (the PyTorch convention), for comparison only."""
    return (tf.convert_to_tensor(x, tf.float32) - _IMAGENET_MEAN) / _IMAGENET_STD


def images(ds: Dataset, size: tuple[int, int], mode: str) -> np.ndarray:
    """Load and resize the scored images (those with an ImageNet-1k label) to ``size``, RGB 0..255."""
    keep = [p for p, y in zip(ds.paths, ds.labels, strict=True) if y is not None]
    return np.stack([resize_image(load_image(p), size, mode)[0] for p in keep])


def score(probs: np.ndarray, labels: np.ndarray) -> tuple[int, int, float]:
    """(top-1 hits, top-5 hits, mean probability of the true class)."""
    top5 = np.argsort(-probs, axis=1)[:, :5]
    top1 = int((top5[:, 0] == labels).sum())
    in5 = int((top5 == labels[:, None]).any(axis=1).sum())
    return top1, in5, float(probs[np.arange(len(labels)), labels].mean())


def predict(model: keras.Model, x: np.ndarray, pre: Callable) -> np.ndarray:
    return model.predict(pre(x), batch_size=16, verbose=0)


def variant_models(v: lite.Variant, variants: bool) -> dict[str, tuple[keras.Model, Callable]]:
    """The chosen conversion of ``v`` and, with ``variants``, the rejected choices: name → (model, pre)."""
    chosen = lite.efficientnet_lite(v, "imagenet")
    if not variants:
        return {"chosen": (chosen, lite.preprocess_input)}
    state = lite.read_legacy_torch_checkpoint(lite.checkpoint_path(v))
    symmetric = lite._build(v, padding="symmetric")
    lite.convert_state_dict(state, symmetric)
    eps5 = lite._build(v)
    lite.convert_state_dict(state, eps5)
    for layer in eps5.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.epsilon = 1e-5
    return {
        "same, (x-127)/128, eps 1e-3 [chosen]": (chosen, lite.preprocess_input),
        "same, ImageNet mean/std, eps 1e-3": (chosen, preprocess_torch),
        "symmetric, (x-127)/128, eps 1e-3": (symmetric, lite.preprocess_input),
        "symmetric, ImageNet mean/std, eps 1e-3": (symmetric, preprocess_torch),
        "same, (x-127)/128, eps 1e-5": (eps5, lite.preprocess_input),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default=",".join(lite.VARIANTS),
        help="comma list of variants: lite0, lite1, lite2 (or efficientnet_lite0...); default: all",
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--variants", action="store_true", help="also score the rejected conversion choices"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="list every image's label and top-1 (squash)"
    )
    args = parser.parse_args(argv)
    try:
        chosen = [lite.get_variant(m.strip()) for m in args.model.split(",") if m.strip()]
    except ValueError as exc:
        parser.error(str(exc))

    synsets = _synset_index(args.data)
    datasets = [
        load_val15(args.data / "imagenet-val-15", synsets),
        load_imagenet50(args.data / "imagenet50", synsets),
    ]
    for ds in datasets:
        missing = sorted({s for s, y in zip(ds.synsets, ds.labels, strict=True) if y is None})
        if missing:
            print(
                f"{ds.name}: {len(missing)} synsets not in ImageNet-1k, not scored: {', '.join(missing)}"
            )

    print(
        f"{'model':18s} {'variant':40s} {'dataset':16s} {'resize':7s} "
        f"{'top-1':>8s} {'top-5':>8s} {'p(true)':>8s}"
    )
    for v in chosen:
        models = variant_models(v, args.variants)
        if args.verbose:
            list_predictions(datasets, args.data, v, models[next(iter(models))][0])
        for mode in ("squash", "crop"):
            batches = {ds.name: images(ds, v.input_size, mode) for ds in datasets}
            for vname, (model, pre) in models.items():
                for ds in datasets:
                    labels = np.array([y for y in ds.labels if y is not None])
                    top1, top5, p_true = score(predict(model, batches[ds.name], pre), labels)
                    n = len(labels)
                    print(
                        f"efficientnet_{v.name:5s} {vname:40s} {ds.name:16s} {mode:7s} "
                        f"{top1:>3d}/{n:<4d} {top5:>3d}/{n:<4d} {p_true:8.3f}"
                    )
        print(f"  (published ImageNet top-1 of efficientnet_{v.name}: {PUBLISHED_TOP1[v.name]} %)")


def list_predictions(
    datasets: list[Dataset], data: Path, v: lite.Variant, model: keras.Model
) -> None:
    """Per image: true synset (with its class name when in ImageNet-1k) and the top-1 prediction."""
    names = {
        int(i): n
        for i, (_s, n) in json.loads((data / "imagenet_class_index.json").read_text()).items()
    }
    for ds in datasets:
        x = np.stack([resize_image(load_image(p), v.input_size, "squash")[0] for p in ds.paths])
        probs = predict(model, x, lite.preprocess_input)
        for path, synset, label, p in zip(ds.paths, ds.synsets, ds.labels, probs, strict=True):
            top = int(p.argmax())
            truth = f"{synset} {names[label]}" if label is not None else f"{synset} (not in 1k)"
            mark = "" if label is None else ("ok" if top == label else "--")
            print(
                f"{v.name:6s} {ds.name:16s} {path.name:30s} {truth:40s} -> {names[top]:24s} "
                f"{p[top]:.2f} {mark}"
            )


if __name__ == "__main__":
    main()
