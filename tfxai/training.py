"""Fine-tuning model families and ROAR: the trainable side of tfxai.

* :func:`finetune` trains one classifier per training-data fraction (Erdem 2021's reliability
  protocol: a new dense head on a backbone, SGD with momentum, cross-entropy, 15 epochs, learning rate
  1e-3 dropped to 1e-4 after epoch 7) and writes ``<out>/<model>_f<fraction>.keras`` plus
  ``<out>/models.csv`` with accuracy and macro-F1 on the test split.
* :func:`roar` runs RemOve And Retrain [Hooker, Erhan, Kindermans & Kim 2019, "A Benchmark for
  Interpretability Methods in Deep Neural Networks"; Loreth 2023]: rank pixels by |attribution|
  (channels summed), replace the top ``t`` share with the per-channel training mean in train and
  test data alike, retrain from scratch per seed and record the test accuracy, against a random
  ranking, in ``roar.csv``.

Data is an ImageNet-style folder with one sub-folder of images per class (classes in sorted order).
When the folder has ``train/`` and ``test/`` sub-folders they are the split; otherwise a seeded,
stratified 80/20 split is drawn. Images are RGB float32 0..255; every saved model takes that input
(its preprocessing is a layer inside the model), so ``tfxai.load_model(path)`` reads it back with
the default identity preprocessing.

``model="small_cnn"`` is a small CNN built in code (:func:`build_small_cnn`) for runs that must
finish in minutes on a CPU.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm.auto import tqdm

from tfxai import graph
from tfxai.backend import keras
from tfxai.data.images import IMAGE_EXTENSIONS, load_image, resize_image
from tfxai.models import MODELS, ModelLoadError, load_model, logits_graph

__all__ = [
    "SMALL_CNN",
    "FolderData",
    "TrainConfig",
    "load_image_folder",
    "stratified_split",
    "stratified_subset",
    "build_small_cnn",
    "build_classifier",
    "train_classifier",
    "evaluate_classifier",
    "macro_f1",
    "finetune",
    "pixel_scores",
    "top_pixel_mask",
    "roar_mask",
    "attribution_scores",
    "random_scores",
    "roar",
    "MODELS_CSV_COLUMNS",
    "ROAR_CSV_COLUMNS",
]

SMALL_CNN = "small_cnn"
RANDOM_METHOD = "random"
MODELS_CSV_COLUMNS = (
    "model", "file", "base_model", "weights", "fraction", "n_train", "n_test", "accuracy",
    "macro_f1", "epochs", "seed",
)
ROAR_CSV_COLUMNS = ("method", "fraction", "seed", "accuracy")
OPTIMIZERS = ("sgd", "adam")


# =========================================================================================== data


@dataclass
class FolderData:
    """An image-folder dataset, loaded and split. Images: float32 RGB 0..255 (N, H, W, 3)."""

    classes: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    split: str  # "folders" (train/ and test/ given) or "stratified"
    train_paths: list[Path] = field(default_factory=list)
    test_paths: list[Path] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_size(self) -> tuple[int, int]:
        return (int(self.x_train.shape[1]), int(self.x_train.shape[2]))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """Sub-folders of ``root`` holding images (others, e.g. ``annotations/``, are ignored)."""
    folders = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        images = _images_in(sub)
        if images:
            folders[sub.name] = images
    return folders


def _listing(root: Path, classes: Sequence[str] | None = None) -> tuple[list[Path], np.ndarray, list[str]]:
    folders = _class_folders(root)
    if classes is None:
        classes = sorted(folders)
        if len(classes) < 2:
            raise ValueError(
                f"data folder {str(root)!r} must hold one sub-folder of images per class "
                f"(at least two classes); found {len(classes)}"
            )
    unknown = sorted(set(folders) - set(classes))
    if unknown:
        raise ValueError(f"data folder {str(root)!r}: class folders {unknown} not in the training classes")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = folders.get(name, [])
        paths += found
        labels += [index] * len(found)
    return paths, np.asarray(labels, dtype=np.int64), list(classes)


def _load_images(paths: Sequence[Path], size: tuple[int, int], progress: bool) -> np.ndarray:
    out = np.empty((len(paths), size[0], size[1], 3), np.float32)
    for i, p in enumerate(tqdm(paths, desc="loading images", disable=not progress, file=sys.stderr)):
        img = load_image(p)
        out[i] = img if img.shape[:2] == tuple(size) else resize_image(img, size)[0]
    return out


def _first_image_size(paths: Sequence[Path]) -> tuple[int, int]:
    img = load_image(paths[0])
    return (int(img.shape[0]), int(img.shape[1]))


def stratified_split(
    labels: np.ndarray, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: ``round(test_fraction·n_c)`` (at least 1 when n_c ≥ 2) per class to test.

    Returns sorted index arrays ``(train, test)``.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), 0x5EED])
    test = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = round(test_fraction * len(idx))
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        test.append(idx[:k])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def stratified_subset(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Indices of a seeded stratified ``fraction`` of ``labels`` (``ceil(fraction·n_c)`` per class).

    The subsets are nested: for one seed, a larger fraction contains every smaller one.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), 0xF4AC])
    keep = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        keep.append(idx[: max(1, int(np.ceil(float(fraction) * len(idx) - 1e-9)))])
    return np.sort(np.concatenate(keep))


def load_image_folder(
    data_dir: str | os.PathLike,
    input_size: Sequence[int] | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    progress: bool = True,
) -> FolderData:
    """Load an ImageNet-style folder per class, split into train and test.

    Args:
        data_dir: a folder of class folders, or a folder with ``train/`` and ``test/`` each holding
            class folders (then that split is used).
        input_size: ``(H, W)`` to resize to (``squash``); default: the size of the first image.
        seed: seed of the stratified split.
        test_fraction: share of each class held out when the data has no split.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"data folder {str(root)!r} does not exist")
    has_split = (root / "train").is_dir() and (root / "test").is_dir()
    if has_split:
        train_paths, y_train, classes = _listing(root / "train")
        test_paths, y_test, _ = _listing(root / "test", classes)
        split = "folders"
    else:
        paths, labels, classes = _listing(root)
        tr, te = stratified_split(labels, test_fraction, seed)
        train_paths, test_paths = [paths[i] for i in tr], [paths[i] for i in te]
        y_train, y_test = labels[tr], labels[te]
        split = "stratified"
    if not test_paths:
        raise ValueError(f"data folder {str(root)!r}: the test split is empty")
    size = tuple(int(v) for v in input_size) if input_size else _first_image_size(train_paths)
    return FolderData(
        classes=classes,
        x_train=_load_images(train_paths, size, progress),
        y_train=y_train,
        x_test=_load_images(test_paths, size, progress),
        y_test=y_test,
        split=split,
        train_paths=train_paths,
        test_paths=test_paths,
    )


