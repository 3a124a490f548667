"""The registry of named backbones: how each is built and how it expects its input.

:data:`MODELS` maps a name to a :class:`ModelSpec`: the Keras applications VGG16 [Simonyan &
Zisserman 2015], ResNet50 [He et al. 2016], DenseNet121 [Huang et al. 2017], EfficientNetB0 [Tan &
Le 2019] and InceptionV3 [Szegedy et al. 2016], plus the offline-pretrained EfficientNet-Lite0, -Lite1
and -Lite2 (:mod:`tfxai.zoo.efficientnet_lite`, imported on first use). Each spec's preprocessing
is the model's own ``preprocess_input`` as differentiable TF ops. :func:`resolve_preprocess` turns
the ``preprocess=`` option of a custom model into such a function.

Loading a spec (weights, seeds, error messages) is :mod:`tfxai.models`' job.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from tfxai.backend import keras
from tfxai.model_errors import ModelLoadError

__all__ = ["ModelSpec", "MODELS", "list_models", "get_model_spec", "resolve_preprocess"]


def _apps_preprocess(module: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """Return a differentiable wrapper around ``keras.applications.<module>.preprocess_input``.

    Keras' numpy path modifies float arrays in place, so the input is always converted to a tensor.
    """

    fn = importlib.import_module(f"keras.applications.{module}").preprocess_input

    def preprocess(x: Any) -> tf.Tensor:
        return fn(tf.convert_to_tensor(x, dtype=tf.float32))

    preprocess.__name__ = f"{module}_preprocess_input"
    return preprocess


def _identity(x: Any) -> tf.Tensor:
    return tf.convert_to_tensor(x, dtype=tf.float32)


def _keras_app(cls_name: str) -> Callable[..., keras.Model]:
    def build(weights: str | None) -> keras.Model:
        cls = getattr(keras.applications, cls_name)
        return cls(weights=weights, include_top=True, classes=1000, classifier_activation="softmax")

    return build


def _lite(variant: str) -> Callable[[str | None], keras.Model]:
    """Builder of EfficientNet-Lite ``variant`` (``"lite0"``...), imported on first use."""

    def build(weights: str | None) -> keras.Model:
        from tfxai.zoo import efficientnet_lite

        return efficientnet_lite.efficientnet_lite(variant, weights=weights)

    build.__name__ = f"efficientnet_{variant}"
    return build


def _lite_preprocess(x: Any) -> tf.Tensor:
    from tfxai.zoo import efficientnet_lite

    return efficientnet_lite.preprocess_input(tf.convert_to_tensor(x, dtype=tf.float32))


def _lite_last_conv() -> str:
    from tfxai.zoo import efficientnet_lite

    return efficientnet_lite.LAST_CONV_LAYER


@dataclass(frozen=True)
class ModelSpec:
    """A registered backbone: how to build it and how it expects its input."""

    name: str
    builder: Callable[[str | None], keras.Model]
    preprocess: Callable[[Any], tf.Tensor]
    input_size: tuple[int, int]
    last_conv_layer: str | Callable[[], str]
    preprocess_mode: str
    weights_file: str = ""
    offline_imagenet: bool = False
    description: str = ""

    def resolve_last_conv(self) -> str:
        lc = self.last_conv_layer
        return lc() if callable(lc) else lc


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec("vgg16", _keras_app("VGG16"), _apps_preprocess("vgg16"), (224, 224),
                  "block5_conv3", "caffe", "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                  description="VGG16 [Simonyan & Zisserman 2015]"),
        ModelSpec("resnet50", _keras_app("ResNet50"), _apps_preprocess("resnet50"), (224, 224),
                  "conv5_block3_out", "caffe",
                  "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                  description="ResNet50 [He et al. 2016]"),
        ModelSpec("densenet121", _keras_app("DenseNet121"), _apps_preprocess("densenet"),
                  (224, 224), "relu", "torch",
                  "densenet121_weights_tf_dim_ordering_tf_kernels.h5",
                  description="DenseNet121 [Huang et al. 2017]"),
        ModelSpec("efficientnetb0", _keras_app("EfficientNetB0"),
                  _apps_preprocess("efficientnet"), (224, 224), "top_activation",
                  "none (rescaling inside the model)", "efficientnetb0.h5",
                  description="EfficientNetB0 [Tan & Le 2019]"),
        ModelSpec("inceptionv3", _keras_app("InceptionV3"), _apps_preprocess("inception_v3"),
                  (299, 299), "mixed10", "tf",
                  "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
                  description="InceptionV3 [Szegedy et al. 2016]"),
        ModelSpec("efficientnet_lite0", _lite("lite0"), _lite_preprocess, (224, 224),
                  _lite_last_conv, "efficientnet-lite", offline_imagenet=True,
                  description="EfficientNet-Lite0 [Tan & Le 2019], ImageNet weights shipped "
                  "offline (top-1 75.1 %)"),
        ModelSpec("efficientnet_lite1", _lite("lite1"), _lite_preprocess, (240, 240),
                  _lite_last_conv, "efficientnet-lite", offline_imagenet=True,
                  description="EfficientNet-Lite1 [Tan & Le 2019], ImageNet weights shipped "
                  "offline (top-1 76.7 %)"),
        ModelSpec("efficientnet_lite2", _lite("lite2"), _lite_preprocess, (260, 260),
                  _lite_last_conv, "efficientnet-lite", offline_imagenet=True,
                  description="EfficientNet-Lite2 [Tan & Le 2019], ImageNet weights shipped "
                  "offline (top-1 77.6 %)"),
    ]
}


def list_models() -> list[str]:
    """Names of the registered backbones."""
    return list(MODELS)


def get_model_spec(name: str) -> ModelSpec:
    """Look up a registered backbone; unknown names raise a ``ValueError`` listing the known ones."""
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ModelLoadError(
            f"unknown model {name!r}; known models: {', '.join(MODELS)}, "
            "or a path to a saved .keras/.h5 model"
        ) from None


def resolve_preprocess(
    preprocess: None | str | Callable[[Any], tf.Tensor],
) -> tuple[Callable[[Any], tf.Tensor], str]:
    """The preprocessing function of a custom model and its label: ``None`` or ``"identity"``
    (the model takes 0..255 RGB), a callable, or a registered model name whose
    ``preprocess_input`` to use."""
    if preprocess is None:
        return _identity, "identity"
    if callable(preprocess):
        return preprocess, getattr(preprocess, "__name__", "custom")
    if isinstance(preprocess, str):
        if preprocess in ("identity", "none"):
            return _identity, "identity"
        spec = get_model_spec(preprocess)
        return spec.preprocess, spec.preprocess_mode
    raise ValueError(f"preprocess must be None, a callable or a model name, got {preprocess!r}")
