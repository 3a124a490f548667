"""Fine-tuning a model family (Erdem 2021's reliability protocol): one classifier per
training-data fraction, written with ``models.csv``."""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from tfxai.backend import keras
from tfxai.models import MODELS
from tfxai.results.schema import MODELS_CSV_COLUMNS, MODELS_FILE
from tfxai.training.classifier import (
    SMALL_CNN,
    TrainConfig,
    _load_training_data,
    build_classifier,
    check_model,
    evaluate_classifier,
    train_classifier,
    train_config,
)
from tfxai.training.data import (
    FolderData,
    stratified_subset,
)

__all__ = ["MODELS_CSV_COLUMNS", "check_fractions", "finetune"]


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


def prepare_training(
    model: str, data_dir: str | os.PathLike, input_size: Sequence[int] | None,
    out_dir: str | os.PathLike, seed: int, progress: bool, weights: str | None,
    config: TrainConfig | None, train: dict[str, Any],
) -> tuple[TrainConfig, FolderData, Path]:
    """The common start of :func:`finetune` and :func:`~tfxai.training.retrain.roar`: the
    optimisation settings (``config`` overridden by the keyword options ``train``), the model
    checked, and the data loaded (with the output folder)."""
    config = train_config(config, **train)
    check_model(model, weights)
    data, out = _load_training_data(model, data_dir, input_size, out_dir, seed, progress)
    return config, data, out


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


def finetune(
    model: str,
    data_dir: str | os.PathLike,
    fractions: Sequence[float] = (0.2, 0.4, 0.6, 0.8, 1.0),
    out_dir: str | os.PathLike = "models",
    *,
    weights: str | None = None,
    seed: int = 0,
    input_size: Sequence[int] | None = None,
    freeze_backbone: bool = False,
    progress: bool = True,
    config: TrainConfig | None = None,
    **train: Any,
) -> pd.DataFrame:
    """Fine-tune one model per training fraction and write them with ``models.csv``.

    For each fraction f, a stratified, nested subset of ``ceil(f·n_c)`` training images per class
    trains a fresh classifier (:func:`build_classifier`: the backbone with a new
    GlobalAveragePooling + Dense(softmax) head, or ``small_cnn`` from scratch) with SGD + momentum
    and cross-entropy; the learning rate drops from ``lr`` to ``lr_after`` after ``lr_drop_epoch``
    epochs (Erdem 2021). Each model is saved as ``<out>/<model>_f<fraction>.keras`` and scored on
    the test split.

    The optimisation settings are ``config`` (:class:`TrainConfig`, Erdem 2021's by default), or
    any of its fields as keyword options (``epochs=15, lr=1e-3, lr_after=1e-4, lr_drop_epoch=7,
    momentum=0.9, batch_size=32, optimizer="sgd"``), which override ``config``.

    Returns:
        the rows written to ``<out>/models.csv`` for this call (columns :data:`MODELS_CSV_COLUMNS`:
        ``model`` is the file stem, the name ``tfxai.load_model(file)`` gives the model).
    """
    fracs = check_fractions(fractions)
    config, data, out = prepare_training(model, data_dir, input_size, out_dir, seed, progress,
                                         weights, config, train)
    # the first model is built before anything is written: a model that cannot be built (weights
    # not reachable, a broken model file, no conv layer) leaves no trace
    first = build_classifier(model, data.num_classes, data.input_size, weights, seed, freeze_backbone)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classes.txt").write_text("\n".join(data.classes) + "\n")
    rows = []
    bar = tqdm(fracs, desc=f"finetune {_model_label(model)}", disable=not progress,
               file=sys.stderr)
    for k, fraction in enumerate(bar):
        net = first if k == 0 else build_classifier(
            model, data.num_classes, data.input_size, weights, seed, freeze_backbone)
        rows.append(_train_fraction(net, model, data, fraction, out, config, weights, seed))
        bar.set_postfix(fraction=fraction, accuracy=f"{rows[-1]['accuracy']:.3f}")
        keras.backend.clear_session()
    _update_models_csv(out / MODELS_FILE, rows)
    return pd.DataFrame(rows, columns=list(MODELS_CSV_COLUMNS))


def _train_fraction(net: keras.Model, model: str, data: FolderData, fraction: float, out: Path,
                    config: TrainConfig, weights: str | None, seed: int) -> dict[str, Any]:
    """Train ``net`` on the nested stratified ``fraction`` of the training split, save it as
    ``<out>/<model>_f<fraction>.keras`` and return its ``models.csv`` row."""
    idx = stratified_subset(data.y_train, fraction, seed)
    train_classifier(net, data.x_train[idx], data.y_train[idx], config, seed)
    stem = f"{_model_label(model)}_f{_fraction_label(fraction)}"
    net.save(out / f"{stem}.keras")
    acc, f1 = evaluate_classifier(net, data.x_test, data.y_test)
    return {
        "model": stem, "file": f"{stem}.keras", "base_model": _model_label(model),
        "weights": weights or ("none" if model == SMALL_CNN else "imagenet"),
        "fraction": fraction, "n_train": len(idx), "n_test": len(data.y_test),
        "accuracy": acc, "macro_f1": f1, "epochs": config.epochs, "seed": seed,
    }
