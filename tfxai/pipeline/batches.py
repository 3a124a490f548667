"""The batch loop shared by ``attribute`` and ``evaluate``: which images have work left (the
resume fast path), loading and predicting a batch once, error rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfxai.attribution.base import Attributer
from tfxai.data.dataset import Batch, Sample, load_batch
from tfxai.evaluation.shared import SharedWork
from tfxai.models import Backbone
from tfxai.pipeline.config import RunConfig, RunSummary
from tfxai.pipeline.session import Interrupt, Stage, progress_bar, stage_setter
from tfxai.primitives import target_probability
from tfxai.results import ResultsDir

__all__ = ["ModelJob", "Prepared", "Known", "PredictionMemo", "predict_batch", "error_row", "load_errors", "target_errors", "DoneCheck", "MethodWork", "BatchHook", "sample_chunks", "known_label", "split_done", "count_with_target", "work_left", "batch_loop", "flush_errors"]


@dataclass
class Prepared:
    """A loaded batch with predictions and resolved targets (images without target dropped)."""

    batch: Batch
    idx: np.ndarray
    targets: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    seeds: np.ndarray
    #: attribution-independent work of this batch (perturbed forward passes), reused by every
    #: method and metric scoring it; freed with the batch
    shared: SharedWork = field(default_factory=SharedWork)

    def ids(self) -> list[str]:
        return [self.batch.samples[i].image_id for i in self.idx]


#: one model's prediction rows by image id: (label or -1, predicted), None if unparsable
Known = dict[str, tuple[int, int] | None]


#: an evaluate run's predictions by image id, (predicted class, its probability): the dataset pass
#: predicts each image and the scoring pass reuses it (12 bytes per image)
PredictionMemo = dict[str, tuple[int, float]]


def _predictions(cfg: RunConfig, bb: Backbone, batch: Batch, memo: PredictionMemo | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, confidence) of a loaded batch: from ``memo`` when it holds every image,
    else one batched forward pass (remembered in ``memo``)."""
    ids = batch.image_ids
    if memo is not None and ids and all(i in memo for i in ids):
        return (np.array([memo[i][0] for i in ids], dtype=np.int64),
                np.array([memo[i][1] for i in ids], dtype=np.float32))
    probs = bb.predict(batch.images, batch_size=cfg.batch_size)
    predicted = probs.argmax(axis=1)
    confidence = target_probability(probs, predicted)
    if memo is not None:
        memo.update(zip(ids, zip(predicted.tolist(), confidence.tolist(), strict=True),
                        strict=True))
    return predicted, confidence


def predict_batch(
    cfg: RunConfig, bb: Backbone, batch: Batch, rd: ResultsDir, known: Known,
    memo: PredictionMemo | None = None,
) -> Prepared:
    """Predict a loaded batch (once per run: see ``memo``), append the prediction rows not yet in
    ``known`` (and add them)."""
    predicted, confidence = _predictions(cfg, bb, batch, memo)
    rows = []
    for i, s in enumerate(batch.samples):
        if s.image_id in known:
            continue
        label = int(batch.labels[i])
        rows.append({
            "image_id": s.image_id, "model": bb.name, "weights": bb.weights,
            "label": label if label >= 0 else "", "predicted": int(predicted[i]),
            "confidence": float(confidence[i]),
            "correct": "" if label < 0 else int(label == predicted[i]),
        })
        known[s.image_id] = (label, int(predicted[i]))
    rd.predictions.append(rows)
    if cfg.target == "label":
        keep = np.flatnonzero(batch.labels >= 0)
        targets = batch.labels[keep]
    else:
        keep = np.arange(len(batch.samples))
        targets = predicted
    seeds = np.array([s.seed_key for s in batch.samples], dtype=np.int64)
    return Prepared(batch, keep, targets.astype(np.int64), predicted, confidence, seeds)


def error_row(sample: Sample, stage: str, model: str, error: str, method: str = "",
               metric: str = "") -> dict[str, Any]:
    return {"image_id": sample.image_id, "path": str(sample.path), "stage": stage,
            "model": model, "method": method, "metric": metric, "error": error}


def load_errors(batch: Batch, model: str) -> list[dict[str, Any]]:
    return [error_row(s, "load", model, msg) for s, msg in batch.errors]


def target_errors(cfg: RunConfig, chunk: list[Sample], labels: dict[str, int],
                   model: str) -> list[dict[str, Any]]:
    """With ``--target label``: one error per image of ``chunk`` whose label is unknown (-1)
    (images absent from ``labels``, which failed to load, have their load error instead)."""
    if cfg.target != "label":
        return []
    return [error_row(s, "target", model, "no label (target: label)")
            for s in chunk if labels.get(s.image_id, 0) < 0]


