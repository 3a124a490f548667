"""RemOve And Retrain [Hooker, Erhan, Kindermans & Kim 2019, "A Benchmark for Interpretability
Methods in Deep Neural Networks"; Loreth 2023]: rank pixels by |attribution|, replace the top
share with the training mean, retrain per seed, record the test accuracy in ``roar.csv``."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from tfxai.backend import keras
from tfxai.models import load_model
from tfxai.primitives import top_k_mask
from tfxai.results.csvio import CsvTable
from tfxai.results.schema import ROAR_CSV_COLUMNS, ROAR_FILE
from tfxai.training.classifier import (
    SMALL_CNN,
    TrainConfig,
    build_classifier,
    evaluate_classifier,
    train_classifier,
)
from tfxai.training.data import (
    FolderData,
)
from tfxai.training.family import (
    check_fractions,
    prepare_training,
)

__all__ = ["RANDOM_METHOD", "ROAR_CSV_COLUMNS", "pixel_scores", "top_pixel_mask", "roar_mask", "attribution_scores", "random_scores", "roar"]


RANDOM_METHOD = "random"


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
    return top_k_mask(s, int(round(float(fraction) * h * w)))


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
    from tfxai.attribution.registry import get_attributer

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
    """Append ROAR rows with the crash-safe append every results table uses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    CsvTable(path, ROAR_CSV_COLUMNS).append(rows)


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
    out_dir: str | os.PathLike = "results",
    *,
    weights: str | None = None,
    seed: int = 0,
    input_size: Sequence[int] | None = None,
    method_params: dict[str, dict[str, Any]] | None = None,
    target: str = "predicted",
    include_zero: bool = True,
    progress: bool = True,
    config: TrainConfig | None = None,
    **train: Any,
) -> pd.DataFrame:
    """RemOve And Retrain [Hooker et al. 2019; Loreth 2023]; writes ``<out>/roar.csv``.

    1. Train ``model`` on the clean training data (seed ``seed``) and explain every train and test
       image with each method (target: the model's ``predicted`` class or the ``label``).
    2. Rank pixels by Σ_c |attribution|; a ``random`` ranking is the baseline.
    3. For each fraction t: replace the top t of pixels with the per-channel mean of the clean
       training images, in train and test alike; retrain a fresh model per seed
       (``seed + 1 … seed + seeds``) and record its test accuracy.

    The optimisation settings are ``config`` (:class:`TrainConfig`) or its fields as keyword
    options (``epochs``, ``lr``, ``lr_after``, ``lr_drop_epoch``, ``momentum``, ``batch_size``,
    ``optimizer``). With ``include_zero``, the unmodified data is trained once per seed and
    recorded as fraction 0 for every method (and ``random``), so each curve starts at the clean
    accuracy. Rows already in ``roar.csv`` are skipped (a killed run resumes). Returns the full
    ``roar.csv`` table.
    """
    fracs = _check_roar_options(fractions, seeds, target)
    methods = [m for m in methods if m != RANDOM_METHOD]
    config, data, out = prepare_training(model, data_dir, input_size, out_dir, seed, progress,
                                         weights, config, train)
    path = out / ROAR_FILE
    run_seeds = [int(seed) + 1 + i for i in range(int(seeds))]
    all_methods = [*methods, RANDOM_METHOD]
    if include_zero:
        _clean_accuracies(path, model, data, all_methods, run_seeds, config, weights, progress)
    rankings = _rankings(model, data, methods, config, seed, weights, method_params or {}, target,
                         progress)
    done = _read_done(path)
    todo = [(m, t, s) for m in all_methods for t in fracs for s in run_seeds
            if not _done(done, m, t, s)]
    fill = _channel_mean(data.x_train)
    for method, fraction, s in tqdm(todo, desc="roar retrain", disable=not progress,
                                    file=sys.stderr):
        tr_scores, te_scores = rankings[method]
        x_tr = roar_mask(data.x_train, tr_scores, fraction, fill)
        x_te = roar_mask(data.x_test, te_scores, fraction, fill)
        acc = _retrain_accuracy(model, data, x_tr, x_te, config, s, weights)
        _append_rows(path, [{"method": method, "fraction": fraction, "seed": s, "accuracy": acc}])
    return _read_done(path)


def _check_roar_options(fractions: Sequence[float], seeds: int, target: str) -> list[float]:
    fracs = check_fractions(fractions)
    if int(seeds) < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds!r}")
    if target not in ("predicted", "label"):
        raise ValueError(f"target must be 'predicted' or 'label', got {target!r}")
    return fracs


def _clean_accuracies(path: Path, model: str, data: FolderData, all_methods: list[str],
                      run_seeds: list[int], config: TrainConfig, weights: str | None,
                      progress: bool) -> None:
    """Fraction 0: the unmodified data trained once per seed, one row per method (resumes)."""
    done = _read_done(path)
    for s in tqdm(run_seeds, desc="roar clean", disable=not progress, file=sys.stderr):
        if all(_done(done, m, 0.0, s) for m in all_methods):
            continue
        acc = _retrain_accuracy(model, data, data.x_train, data.x_test, config, s, weights)
        _append_rows(path, [{"method": m, "fraction": 0.0, "seed": s, "accuracy": acc}
                            for m in all_methods])


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
