"""Backbone registry and wrapper.

A :class:`Backbone` wraps a Keras image classifier so that every attribution method and metric sees
the same contract:

* images enter as RGB float32 in 0..255 at ``input_size`` (``(H, W)``);
* :meth:`Backbone.preprocess` applies the model's own ``preprocess_input`` as differentiable TF ops,
  so methods never see caffe/torch/tf-mode scaling;
* :meth:`Backbone.logits` gives pre-softmax scores (the softmax is stripped from the graph, never
  inverted numerically), :meth:`Backbone.predict` gives probabilities.

Registered backbones are the Keras applications VGG16, ResNet50, DenseNet121, EfficientNetB0 and
InceptionV3, plus the offline-pretrained EfficientNet-Lite0 (:mod:`tfxai.zoo.efficientnet_lite`).
Any user model is accepted through :func:`load_model`.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = [
    "Backbone",
    "ModelSpec",
    "ModelLoadError",
    "RandomWeightsWarning",
    "list_models",
    "load_model",
    "get_model_spec",
    "MODELS",
]


class ModelLoadError(ValueError):
    """A model name, file or weights option that cannot be loaded. The message says what to do."""


class RandomWeightsWarning(UserWarning):
    """Emitted when a backbone is built with random weights: its explanations mean nothing."""


def _apps_preprocess(module: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """Return a differentiable wrapper around ``tf.keras.applications.<module>.preprocess_input``.

    Keras' numpy path modifies float arrays in place, so the input is always converted to a tensor.
    """

    fn = importlib.import_module(f"keras.applications.{module}").preprocess_input

    def preprocess(x: Any) -> tf.Tensor:
        return fn(tf.convert_to_tensor(x, dtype=tf.float32))

    preprocess.__name__ = f"{module}_preprocess_input"
    return preprocess


def _identity(x: Any) -> tf.Tensor:
    return tf.convert_to_tensor(x, dtype=tf.float32)


def _keras_app(cls_name: str) -> Callable[..., tf.keras.Model]:
    def build(weights: str | None) -> tf.keras.Model:
        cls = getattr(tf.keras.applications, cls_name)
        return cls(weights=weights, include_top=True, classes=1000, classifier_activation="softmax")

    return build


def _lite0(weights: str | None) -> tf.keras.Model:
    from tfxai.zoo import efficientnet_lite

    return efficientnet_lite.efficientnet_lite0(weights=weights)


def _lite0_preprocess(x: Any) -> tf.Tensor:
    from tfxai.zoo import efficientnet_lite

    return efficientnet_lite.preprocess_input(tf.convert_to_tensor(x, dtype=tf.float32))


def _lite0_last_conv() -> str:
    from tfxai.zoo import efficientnet_lite

    return efficientnet_lite.LAST_CONV_LAYER


@dataclass(frozen=True)
class ModelSpec:
    """A registered backbone: how to build it and how it expects its input."""

    name: str
    builder: Callable[[str | None], tf.keras.Model]
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


_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"

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
        ModelSpec("efficientnet_lite0", _lite0, _lite0_preprocess, (224, 224), _lite0_last_conv,
                  "efficientnet-lite", offline_imagenet=True,
                  description="EfficientNet-Lite0, ImageNet weights shipped offline"),
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


# --------------------------------------------------------------------------------------- wrapper


def _strip_softmax(model: tf.keras.Model, output: str) -> tf.keras.Model:
    """Build a model sharing ``model``'s layers whose output is the pre-softmax logits.

    * A final ``Softmax`` layer or ``Activation('softmax')`` layer is skipped: its input is used.
    * A final layer with a fused ``activation=softmax`` (Dense, Conv) is cloned with a linear
      activation and the same weights, applied to the same input tensor.
    * ``output="logits"``: the model is returned as is.
    """
    if output == "logits":
        return model
    if output != "probabilities":
        raise ValueError(f"output must be 'probabilities' or 'logits', got {output!r}")
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    is_softmax_layer = (
        isinstance(last, tf.keras.layers.Softmax)
        or (isinstance(last, tf.keras.layers.Activation) and _is_softmax(act))
        or getattr(last, "symbol", "") in ("nn.softmax", "math.softmax")  # functional tf.nn.softmax
    )
    if is_softmax_layer:
        inp = outer_input(model, last)
        if isinstance(inp, (list, tuple)):  # TFOpLambda: first positional argument
            inp = inp[0]
        return tf.keras.Model(model.inputs, inp, name=f"{model.name}_logits")
    if act is not None and _is_softmax(act):
        cfg = last.get_config()
        cfg["activation"] = "linear"
        cfg["name"] = f"{last.name}_logits"
        clone = last.__class__.from_config(cfg)
        out = clone(outer_input(model, last))
        clone.set_weights(last.get_weights())
        return tf.keras.Model(model.inputs, out, name=f"{model.name}_logits")
    raise ModelLoadError(
        f"model {model.name!r}: output='probabilities' but the last layer {last.name!r} "
        "is not a softmax; pass output='logits' if the model already outputs logits"
    )


def _is_softmax(act: Any) -> bool:
    """True for ``"softmax"``, ``tf.keras.activations.softmax`` and ``tf.nn.softmax`` (softmax_v2)."""
    return act is not None and getattr(act, "__name__", "") in ("softmax", "softmax_v2")


_POOLING = (
    tf.keras.layers.MaxPooling2D,
    tf.keras.layers.AveragePooling2D,
    tf.keras.layers.GlobalAveragePooling2D,
    tf.keras.layers.GlobalMaxPooling2D,
    tf.keras.layers.InputLayer,
)


def _node_index(model: tf.keras.Model, layer: tf.keras.layers.Layer) -> int | None:
    nodes = getattr(model, "_network_nodes", set())
    for i in range(len(getattr(layer, "_inbound_nodes", []))):
        if f"{layer.name}_ib-{i}" in nodes:
            return i
    return None


def outer_output(model: tf.keras.Model, layer: tf.keras.layers.Layer) -> Any:
    """The output tensor of ``layer`` in ``model``'s own graph.

    ``layer.output`` is the tensor of the layer's first call, which for a nested sub-model, or a
    layer shared with another model, may belong to another graph; the call that belongs to
    ``model`` is found among its nodes.
    """
    i = _node_index(model, layer)
    return layer.output if i is None else layer.get_output_at(i)


def outer_input(model: tf.keras.Model, layer: tf.keras.layers.Layer) -> Any:
    """The input tensor of ``layer`` in ``model``'s own graph (see :func:`outer_output`)."""
    i = _node_index(model, layer)
    return layer.input if i is None else layer.get_input_at(i)


