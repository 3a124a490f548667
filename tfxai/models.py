"""Backbone registry and wrapper.

A :class:`Backbone` wraps a Keras image classifier so that every attribution method and metric sees
the same contract:

* images enter as RGB float32 in 0..255 at ``input_size`` (``(H, W)``);
* :meth:`Backbone.preprocess` applies the model's own ``preprocess_input`` as differentiable TF ops,
  so methods never see caffe/torch/tf-mode scaling;
* :meth:`Backbone.logits` gives pre-softmax scores (the softmax is stripped from the graph, never
  inverted numerically), :meth:`Backbone.predict` gives probabilities.

Registered backbones are the Keras applications VGG16, ResNet50, DenseNet121, EfficientNetB0 and
InceptionV3, plus the offline-pretrained EfficientNet-Lite0, -Lite1 and -Lite2
(:mod:`tfxai.zoo.efficientnet_lite`).
Any user model is accepted through :func:`load_model`: a functional or Sequential Keras 3 model,
nested sub-models included (it is flattened over its own layers by :mod:`tfxai.graph`).
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

from tfxai import graph
from tfxai.backend import keras

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


# --------------------------------------------------------------------------------------- wrapper


def _is_softmax(act: Any) -> bool:
    """True for ``"softmax"``, ``keras.activations.softmax`` and ``tf.nn.softmax``."""
    return act is not None and getattr(act, "__name__", "") in ("softmax", "softmax_v2")


def _softmax_kind(op: Any) -> str | None:
    """How ``op`` applies the output softmax: ``"layer"`` (a ``Softmax`` layer, an
    ``Activation('softmax')`` layer or a ``keras.ops.softmax`` call), ``"fused"``
    (``Dense(..., activation="softmax")`` and the like) or ``None``."""
    if isinstance(op, keras.layers.Softmax):
        return "layer"
    if isinstance(op, keras.layers.Activation) and _is_softmax(op.activation):
        return "layer"
    if not isinstance(op, keras.layers.Layer) and type(op).__name__ == "Softmax":
        return "layer"  # keras.ops.softmax(x) in a functional model
    if _is_softmax(getattr(op, "activation", None)):
        return "fused"
    return None


def logits_graph(
    model: keras.Model, input_shape: Sequence[int | None], output: str = "probabilities",
    replace: graph.Replace | None = None, fused_batchnorm: bool = True,
) -> tuple[graph.FlatGraph, Any]:
    """``model`` flattened (:func:`tfxai.graph.flatten`) and its pre-softmax output tensor.

    ``fused_batchnorm``: run inference batch normalisation as one fused kernel, as Keras 2 did
    (:class:`tfxai.graph.InferenceBatchNorm`; numbers match the Keras 2 stack's bit for bit). A
    layer that ``replace`` rewrites keeps the rewrite. ``False`` leaves Keras 3's own layers.

    * ``output="logits"``: the model's own output.
    * ``output="probabilities"``: the final softmax is skipped, never inverted numerically: a
      ``Softmax``/``Activation('softmax')`` layer or ``keras.ops.softmax`` call gives its input;
      a layer with a fused ``activation="softmax"`` is called again with a linear activation
      (same layer, same weights: :class:`tfxai.graph.FusedActivation`).
    """
    if output not in ("probabilities", "logits"):
        raise ValueError(f"output must be 'probabilities' or 'logits', got {output!r}")
    if not graph.is_graph_model(model):
        raise ModelLoadError(
            f"model {model.name!r} is a subclassed Keras model ({type(model).__name__}): tfxai "
            "needs a functional or Sequential model to reach its layers; rebuild it with the "
            "functional API (keras.Model(inputs, outputs)) or keras.Sequential"
        )
    if fused_batchnorm:
        inner_replace = replace

        def replace(op: Any) -> Any:  # the caller's rewrite first, then the fused kernel
            new = inner_replace(op) if inner_replace is not None else None
            return new if new is not None else graph.fused_batchnorm(op)

    try:
        g = graph.flatten(model, input_shape=tuple(input_shape), replace=replace)
    except graph.GraphError as exc:
        raise ModelLoadError(str(exc)) from None
    if output == "logits":
        return g, g.output
    last = g.producer(g.output)
    kind = _softmax_kind(last.source) if last is not None else None
    if kind == "layer":
        return g, last.first_input
    if kind == "fused":
        linear = graph.FusedActivation(last.source, keras.activations.linear,
                                       name=f"{last.source.name}_logits")
        return g, linear(*last.args, **last.kwargs)
    name = last.path if last is not None else "?"
    raise ModelLoadError(
        f"model {model.name!r}: output='probabilities' but the last layer {name!r} is not a "
        "softmax; pass output='logits' if the model already outputs logits"
    )


_POOLING = (
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.InputLayer,
)


def _spatial(node: graph.Node) -> bool:
    """A node with a 4-D (N, H, W, C) output, H > 1, that is not a pooling layer."""
    shape = node.shape
    return (shape is not None and len(shape) == 4 and (shape[1] or 2) > 1
            and not isinstance(node.source, _POOLING))


def _is_convolution(layer: Any) -> bool:
    """A layer with a convolution kernel (Conv*, DepthwiseConv*, SeparableConv*, transposed)."""
    kernel = getattr(layer, "kernel", None) if isinstance(layer, keras.layers.Layer) else None
    if kernel is None:
        kernel = getattr(layer, "depthwise_kernel", None)
    return kernel is not None and len(kernel.shape) >= 3


def find_last_conv_layer(g: graph.FlatGraph) -> str | None:
    """Path of the last layer with a 4-D (N, H, W, C) output (H > 1) that is not a pooling layer
    and comes after the first convolution, nested sub-models included
    (``"efficientnetb0/top_activation"``); ``None`` for a model without a convolution (an MLP on
    images: its input rescaling is 4-D, but no class activation map is defined on it).

    For the Keras applications this is the last convolution block's activation, the usual
    Grad-CAM layer.
    """
    first = next((i for i, n in enumerate(g.nodes) if _is_convolution(n.source)), None)
    if first is None:
        return None
    for node in reversed(g.nodes[first:]):
        if _spatial(node):
            return node.path
    return None


def _size_from_name(model: keras.Model) -> tuple[int, int] | None:
    """The input size of a registered Keras application nested in ``model``, found by the
    sub-model's name (``efficientnetb0``, ``inception_v3``...), for a model that accepts any
    image size."""
    aliases = {"inception_v3": "inceptionv3"}

    def submodels(m: keras.Model) -> Any:
        yield m
        for layer in m.layers:
            if graph.is_graph_model(layer):
                yield from submodels(layer)

    for m in submodels(model):
        key = aliases.get(m.name.lower(), m.name.lower())
        if key in MODELS:
            return MODELS[key].input_size
    return None


@dataclass
class Backbone:
    """A classifier with its preprocessing, input size, logits and last conv layer.

    Attributes:
        name: registry name or the custom model's name.
        weights: ``"imagenet"``, ``"none"``, a weights path, or ``"custom"``.
        input_size: ``(H, W)`` expected by the model.
        last_conv_layer: default layer for the Grad-CAM family: a layer name, or a path into a
            nested sub-model (``"efficientnetb0/top_activation"``); ``None`` for a model without
            a 4-D layer (only the CAM family needs one).
        keras_model: the wrapped model as loaded (its output may be probabilities).
        graph: ``keras_model`` flattened over its own layers (:mod:`tfxai.graph`).
        logit_model: preprocessed input → logits, a flat functional model sharing
            ``keras_model``'s layers.
    """

    name: str
    keras_model: keras.Model
    preprocess_fn: Callable[[Any], tf.Tensor]
    input_size: tuple[int, int]
    last_conv_layer: str | None
    weights: str = "custom"
    output: str = "probabilities"
    preprocess_mode: str = ""
    graph: graph.FlatGraph = field(init=False)
    logit_model: keras.Model = field(init=False)
    _layer_models: dict[str, keras.Model] = field(init=False, default_factory=dict)
    _logits_fn: Any = field(init=False, default=None)

    def __repr__(self) -> str:
        # short: TensorFlow's retracing warning prints the bound method's owner
        return (f"Backbone(name={self.name!r}, weights={self.weights!r}, "
                f"input_size={tuple(self.input_size)}, last_conv_layer={self.last_conv_layer!r})")

    def __post_init__(self) -> None:
        self.graph, logits = logits_graph(self.keras_model, self.input_shape, self.output)
        self.logit_model = self.graph.model(logits, name=f"{self.keras_model.name}_logits")
        if self.last_conv_layer is None:
            self.last_conv_layer = find_last_conv_layer(self.graph)
        else:
            self.last_conv_layer = self.find_layer(self.last_conv_layer).path

    def find_layer(self, name: str) -> graph.Node:
        """The node of layer ``name`` (a name, or a path into nested sub-models)."""
        try:
            return self.graph.find(name)
        except KeyError as exc:
            raise ModelLoadError(
                f"model {self.name!r}: {exc.args[0]}; layers with 4-D outputs: "
                f"{', '.join(self.conv_layer_names()[-8:]) or 'none'}"
            ) from None

    def rewrite(self, replace: graph.Replace, name: str) -> keras.Model:
        """A logit model (preprocessed input → logits) in which every layer for which
        ``replace(layer)`` returns a callable runs that callable instead; the other layers are
        shared with :attr:`keras_model`."""
        head = self.graph.producer(self.graph.output) if self.output == "probabilities" else None
        final = head.source if head is not None else None

        def guarded(layer: Any) -> Any:  # the stripped softmax layer is not part of the logits
            return None if layer is final else replace(layer)

        g, logits = logits_graph(self.keras_model, self.input_shape, self.output, guarded)
        if g.opaque:
            raise ModelLoadError(
                f"model {self.name!r}: {name} rewrites the model's layers, but "
                f"{', '.join(g.opaque)} is a subclassed Keras model whose layers cannot be reached; "
                "rebuild it with the functional API, or use a plain-gradient method"
            )
        return g.model(logits, name=f"{self.keras_model.name}_{name}")

    # ------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        return int(self.logit_model.outputs[0].shape[-1])

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
            # plain TF ops: no autograph conversion of this class's methods
            self._logits_fn = tf.function(self.logits, input_signature=[spec],
                                          reduce_retracing=True, autograph=False)
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

    def layer_model(self, layer: str | None = None) -> keras.Model:
        """A model mapping the *preprocessed* input to ``[activations of layer, logits]``.

        ``layer`` is a name or a path into nested sub-models (default: the last conv layer).
        """
        name = layer or self.last_conv_layer
        if name is None:
            raise ModelLoadError(
                f"model {self.name!r} has no layer with a 4-D (N, H, W, C) output, so there is no "
                "default layer for class activation maps; name one with layer=..."
            )
        if name not in self._layer_models:
            node = self.find_layer(name)
            self._layer_models[name] = keras.Model(
                self.graph.input, [node.output, self.logit_model.outputs[0]]
            )
        return self._layer_models[name]

    def conv_layer_names(self) -> list[str]:
        """Paths of the layers with 4-D outputs, in graph order."""
        return [n.path for n in self.graph.nodes if n.shape is not None and len(n.shape) == 4]

    def channel_map(self) -> np.ndarray:
        """For each RGB input channel, the preprocessed channel it becomes (``[2, 1, 0]`` for
        caffe's RGB → BGR).

        The preprocessing is probed with constant images: its 3×3 channel matrix must have one
        nonzero entry per row and column (a per-channel affine map, possibly reordered), else a
        ``ValueError`` says why. Relevance of a preprocessed value is then the relevance of the
        input value it came from: ``relevance[..., bb.channel_map()]``.
        """
        h, w = self.input_size
        probe = np.zeros((4, h, w, 3), np.float32)
        for c in range(3):
            probe[c + 1, ..., c] = 100.0
        out = np.asarray(self.preprocess(probe))
        if out.shape != probe.shape:
            raise ValueError(f"the preprocessing of {self.name!r} changes the image shape")
        diff = out[1:] - out[:1]
        mat = diff.mean(axis=(1, 2))  # (input channel, preprocessed channel)
        if not np.allclose(diff, mat[:, None, None, :], atol=1e-3 * (np.abs(mat).max() + 1)):
            raise ValueError(f"the preprocessing of {self.name!r} is not pixel-wise")
        nz = np.abs(mat) > 1e-6 * np.abs(mat).max()
        if not (nz.sum(axis=0) == 1).all() or not (nz.sum(axis=1) == 1).all():
            raise ValueError(
                f"the preprocessing of {self.name!r} mixes colour channels; relevance cannot be "
                "mapped back to RGB input channels")
        return nz.argmax(axis=1)

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
    """Where ``keras.utils.get_file`` caches weights: ``<keras home>/models``, the home being
    ``$KERAS_HOME`` or ``~/.keras`` as Keras resolved it at import, or ``/tmp/.keras`` when
    that is not writable (Keras' own fallback)."""
    base = Path(keras.src.backend.config.keras_home()).expanduser()
    if not os.access(base if base.exists() else base.parent, os.W_OK):
        base = Path("/tmp") / ".keras"
    return base / "models"


def _seeded_build(builder: Callable[[str | None], keras.Model], seed: int) -> keras.Model:
    """Build with seeded initialisers, restoring Python's and numpy's global random state."""
    import random

    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    keras.utils.set_random_seed(seed)
    try:
        return builder(None)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002


def _build_registered(spec: ModelSpec, weights: str, seed: int) -> keras.Model:
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


def _keras_version_of(path: Path) -> str | None:
    """The Keras version that wrote a ``.keras`` archive (its ``metadata.json``), if readable."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def _load_model_file(path: Path) -> keras.Model:
    """Load a ``.keras`` or ``.h5`` model: Keras 3 files, and Keras 2 ``.h5`` files (Keras 3 reads
    those). A Keras 2 ``.keras`` archive goes through :mod:`tfxai.legacy`; a SavedModel folder
    is refused with the way out."""
    if not path.exists():
        raise ModelLoadError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            raise ModelLoadError(
                f"{str(path)!r} is a TensorFlow SavedModel folder; Keras 3 loads models only from "
                ".keras and .h5 files. Re-save it where it was built (model.save('model.keras')), "
                "or from TF <= 2.15: tf.keras.models.load_model(folder).save('model.h5')"
            )
        raise ModelLoadError(f"{str(path)!r} is a folder, not a .keras or .h5 model file")
    version = _keras_version_of(path) if path.suffix.lower() == ".keras" else None
    if version is not None and version.startswith("2."):
        from tfxai import legacy

        return legacy.load_keras2_archive(path, version)
    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types here
        raise ModelLoadError(
            f"cannot load Keras model from {str(path)!r}: {type(exc).__name__}: {exc}"
        ) from exc


def load_model(
    model: str | os.PathLike | keras.Model,
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
            or a ``keras.Model``.
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
    if isinstance(model, keras.Model):
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
    keras_model: keras.Model,
    preprocess: None | str | Callable[[Any], tf.Tensor],
    input_size: Sequence[int] | None,
    last_conv_layer: str | None,
    output: str,
    name: str | None,
    weights_label: str = "custom",
) -> Backbone:
    fn, mode = _resolve_preprocess(preprocess)
    if input_size is None:
        input_size = _input_size_of(keras_model)
    h, w = (int(v) for v in input_size)
    return Backbone(
        name=name or keras_model.name,
        keras_model=keras_model,
        preprocess_fn=fn,
        input_size=(h, w),
        last_conv_layer=last_conv_layer,
        weights=weights_label,
        output=output,
        preprocess_mode=mode,
    )


def _input_size_of(keras_model: keras.Model) -> tuple[int, int]:
    """``(H, W)`` of the model's input; for a model that accepts any size, the size of the
    registered Keras application nested in it (``Sequential([EfficientNetB0(include_top=False),
    ...])`` → 224 × 224)."""
    try:
        shape = graph.model_input_shape(keras_model)
    except graph.GraphError as exc:
        raise ModelLoadError(f"{exc}; or pass input_size=(H, W)") from None
    if len(shape) != 3:
        raise ModelLoadError(
            f"model {keras_model.name!r}: input shape {shape} is not (H, W, channels); "
            "tfxai explains image classifiers"
        )
    if shape[0] and shape[1]:
        return int(shape[0]), int(shape[1])
    found = _size_from_name(keras_model)
    if found is None:
        raise ModelLoadError(
            f"model {keras_model.name!r}: input shape {shape} has no fixed size; "
            "pass input_size=(H, W)"
        )
    return found
