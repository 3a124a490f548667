"""Loading backbones: :func:`load_model` and the names it re-exports.

A backbone is a Keras image classifier wrapped as a :class:`Backbone` (:mod:`tfxai.backbone`): RGB
0..255 images at ``input_size`` in, the model's own preprocessing as differentiable TF ops,
pre-softmax logits (the softmax is stripped from the graph, never inverted numerically) and a
default Grad-CAM layer.

:func:`load_model` accepts three kinds of model:

* a registered name (:mod:`tfxai.model_registry`): the Keras applications VGG16, ResNet50,
  DenseNet121, EfficientNetB0 and InceptionV3, plus the offline-pretrained EfficientNet-Lite0, -Lite1
  and -Lite2 (:mod:`tfxai.zoo.efficientnet_lite`), with ImageNet, seeded random or file weights;
* a ``.keras``/``.h5`` file (a Keras 2 ``.keras`` archive is converted by :mod:`tfxai.legacy`);
* any functional or Sequential Keras 3 model, nested sub-models included (it is flattened over
  its own layers by :mod:`tfxai.graph`).

This module re-exports the public names of :mod:`tfxai.backbone`, :mod:`tfxai.model_registry` and
:mod:`tfxai.model_errors`, so ``tfxai.models.Backbone``, ``tfxai.models.MODELS`` and
``tfxai.models.ModelLoadError`` keep working.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfxai import graph, legacy
from tfxai.backbone import Backbone
from tfxai.backbone import find_last_conv_layer as find_last_conv_layer  # re-export
from tfxai.backbone import logits_graph as logits_graph  # re-export
from tfxai.backend import keras
from tfxai.model_errors import ModelLoadError, RandomWeightsWarning
from tfxai.model_registry import (
    MODELS,
    ModelSpec,
    get_model_spec,
    list_models,
    resolve_preprocess,
)

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

_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"


def _random_init_warning(name: str, seed: int) -> None:
    """Warn that ``name`` is built with random weights (issued for load_model's caller)."""
    warnings.warn(
        f"{name}: weights='none' builds a randomly initialised network (seed {seed}). "
        "Explanations of a random model mean nothing; use it only for tests and timing.",
        RandomWeightsWarning,
        stacklevel=5,  # the caller of load_model,
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
    """The Keras model of ``spec`` with ``weights``; a failure is a :class:`ModelLoadError` that
    says how to get the weights."""
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
                "or pass {opt:weights} /path/to/weights.h5; use {opt:weights} none for a random-weight "
                "smoke test."
            ) from exc
    path = Path(weights)
    if not path.exists():
        raise ModelLoadError(
            f"{spec.name}: weights file {str(path)!r} does not exist "
            "({opt:weights} takes 'imagenet', 'none' or a path to a weights file)"
        )
    model = _seeded_build(spec.builder, seed)
    try:
        model.load_weights(str(path))
    except Exception as exc:  # noqa: BLE001 - h5py/keras raise many types here
        raise ModelLoadError(
            f"{spec.name}: cannot load weights from {str(path)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return model


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
        _refuse_custom_options(spec, preprocess, input_size, output)
        return _load_registered(spec, weights, last_conv_layer, seed)
    path = Path(key)
    if path.suffix.lower() in (".keras", ".h5", ".hdf5") or path.exists():
        keras_model = _load_model_file(path)
        return _wrap_custom(
            keras_model, preprocess, input_size, last_conv_layer, output, name or path.stem,
            weights_label=str(path.resolve()),
        )
    get_model_spec(key)  # raises the unknown-name error
    raise AssertionError("unreachable")


def _refuse_custom_options(
    spec: ModelSpec, preprocess: Any, input_size: Sequence[int] | None, output: str
) -> None:
    """A registered backbone has its own preprocessing, input size and output: the options that
    set them for custom models are an error."""
    given = {"preprocess": preprocess, "input_size": input_size}
    if output != "probabilities":
        given["output"] = output
    extra = sorted(k for k, v in given.items() if v is not None)
    if extra:
        raise ModelLoadError(
            f"{spec.name}: option(s) {extra} apply to custom models only; a registered "
            "backbone has its own preprocessing, input size and softmax output"
        )


def _load_registered(
    spec: ModelSpec, weights: str | None, last_conv_layer: str | None, seed: int
) -> Backbone:
    """The registered backbone ``spec`` with ``weights`` (``"imagenet"``, ``"none"`` or a path)."""
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


def _wrap_custom(
    keras_model: keras.Model,
    preprocess: None | str | Callable[[Any], tf.Tensor],
    input_size: Sequence[int] | None,
    last_conv_layer: str | None,
    output: str,
    name: str | None,
    weights_label: str = "custom",
) -> Backbone:
    """A Backbone around a custom Keras model, with its preprocessing and input size resolved."""
    fn, mode = resolve_preprocess(preprocess)
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
