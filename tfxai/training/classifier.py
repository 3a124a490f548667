"""Classifiers to train: ``small_cnn`` (built in code) or a backbone with a new dense head, the
training loop configuration (:class:`TrainConfig`: SGD with momentum or Adam, a learning-rate drop)
and test accuracy / macro-F1."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfxai import graph
from tfxai.backend import keras
from tfxai.models import MODELS, ModelLoadError, load_model, logits_graph
from tfxai.training.data import (
    FolderData,
    load_image_folder,
)

__all__ = ["TRAIN_OPTIONS", "train_config", "SMALL_CNN", "OPTIMIZERS", "build_small_cnn", "build_classifier", "TrainConfig", "train_classifier", "macro_f1", "evaluate_classifier", "check_model"]


SMALL_CNN = "small_cnn"


OPTIMIZERS = ("sgd", "adam")


def build_small_cnn(
    input_size: Sequence[int], num_classes: int, seed: int = 0, width: int = 16,
    batch_norm: bool = True, downsample: int = 1,
) -> keras.Model:
    """A small CNN for fast CPU runs: RGB 0..255 in, softmax out.

    ``Rescaling(1/255)`` → 3 × [Conv3×3 (width·2^i) + ReLU, MaxPool 2] → Conv3×3 (4·width) + ReLU
    (``last_conv``, the Grad-CAM layer) → GlobalAveragePooling → Dense(num_classes, softmax).
    """
    keras.utils.set_random_seed(int(seed))
    h, w = (int(v) for v in input_size)
    layers = keras.layers
    inp = keras.Input((h, w, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inp)
    if downsample > 1:
        x = layers.AveragePooling2D(downsample, name="downsample")(x)
    for i in range(3):
        if batch_norm:
            x = layers.Conv2D(width * 2**i, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
            x = layers.Activation("relu", name=f"relu{i + 1}")(x)
        else:
            x = layers.Conv2D(width * 2**i, 3, padding="same", activation="relu", name=f"conv{i + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = layers.Conv2D(4 * width, 3, padding="same", activation="relu", name="last_conv")(x)
    return keras.Model(inp, _dense_head(x, num_classes), name=SMALL_CNN)


def _dense_head(features: tf.Tensor, num_classes: int) -> tf.Tensor:
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    return keras.layers.Dense(int(num_classes), activation="softmax", name="predictions")(x)


def _affine_preprocess_layer(fn: Callable[[Any], tf.Tensor]) -> keras.layers.Layer | None:
    """The backbone's ``preprocess_input`` as a frozen per-pixel ``Dense(3)`` (None for identity).

    Every Keras ``preprocess_input`` mode (caffe, torch, tf) is affine per pixel — possibly with a
    channel swap — so it is recovered exactly from the images of the unit vectors and stored in the
    model as a standard layer; the saved model then takes RGB 0..255 like every tfxai model.
    """
    basis = np.concatenate([np.zeros((1, 3)), np.eye(3)]).astype(np.float32).reshape(4, 1, 1, 3)
    out = np.asarray(fn(tf.constant(basis * 100.0))).reshape(4, 3)
    bias = out[0]
    kernel = (out[1:] - bias) / 100.0
    probe = np.random.default_rng(0).uniform(0, 255, (1, 2, 2, 3)).astype(np.float32)
    expected = np.asarray(fn(tf.constant(probe)))
    if not np.allclose(probe @ kernel + bias, expected, rtol=1e-4, atol=1e-3):
        raise ModelLoadError(
            f"preprocessing {getattr(fn, '__name__', fn)!r} is not affine per pixel; "
            "it cannot be stored inside the fine-tuned model"
        )
    if np.allclose(kernel, np.eye(3)) and np.allclose(bias, 0.0):
        return None
    layer = keras.layers.Dense(3, name="preprocess", trainable=False)
    layer.build((None, None, None, 3))
    layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return layer


def _backbone_classifier(
    model: str, weights: str, num_classes: int, input_size: Sequence[int] | None, seed: int,
    freeze_backbone: bool,
) -> keras.Model:
    """A registered backbone or a saved model, cut at its last conv layer, with a new dense head.

    The convolutional part's layers are re-attached to a new 0..255 input (with the preprocessing
    as a layer), so the result is one flat functional model whose layers Grad-CAM can address by
    name.
    """
    bb = load_model(model, weights=weights, seed=seed)
    if bb.last_conv_layer is None:
        raise ModelLoadError(f"model {bb.name!r} has no conv layer to put a new head on")
    # Keras's own layers (not the fused inference batch norm of ``bb.graph``): the new model is
    # trained, with batch norm in training mode, and saved
    g, _ = logits_graph(bb.keras_model, bb.input_shape, bb.output, fused_batchnorm=False)
    features = keras.Model(g.input, g.find(bb.last_conv_layer).output)
    h, w = (int(v) for v in (input_size or bb.input_size))
    inp = keras.Input((h, w, 3), name="image")
    pre = _affine_preprocess_layer(bb.preprocess_fn)
    feats = graph.flatten(features, inputs=pre(inp) if pre is not None else inp).output
    for layer in features.layers:
        layer.trainable = not freeze_backbone
    if pre is not None:
        pre.trainable = False
    keras.utils.set_random_seed(int(seed))
    return keras.Model(inp, _dense_head(feats, num_classes), name=f"{bb.name}_finetuned")


def build_classifier(
    model: str,
    num_classes: int,
    input_size: Sequence[int] | None = None,
    weights: str | None = None,
    seed: int = 0,
    freeze_backbone: bool = False,
) -> keras.Model:
    """A trainable classifier: ``small_cnn`` (from scratch), or a backbone with a new dense head.

    Args:
        model: ``"small_cnn"``, a registered backbone name, or a saved ``.keras``/``.h5`` model.
        weights: backbones: ``"imagenet"`` (default), ``"none"`` or a weights file. ``small_cnn``
            always starts from a seeded random initialisation (``None``/``"none"``/``"imagenet"``
            are accepted; a file is refused).
        input_size: ``(H, W)``; default the backbone's, required for ``small_cnn``.
    """
    check_model(model, weights)
    if model == SMALL_CNN:
        if input_size is None:
            raise ValueError("input_size is required for small_cnn")
        return build_small_cnn(input_size, num_classes, seed)
    return _backbone_classifier(
        str(model), weights or "imagenet", num_classes, input_size, seed, freeze_backbone
    )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (Erdem 2021's fine-tuning protocol by default).

    ``optimizer="adam"`` (learning-rate schedule kept, momentum ignored) is offered for training
    ``small_cnn`` from scratch, where plain SGD needs many more epochs.
    """

    epochs: int = 15
    lr: float = 1e-3
    lr_after: float = 1e-4
    lr_drop_epoch: int = 7
    momentum: float = 0.9
    batch_size: int = 32
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("lr", "lr_after"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 <= float(self.momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if int(self.lr_drop_epoch) < 0:
            raise ValueError(f"lr_drop_epoch must be >= 0, got {self.lr_drop_epoch!r}")

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        if self.optimizer == "adam":
            return keras.optimizers.Adam(learning_rate=self.lr)
        return keras.optimizers.SGD(learning_rate=self.lr, momentum=self.momentum)

    def learning_rate(self, epoch: int) -> float:
        """``lr`` for the first ``lr_drop_epoch`` epochs (0-based ``epoch < lr_drop_epoch``), then ``lr_after``."""
        return float(self.lr if epoch < self.lr_drop_epoch else self.lr_after)


#: the fields of :class:`TrainConfig`, accepted as keyword options by finetune and roar
TRAIN_OPTIONS = ("epochs", "lr", "lr_after", "lr_drop_epoch", "momentum", "batch_size", "optimizer")


def train_config(config: TrainConfig | None = None, **options: Any) -> TrainConfig:
    """``config`` (default :class:`TrainConfig`) with ``options`` (its field names) replaced.

    Raises:
        TypeError: an option that is not a training setting, named with the known ones.
    """
    unknown = sorted(set(options) - set(TRAIN_OPTIONS))
    if unknown:
        raise TypeError(f"unknown training option(s) {', '.join(unknown)}; "
                        f"known: {', '.join(TRAIN_OPTIONS)}")
    return dataclasses.replace(config or TrainConfig(), **options)


def train_classifier(
    model: keras.Model, x: np.ndarray, y: np.ndarray, config: TrainConfig, seed: int = 0
) -> keras.Model:
    """Train ``model`` in place with SGD + momentum (or Adam) on sparse categorical cross-entropy.

    Shuffling is seeded (``keras.utils.set_random_seed(seed)``); the learning rate follows
    :meth:`TrainConfig.learning_rate`.
    """
    keras.utils.set_random_seed(int(seed))
    model.compile(
        optimizer=config.make_optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(),
    )
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, _lr: config.learning_rate(epoch))
    model.fit(
        np.asarray(x, np.float32), np.asarray(y, np.int64), batch_size=config.batch_size,
        epochs=config.epochs, shuffle=True, verbose=0, callbacks=[schedule],
    )
    return model


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean over classes of F1 = 2·TP / (2·TP + FP + FN) (0 for a class never seen nor predicted)."""
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(y_pred, np.int64)
    cm = np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, -1)
    tp = np.diag(cm).astype(np.float64)
    denom = 2 * tp + (cm.sum(axis=0) - tp) + (cm.sum(axis=1) - tp)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(f1.mean())


def evaluate_classifier(
    model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 64
) -> tuple[float, float]:
    """``(accuracy, macro_f1)`` of ``model`` on ``(x, y)``."""
    x = np.asarray(x, np.float32)
    probs = np.concatenate(
        [model(x[i : i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    )
    pred = probs.argmax(axis=1)
    y = np.asarray(y, np.int64)
    return float(np.mean(pred == y)), macro_f1(y, pred, probs.shape[1])


def check_model(model: str, weights: str | None = None) -> None:
    """What :func:`build_classifier` would refuse, found without loading anything: a model that
    is neither ``small_cnn``, a registered backbone nor an existing file, and a weights file that
    does not exist. Called first, so such a usage error writes nothing.

    Raises:
        ModelLoadError: (a ``ValueError``) naming the model or weights.
    """
    key = str(model)
    if key == SMALL_CNN:
        if weights not in (None, "none", "imagenet"):
            raise ValueError(f"weights: small_cnn is trained from scratch; got a weights file {weights!r}")
        return
    if key.lower() not in MODELS and not Path(key).exists():
        raise ModelLoadError(
            f"model {model!r} is neither 'small_cnn', a registered backbone "
            f"({', '.join(MODELS)}) nor an existing model file"
        )
    if key.lower() in MODELS and weights not in (None, "none", "imagenet") and \
            not Path(str(weights)).exists():
        raise ModelLoadError(f"{key}: weights file {str(weights)!r} does not exist "
                             "({opt:weights} takes 'imagenet', 'none' or a path to a weights file)")


def _load_training_data(
    model: str,
    data_dir: str | os.PathLike,
    input_size: Sequence[int] | None,
    out_dir: str | os.PathLike,
    seed: int,
    progress: bool,
) -> tuple[FolderData, Path]:
    """Load ``data_dir`` for training ``model``; the output folder is created by its first write.

    The images are resized to ``input_size``, else to a registered model's own input size, else
    (``small_cnn`` or a model file) to the size of the first image; ``seed`` seeds the split.
    Returns the data and the output folder.
    """
    if input_size is None and str(model).lower() in MODELS:
        input_size = MODELS[str(model).lower()].input_size
    data = load_image_folder(data_dir, input_size, seed=seed, progress=progress)
    return data, Path(out_dir)