#: is the work of an image done, given its id and target (both known without loading it)?
DoneCheck = Callable[[str, int], bool]


#: the work of one method on a loaded batch: (method name, attributer, batch, error rows, stage)
MethodWork = Callable[[str, Attributer, Prepared, list, Stage], None]


#: called after each batch is written: (model name, index of the batch in the run)
BatchHook = Callable[[str, int], None]


def sample_chunks(samples: list[Sample], size: int) -> Iterator[list[Sample]]:
    """The batches of ``samples``, as :func:`iter_batches` groups them, not loaded."""
    for i in range(0, len(samples), size):
        yield samples[i : i + size]


def known_label(sample: Sample, row_label: int) -> int:
    """The label loading ``sample`` would give, without loading it: its own label unless an
    annotation file may override it, then the label written with its prediction."""
    if sample.annotation_path is None or sample.label_source in ("csv", "name"):
        return -1 if sample.label is None else int(sample.label)
    return row_label


def split_done(cfg: RunConfig, chunk: list[Sample], known: Known, is_done: DoneCheck
                ) -> tuple[list[Sample], dict[str, int]]:
    """The images of ``chunk`` with work left (to load), and the labels of the others.

    An image is done when it has a prediction row and either no target (``--target label``
    without a label: only its target error is recorded) or ``is_done`` for its target.
    """
    todo: list[Sample] = []
    labels: dict[str, int] = {}
    for s in chunk:
        row = known.get(s.image_id)
        if row is not None:
            label = known_label(s, row[0])
            target = label if cfg.target == "label" else row[1]
            if target < 0 or is_done(s.image_id, target):
                labels[s.image_id] = label
                continue
        todo.append(s)
    return todo, labels


def count_with_target(cfg: RunConfig, labels: dict[str, int]) -> int:
    """How many of the images with these labels have a target."""
    return sum(1 for v in labels.values() if cfg.target != "label" or v >= 0)


def work_left(cfg: RunConfig, samples: list[Sample], known: Known, is_done: DoneCheck) -> bool:
    return any(split_done(cfg, chunk, known, is_done)[0]
               for chunk in sample_chunks(samples, cfg.batch_size))


@dataclass
class ModelJob:
    """One model's share of a run: what every stage of ``attribute`` and ``evaluate`` needs for
    that model (the run's config and results folder, the model with its methods and metrics,
    the images, the summary it adds to, the SIGINT flag and the per-batch hook)."""

    cfg: RunConfig
    bb: Backbone
    atts: dict[str, Attributer]
    samples: list[Sample]
    rd: ResultsDir
    summary: RunSummary
    stop: Interrupt
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    on_batch: BatchHook | None = None


def batch_loop(job: ModelJob, what: str, known: Known, is_done: DoneCheck,
               skipped_per_image: int, work: MethodWork, memo: PredictionMemo | None = None
               ) -> bool:
    """The batch loop of ``attribute`` and ``evaluate``; True when stopped by SIGINT.

    Per batch, only the images with work left are loaded and predicted and ``work`` runs on
    them for each method; a done image counts ``skipped_per_image`` in ``summary.skipped`` and
    advances the progress bar without being loaded. Error rows go to ``errors.csv`` per batch.
    The bar counts images (a batch when all its methods are done) and names the model, the
    method and the stage it is in.
    """
    cfg, bb, rd, summary = job.cfg, job.bb, job.rd, job.summary
    bar = progress_bar(len(job.samples), f"{bb.name} {what}", cfg.progress)
    stage = stage_setter(bar, bb.name)
    try:
        for n, chunk in enumerate(sample_chunks(job.samples, cfg.batch_size)):
            todo, labels = split_done(cfg, chunk, known, is_done)
            summary.skipped += count_with_target(cfg, labels) * skipped_per_image
            bar.update(len(chunk) - len(todo))
            errors: list[dict[str, Any]] = []
            prep = None
            if todo:
                batch = load_batch(todo, bb.input_size, cfg.resize)
                errors = load_errors(batch, bb.name)
                if batch.samples:
                    prep = predict_batch(cfg, bb, batch, rd, known, memo)
                    labels.update(zip(batch.image_ids, batch.labels.tolist(), strict=True))
            errors.extend(target_errors(cfg, chunk, labels, bb.name))
            if prep is not None:
                for name, att in job.atts.items():
                    work(name, att, prep, errors, stage)
            bar.update(len(todo))
            flush_errors(rd, errors, summary)
            if job.on_batch is not None:
                job.on_batch(bb.name, n)
            if job.stop.requested:
                return True
    finally:
        bar.close()
    return False


def flush_errors(rd: ResultsDir, errors: list[dict[str, Any]], summary: RunSummary) -> None:
    if errors:
        rd.record_errors(errors)
        summary.errors += len(errors)
