"""Which kind of layer a Keras layer is, for LRP: with weights, routing, merging, elementwise.

The class tuples say how relevance crosses each layer kind (see :mod:`tfxai.attribution.lrp`);
the predicates read a layer's activation and whether its output is known to be non-negative,
which lets the rules skip work (:class:`tfxai.attribution.lrp.rules.AlphaBeta`,
:class:`~tfxai.attribution.lrp.rules.Gamma`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfxai.backend import keras

layers = keras.layers

_CONV: tuple[type, ...] = tuple(
    getattr(layers, n) for n in ("Conv1D", "Conv2D", "Conv3D") if hasattr(layers, n))
_DEPTHWISE: tuple[type, ...] = tuple(
    getattr(layers, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D") if hasattr(layers, n))
_KERNEL = (*_CONV, *_DEPTHWISE, layers.Dense)


def _classes(*names: str) -> tuple[type, ...]:
    return tuple(getattr(layers, n) for n in names if hasattr(layers, n))


#: relevance routed by the ordinary gradient (relevance-preserving routing)
_ROUTE = _classes(
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "Flatten", "Reshape", "Permute", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "GaussianDropout", "GaussianNoise", "AlphaDropout", "Concatenate",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "GlobalMaxPooling3D", "Identity", "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "ActivityRegularization",
)
#: linear maps without weights: the z-rule
_MERGE = _classes("Add", "Average", "Subtract")
_AVG_POOL = _classes(
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalAveragePooling3D",
)
#: elementwise layers that pass relevance through
_ELEMENTWISE = _classes("Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "ThresholdedReLU")
_AFFINE = _classes("Rescaling", "Normalization", "BatchNormalization")
#: layers between the input and a first layer that keep pixel semantics (for the z^B box)
_PIXEL_PATH = (*_classes(
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "Flatten", "Reshape", "Permute", "Dropout", "SpatialDropout2D", "GaussianDropout",
    "GaussianNoise", "AlphaDropout", "Identity"), *_AFFINE)
#: Keras operations (``x + y``, ``keras.ops.reshape`` in a functional model) by class name
_OP_ROUTE = {"Reshape", "Squeeze", "ExpandDims", "Transpose", "Concatenate", "Flatten"}
_OP_MERGE = {"Add", "Subtract"}

_NONNEG_ACTIVATIONS = {"relu", "relu6", "sigmoid", "hard_sigmoid", "softplus", "softmax",
                       "exponential"}
_SOFTMAX_NAMES = {"softmax", "softmax_v2", "log_softmax"}


def _act_name(fn: Any) -> str:
    return getattr(fn, "__name__", "") if fn is not None else ""


def _is_linear(fn: Any) -> bool:
    return fn is None or _act_name(fn) == "linear"


def _relu_like(layer: Any) -> bool:
    if isinstance(layer, layers.ReLU):
        return float(np.asarray(layer.negative_slope)) == 0.0
    return isinstance(layer, layers.Activation) and _act_name(layer.activation) in ("relu", "relu6")


def _output_nonneg(layer: Any) -> bool | None:
    """True when the layer's output is >= 0 whatever its input; None when it depends on it."""
    if isinstance(layer, layers.ReLU):
        return (float(np.asarray(layer.negative_slope)) == 0.0
                and float(np.asarray(layer.threshold)) >= 0.0)
    if isinstance(layer, layers.Activation) or isinstance(layer, _KERNEL):
        return _act_name(layer.activation) in _NONNEG_ACTIVATIONS
    if isinstance(layer, layers.Softmax):
        return True
    if isinstance(layer, (*_ROUTE, *_MERGE, *_AVG_POOL, layers.Multiply)) and not isinstance(
            layer, layers.Subtract):
        return None
    return False


def _flat(obj: Any) -> list[Any]:
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _flat(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _flat(o)]
    return [obj] if hasattr(obj, "shape") else []