def find_last_conv_layer(model: tf.keras.Model) -> str:
    """Name of the last layer with a 4-D (N, H, W, C) output that is not a pooling layer.

    For the Keras applications this is the last convolution block's activation, the usual
    Grad-CAM layer. Raises a ``ModelLoadError`` when the model has no such layer (e.g. when the
    convolutional part is a nested sub-model: then name the layer explicitly).
    """
    for layer in reversed(model.layers):
        if isinstance(layer, _POOLING):
            continue
        shape = getattr(layer, "output_shape", None)
        if isinstance(shape, tuple) and len(shape) == 4 and (shape[1] or 2) > 1:
            return layer.name
    raise ModelLoadError(
        f"model {model.name!r}: no layer with a 4-D output found for Grad-CAM; "
        "pass last_conv_layer=<layer name> (nested sub-models are not searched)"
    )


@dataclass
class Backbone:
    """A classifier with its preprocessing, input size, logits and last conv layer.

    Attributes:
        name: registry name or the custom model's name.
        weights: ``"imagenet"``, ``"none"``, a weights path, or ``"custom"``.
        input_size: ``(H, W)`` expected by the model.
        last_conv_layer: default layer for the Grad-CAM family.
        keras_model: the wrapped model as loaded (its output may be probabilities).
        logit_model: preprocessed input → logits, sharing ``keras_model``'s layers.
    """

    name: str
    keras_model: tf.keras.Model
    preprocess_fn: Callable[[Any], tf.Tensor]
    input_size: tuple[int, int]
    last_conv_layer: str
    weights: str = "custom"
    output: str = "probabilities"
    preprocess_mode: str = ""
    logit_model: tf.keras.Model = field(init=False)
    _layer_models: dict[str, tf.keras.Model] = field(init=False, default_factory=dict)
    _logits_fn: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.logit_model = _strip_softmax(self.keras_model, self.output)
        try:
            self.keras_model.get_layer(self.last_conv_layer)
        except ValueError:
            raise ModelLoadError(
                f"model {self.name!r} has no layer named {self.last_conv_layer!r} "
                "(last_conv_layer)"
            ) from None

    # ------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        return int(self.logit_model.output_shape[-1])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.input_size, 3)

    # ------------------------------------------------------------------ forward passes
    def preprocess(self, images: Any) -> tf.Tensor:
        """RGB 0..255 → the model's input scaling (differentiable TF ops)."""
        return self.preprocess_fn(tf.convert_to_tensor(images, dtype=tf.float32))

    def logits(self, images: Any) -> tf.Tensor:
        """Pre-softmax scores, (N, classes), for RGB 0..255 images (differentiable)."""
        return self.logit_model(self.preprocess(images), training=False)

    def target_logits(self, images: Any, targets: Any) -> tf.Tensor:
        """Logit of each image's target class, (N,)."""
        logits = self.logits(images)
        t = tf.cast(tf.reshape(targets, (-1,)), tf.int32)
        return tf.gather(logits, t, batch_dims=1)

    def _compiled_logits(self) -> Any:
        if self._logits_fn is None:
            spec = tf.TensorSpec((None, *self.input_shape), tf.float32)
            self._logits_fn = tf.function(self.logits, input_signature=[spec], reduce_retracing=True)
        return self._logits_fn

    def predict_logits(self, images: Any, batch_size: int = 32) -> np.ndarray:
        """Logits as a numpy array, computed in batches of ``batch_size``."""
        x = np.asarray(images, dtype=np.float32)
        self._check_images(x)
        fn = self._compiled_logits()
        out = [fn(tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        if not out:
            return np.zeros((0, self.num_classes), np.float32)
        return np.concatenate(out).astype(np.float32)

    def predict(self, images: Any, batch_size: int = 32) -> np.ndarray:
        """Class probabilities, (N, classes): the softmax of :meth:`logits`."""
        z = self.predict_logits(images, batch_size)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def layer_model(self, layer: str | None = None) -> tf.keras.Model:
        """A model mapping the *preprocessed* input to ``[activations of layer, logits]``.

        A nested sub-model (e.g. a Keras application used as the base of a fine-tuned model) is
        taken at its output in the outer graph.
        """
        name = layer or self.last_conv_layer
        if name not in self._layer_models:
            try:
                out = outer_output(self.keras_model, self.keras_model.get_layer(name))
            except ValueError:
                raise ValueError(
                    f"layer {name!r} not found in model {self.name!r}; "
                    f"conv-like layers: {', '.join(self.conv_layer_names()[-8:])}"
                ) from None
            self._layer_models[name] = tf.keras.Model(
                self.logit_model.inputs, [out, self.logit_model.output]
            )
        return self._layer_models[name]

    def conv_layer_names(self) -> list[str]:
        """Names of the layers with 4-D outputs, in graph order."""
        names = []
        for layer in self.keras_model.layers:
            shape = getattr(layer, "output_shape", None)
            if isinstance(shape, tuple) and len(shape) == 4:
                names.append(layer.name)
        return names

    def _check_images(self, x: np.ndarray) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{self.name}: expected images of shape (N, {self.input_size[0]}, "
                f"{self.input_size[1]}, 3) in 0..255, got {tuple(x.shape)}"
            )

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "weights": self.weights,
            "input_size": list(self.input_size),
            "last_conv_layer": self.last_conv_layer,
            "preprocess": self.preprocess_mode or getattr(self.preprocess_fn, "__name__", ""),
            "num_classes": self.num_classes,
        }


# --------------------------------------------------------------------------------------- loading


def _random_init_warning(name: str, seed: int) -> None:
    warnings.warn(
        f"{name}: weights='none' builds a randomly initialised network (seed {seed}). "
        "Explanations of a random model mean nothing; use it only for tests and timing.",
        RandomWeightsWarning,
        stacklevel=4,
    )


def _keras_cache_dir() -> Path:
    """Where ``keras.utils.get_file`` caches weights: ``~/.keras/models``, or ``/tmp/.keras/models``
    when ``~/.keras`` is not writable (Keras 2.14 ignores ``KERAS_HOME`` here)."""
    base = Path(os.path.expanduser("~")) / ".keras"
    if not os.access(base if base.exists() else base.parent, os.W_OK):
        base = Path("/tmp") / ".keras"
    return base / "models"


def _seeded_build(builder: Callable[[str | None], tf.keras.Model], seed: int) -> tf.keras.Model:
    """Build with seeded initialisers, restoring Python's and numpy's global random state."""
    import random

    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    tf.keras.utils.set_random_seed(seed)
    try:
        return builder(None)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002


def _build_registered(spec: ModelSpec, weights: str, seed: int) -> tf.keras.Model:
    if weights == "none":
        _random_init_warning(spec.name, seed)
        return _seeded_build(spec.builder, seed)
    if weights == "imagenet":
        try:
            return spec.builder("imagenet")
        except Exception as exc:  # noqa: BLE001 - Keras raises plain Exception on fetch failure
            if spec.offline_imagenet:
                raise ModelLoadError(f"{spec.name}: could not load ImageNet weights: {exc}") from exc
            cache = _keras_cache_dir()
            raise ModelLoadError(
                f"{spec.name}: could not get ImageNet weights ({type(exc).__name__}: "
                f"{str(exc)[:200]}). Keras downloads them from {_KERAS_WEIGHTS} and caches them in "
                f"{cache}. Offline, copy {spec.weights_file!r} there from a machine with internet, "
                "or pass --weights /path/to/weights.h5; use --weights none for a random-weight "
                "smoke test."
            ) from exc
    path = Path(weights)
    if not path.exists():
        raise ModelLoadError(
            f"{spec.name}: weights file {str(path)!r} does not exist "
            "(--weights takes 'imagenet', 'none' or a path to a weights file)"
        )
    model = _seeded_build(spec.builder, seed)
    try:
        model.load_weights(str(path))
    except Exception as exc:  # noqa: BLE001 - h5py/keras raise many types here
        raise ModelLoadError(
            f"{spec.name}: cannot load weights from {str(path)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return model


def _resolve_preprocess(preprocess: None | str | Callable[[Any], tf.Tensor]) -> tuple[Callable, str]:
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


def _load_model_file(path: Path) -> tf.keras.Model:
    if not path.exists():
        raise ModelLoadError(f"model file {str(path)!r} does not exist")
    try:
        return tf.keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(
            f"cannot load Keras model from {str(path)!r}: {type(exc).__name__}: {exc}"
        ) from exc


def load_model(
    model: str | os.PathLike | tf.keras.Model,
    weights: str = "imagenet",
    *,
    preprocess: None | str | Callable[[Any], tf.Tensor] = None,
    input_size: Sequence[int] | None = None,
    last_conv_layer: str | None = None,
    output: str = "probabilities",
    seed: int = 0,
    name: str | None = None,
) -> Backbone:
    """Load a registered backbone, a saved Keras model file, or wrap a ``keras.Model``.

    Args:
        model: a registered name (see :func:`list_models`), a path to a ``.keras``/``.h5`` model,
            or a ``tf.keras.Model``.
        weights: for registered names: ``"imagenet"`` (Keras download/cache), ``"none"`` (seeded
            random init; warns), or a path to a weights file. Ignored for custom models.
        preprocess: custom models only: ``None`` (identity: the model takes 0..255 RGB), a
            callable, or a registered model name whose ``preprocess_input`` to use.
        input_size: custom models only: ``(H, W)``; read from the model's input shape if omitted.
        last_conv_layer: override the Grad-CAM layer; found automatically for custom models.
        output: custom models only: ``"probabilities"`` (last layer is a softmax, stripped for
            logits) or ``"logits"``.
        seed: seed for ``weights="none"``.
        name: display name for custom models.
    """
    if isinstance(model, tf.keras.Model):
        return _wrap_custom(model, preprocess, input_size, last_conv_layer, output, name)
    key = str(model)
    if key.lower() in MODELS:
        spec = get_model_spec(key)
        given = {"preprocess": preprocess, "input_size": input_size}
        if output != "probabilities":
            given["output"] = output
        extra = sorted(k for k, v in given.items() if v is not None)
        if extra:
            raise ModelLoadError(
                f"{spec.name}: option(s) {extra} apply to custom models only; a registered "
                "backbone has its own preprocessing, input size and softmax output"
            )
        weights = "none" if weights is None else str(weights)
        keras_model = _build_registered(spec, weights, seed)
        label = weights if weights in ("imagenet", "none") else str(Path(weights).resolve())
        return Backbone(
            name=spec.name,
            keras_model=keras_model,
            preprocess_fn=spec.preprocess,
            input_size=spec.input_size,
            last_conv_layer=last_conv_layer or spec.resolve_last_conv(),
            weights=label,
            output="probabilities",
            preprocess_mode=spec.preprocess_mode,
        )
    path = Path(key)
    if path.suffix.lower() in (".keras", ".h5", ".hdf5") or path.exists():
        keras_model = _load_model_file(path)
        return _wrap_custom(
            keras_model, preprocess, input_size, last_conv_layer, output, name or path.stem,
            weights_label=str(path.resolve()),
        )
    get_model_spec(key)  # raises the unknown-name error
    raise AssertionError("unreachable")


def _wrap_custom(
    keras_model: tf.keras.Model,
    preprocess: None | str | Callable[[Any], tf.Tensor],
    input_size: Sequence[int] | None,
    last_conv_layer: str | None,
    output: str,
    name: str | None,
    weights_label: str = "custom",
) -> Backbone:
    fn, mode = _resolve_preprocess(preprocess)
    if input_size is None:
        shape = keras_model.input_shape
        if not (isinstance(shape, tuple) and len(shape) == 4 and shape[1] and shape[2]):
            raise ModelLoadError(
                f"model {keras_model.name!r}: input shape {shape} has no fixed size; "
                "pass input_size=(H, W)"
            )
        input_size = (int(shape[1]), int(shape[2]))
    h, w = (int(v) for v in input_size)
    return Backbone(
        name=name or keras_model.name,
        keras_model=keras_model,
        preprocess_fn=fn,
        input_size=(h, w),
        last_conv_layer=last_conv_layer or find_last_conv_layer(keras_model),
        weights=weights_label,
        output=output,
        preprocess_mode=mode,
    )