# =========================================================================================== models


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


# =========================================================================================== training


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


def _fraction_label(fraction: float) -> str:
    return repr(float(fraction))


def _model_label(model: str) -> str:
    key = str(model)
    if key == SMALL_CNN or key.lower() in MODELS:
        return key.lower()
    return Path(key).stem


def check_fractions(fractions: Iterable[float], low_open: bool = True) -> list[float]:
    """Validate training/removal fractions: each in (0, 1] (or [0, 1] with ``low_open=False``)."""
    out = []
    for f in fractions:
        value = float(f)
        ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
        if not ok:
            raise ValueError(f"fraction {f!r} must be in {'(0, 1]' if low_open else '[0, 1]'}")
        out.append(value)
    if not out:
        raise ValueError("fractions: give at least one fraction")
    return out


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL)
    os.replace(tmp, path)


def _update_models_csv(path: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Replace the rows of the same ``model`` in ``path`` (other families stay) and write atomically."""
    new = pd.DataFrame(rows, columns=list(MODELS_CSV_COLUMNS))
    if path.exists():
        old = pd.read_csv(path, dtype={"model": str, "file": str})
        old = old[~old["model"].isin(new["model"])]
        new = pd.concat([old, new], ignore_index=True)
    _write_csv(path, new)
    return new


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
                             "(--weights takes 'imagenet', 'none' or a path to a weights file)")


def finetune(
    model: str,
    data_dir: str | os.PathLike,
    fractions: Sequence[float] = (0.2, 0.4, 0.6, 0.8, 1.0),
    out_dir: str | os.PathLike = "models",
    epochs: int = 15,
    lr: float = 1e-3,
    lr_after: float = 1e-4,
    lr_drop_epoch: int = 7,
    momentum: float = 0.9,
    batch_size: int = 32,
    weights: str | None = None,
    seed: int = 0,
    input_size: Sequence[int] | None = None,
    freeze_backbone: bool = False,
    optimizer: str = "sgd",
    progress: bool = True,
) -> pd.DataFrame:
    """Fine-tune one model per training fraction and write them with ``models.csv``.

    For each fraction f, a stratified, nested subset of ``ceil(f·n_c)`` training images per class
    trains a fresh classifier (:func:`build_classifier`: the backbone with a new
    GlobalAveragePooling + Dense(softmax) head, or ``small_cnn`` from scratch) with SGD + momentum
    and cross-entropy; the learning rate drops from ``lr`` to ``lr_after`` after ``lr_drop_epoch``
    epochs (Erdem 2021). Each model is saved as ``<out>/<model>_f<fraction>.keras`` and scored on
    the test split.

    Returns:
        the rows written to ``<out>/models.csv`` for this call (columns :data:`MODELS_CSV_COLUMNS`:
        ``model`` is the file stem, the name ``tfxai.load_model(file)`` gives the model).
    """
    fracs = check_fractions(fractions)
    config = TrainConfig(epochs, lr, lr_after, lr_drop_epoch, momentum, batch_size, optimizer)
    check_model(model, weights)
    data, out = _load_training_data(model, data_dir, input_size, out_dir, seed, progress)
    # the first model is built before anything is written: a model that cannot be built (weights
    # not reachable, a broken model file, no conv layer) leaves no trace
    first = build_classifier(model, data.num_classes, data.input_size, weights, seed, freeze_backbone)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(data.classes) + "\n")
    label = _model_label(model)
    rows = []
    bar = tqdm(fracs, desc=f"finetune {label}", disable=not progress, file=sys.stderr)
    for k, fraction in enumerate(bar):
        idx = stratified_subset(data.y_train, fraction, seed)
        net = first if k == 0 else build_classifier(
            model, data.num_classes, data.input_size, weights, seed, freeze_backbone)
        train_classifier(net, data.x_train[idx], data.y_train[idx], config, seed)
        stem = f"{label}_f{_fraction_label(fraction)}"
        net.save(out / f"{stem}.keras")
        acc, f1 = evaluate_classifier(net, data.x_test, data.y_test)
        bar.set_postfix(fraction=fraction, accuracy=f"{acc:.3f}")
        rows.append({
            "model": stem, "file": f"{stem}.keras", "base_model": label,
            "weights": weights or ("none" if model == SMALL_CNN else "imagenet"),
            "fraction": fraction, "n_train": len(idx), "n_test": len(data.y_test),
            "accuracy": acc, "macro_f1": f1, "epochs": config.epochs, "seed": seed,
        })
        keras.backend.clear_session()
    _update_models_csv(out / "models.csv", rows)
    return pd.DataFrame(rows, columns=list(MODELS_CSV_COLUMNS))


# =========================================================================================== ROAR


def pixel_scores(attributions: np.ndarray) -> np.ndarray:
    """Per-pixel importance for ROAR: Σ_c |a_c| for (N, H, W, C) attributions, |a| for (N, H, W)."""
    a = np.abs(np.asarray(attributions, dtype=np.float32))
    if a.ndim == 4:
        return a.sum(axis=-1)
    if a.ndim == 3:
        return a
    raise ValueError(f"attributions must be (N, H, W) or (N, H, W, C), got shape {a.shape}")


def top_pixel_mask(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean (N, H, W): the ``round(fraction·H·W)`` highest-scoring pixels of each image.

    Selection is exact and deterministic: pixels above the k-th largest score (found with
    ``np.partition``) are all taken; ties at that score are broken in favour of the lower flat
    (row-major) index.
    """
    s = np.asarray(scores, dtype=np.float32)
    if s.ndim != 3:
        raise ValueError(f"scores must be (N, H, W), got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("attributions contain NaN or infinite values; cannot rank pixels")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    n, h, w = s.shape
    flat = s.reshape(n, h * w)
    k = int(round(float(fraction) * h * w))
    if k == 0:
        return np.zeros(s.shape, bool)
    if k == h * w:
        return np.ones(s.shape, bool)
    kth = np.partition(flat, h * w - k, axis=1)[:, h * w - k][:, None]
    above = flat > kth
    tied = flat == kth
    need = k - above.sum(axis=1, keepdims=True)
    take_tied = tied & (np.cumsum(tied, axis=1) <= need)
    return (above | take_tied).reshape(s.shape)


def roar_mask(
    images: np.ndarray, attributions: np.ndarray, fraction: float, fill: Any
) -> np.ndarray:
    """Replace each image's top ``fraction`` of pixels by |attribution| with ``fill``.

    Args:
        images: (N, H, W, C) float.
        attributions: (N, H, W, C) (channels reduced by Σ|a|) or (N, H, W) scores.
        fraction: share of pixels to replace, in [0, 1]; ``round(fraction·H·W)`` per image.
        fill: a scalar or a per-channel (C,) value, e.g. the training set's channel mean.

    Returns:
        a float32 copy of ``images`` with the selected pixels (all channels) set to ``fill``.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {x.shape}")
    scores = pixel_scores(attributions)
    if scores.shape != x.shape[:3]:
        raise ValueError(f"attributions {np.shape(attributions)} do not match images {x.shape}")
    fill_arr = np.broadcast_to(np.asarray(fill, dtype=np.float32), (x.shape[-1],))
    mask = top_pixel_mask(scores, fraction)
    return np.where(mask[..., None], fill_arr, x).astype(np.float32)


def attribution_scores(
    model: keras.Model,
    method: str,
    images: np.ndarray,
    targets: np.ndarray | None = None,
    params: dict[str, Any] | None = None,
    batch_size: int = 64,
    seed: int = 0,
) -> np.ndarray:
    """Pixel scores (N, H, W) of ``method`` (any registered attribution method) on ``model``.

    The model takes RGB 0..255 with a softmax output (as saved by :func:`finetune`); gradients
    are taken on the target logit. ``targets=None`` explains the predicted class.
    """
    from tfxai.attribution.base import get_attributer

    bb = load_model(model, output="probabilities")
    att = get_attributer(method, bb, batch_size=batch_size, **(params or {}))
    seeds = np.arange(len(images), dtype=np.int64) + int(seed)
    return pixel_scores(att.attribute(images, targets, seeds=seeds))


def random_scores(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Uniform random pixel scores (N, H, W): the ROAR baseline ranking."""
    return np.random.default_rng([int(seed), 0xA11]).random(tuple(shape), dtype=np.float32)


def _channel_mean(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64).mean(axis=(0, 1, 2)).astype(np.float32)


def _read_done(path: Path) -> pd.DataFrame:
    if path.exists():
        return pd.read_csv(path, dtype={"method": str})
    return pd.DataFrame(columns=list(ROAR_CSV_COLUMNS))


def _append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    frame = pd.concat([_read_done(path), pd.DataFrame(rows, columns=list(ROAR_CSV_COLUMNS))])
    _write_csv(path, frame.reset_index(drop=True))


def _done(table: pd.DataFrame, method: str, fraction: float, seed: int) -> bool:
    hit = (table["method"] == method) & np.isclose(table["fraction"].astype(float), fraction) & (
        table["seed"].astype(int) == seed
    )
    return bool(hit.any())


def _retrain_accuracy(
    model: str, data: FolderData, x_train: np.ndarray, x_test: np.ndarray, config: TrainConfig,
    seed: int, weights: str | None,
) -> float:
    net = build_classifier(model, data.num_classes, data.input_size, weights, seed)
    train_classifier(net, x_train, data.y_train, config, seed)
    acc, _ = evaluate_classifier(net, x_test, data.y_test)
    keras.backend.clear_session()
    return acc


def roar(
    model: str = SMALL_CNN,
    data_dir: str | os.PathLike = "data",
    methods: Sequence[str] = ("saliency", "integrated_gradients"),
    fractions: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
    seeds: int = 5,
    epochs: int = 15,
    out_dir: str | os.PathLike = "results",
    lr: float = 1e-3,
    lr_after: float = 1e-4,
    lr_drop_epoch: int = 7,
    momentum: float = 0.9,
    batch_size: int = 32,
    weights: str | None = None,
    seed: int = 0,
    input_size: Sequence[int] | None = None,
    optimizer: str = "sgd",
    method_params: dict[str, dict[str, Any]] | None = None,
    target: str = "predicted",
    include_zero: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """RemOve And Retrain [Hooker et al. 2019; Loreth 2023]; writes ``<out>/roar.csv``.

    1. Train ``model`` on the clean training data (seed ``seed``) and explain every train and test
       image with each method (target: the model's ``predicted`` class or the ``label``).
    2. Rank pixels by Σ_c |attribution|; a ``random`` ranking is the baseline.
    3. For each fraction t: replace the top t of pixels with the per-channel mean of the clean
       training images, in train and test alike; retrain a fresh model per seed
       (``seed + 1 … seed + seeds``) and record its test accuracy.

    With ``include_zero``, the unmodified data is trained once per seed and recorded as fraction 0
    for every method (and ``random``), so each curve starts at the clean accuracy. Rows already in
    ``roar.csv`` are skipped (a killed run resumes). Returns the full ``roar.csv`` table.
    """
    fracs = check_fractions(fractions)
    if int(seeds) < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds!r}")
    if target not in ("predicted", "label"):
        raise ValueError(f"target must be 'predicted' or 'label', got {target!r}")
    methods = [m for m in methods if m != RANDOM_METHOD]
    config = TrainConfig(epochs, lr, lr_after, lr_drop_epoch, momentum, batch_size, optimizer)
    check_model(model, weights)
    data, out = _load_training_data(model, data_dir, input_size, out_dir, seed, progress)
    path = out / "roar.csv"
    run_seeds = [int(seed) + 1 + i for i in range(int(seeds))]
    fill = _channel_mean(data.x_train)
    all_methods = [*methods, RANDOM_METHOD]

    if include_zero:
        done = _read_done(path)
        rows = []
        for s in tqdm(run_seeds, desc="roar clean", disable=not progress, file=sys.stderr):
            if all(_done(done, m, 0.0, s) for m in all_methods):
                continue
            acc = _retrain_accuracy(model, data, data.x_train, data.x_test, config, s, weights)
            rows += [{"method": m, "fraction": 0.0, "seed": s, "accuracy": acc} for m in all_methods]
        if rows:
            _append_rows(path, rows)

    rankings = _rankings(model, data, methods, config, seed, weights, method_params or {}, target, progress)
    todo = [(m, t, s) for m in all_methods for t in fracs for s in run_seeds]
    done = _read_done(path)
    todo = [job for job in todo if not _done(done, *job)]
    for method, fraction, s in tqdm(todo, desc="roar retrain", disable=not progress, file=sys.stderr):
        tr_scores, te_scores = rankings[method]
        x_tr = roar_mask(data.x_train, tr_scores, fraction, fill)
        x_te = roar_mask(data.x_test, te_scores, fraction, fill)
        acc = _retrain_accuracy(model, data, x_tr, x_te, config, s, weights)
        _append_rows(path, [{"method": method, "fraction": fraction, "seed": s, "accuracy": acc}])
    return _read_done(path)


def _rankings(
    model: str, data: FolderData, methods: Sequence[str], config: TrainConfig, seed: int,
    weights: str | None, method_params: dict[str, dict[str, Any]], target: str, progress: bool,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pixel scores (train, test) of each method on a model trained on clean data, plus random."""
    n_train = len(data.x_train)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if methods:
        net = build_classifier(model, data.num_classes, data.input_size, weights, seed)
        train_classifier(net, data.x_train, data.y_train, config, seed)
        x_all = np.concatenate([data.x_train, data.x_test])
        labels = np.concatenate([data.y_train, data.y_test]) if target == "label" else None
        for method in tqdm(methods, desc="roar attributions", disable=not progress, file=sys.stderr):
            scores = attribution_scores(net, method, x_all, labels, method_params.get(method), seed=seed)
            out[method] = (scores[:n_train], scores[n_train:])
    shape = data.x_train.shape[1:3]
    out[RANDOM_METHOD] = (
        random_scores((n_train, *shape), seed),
        random_scores((len(data.x_test), *shape), seed + 7919),
    )
    return out
