"""The pipeline: models × methods (× metrics) over streamed image batches, with resume.

``run_attribute`` computes and stores attributions and ``predictions.csv``. ``run_evaluate``
additionally scores them with metrics into ``scores.csv``, reusing stored attributions whose
parameters and target match and computing the missing ones.

Both stream images from disk one batch at a time, skip keys that are already written (so an
interrupted run resumes where it stopped), record per-image failures in ``errors.csv`` and go on.
SIGINT (Ctrl-C) stops cleanly after the batch in flight.

Usage errors write nothing: the images are listed and checked against what the run needs (boxes for
metrics with ``needs_boxes``, labels for ``--target label``) before any model is loaded, and every
model, method and metric is built before the results folder is created.

``seconds`` is the attribution time of each image, timed alone (one image per call, after one
untimed warm-up call per method that traces its compiled functions); ``metric_seconds`` is the
metric's time per image of its batch. The summary counts the score rows written and their NaN
values by metric, variant and reason.

Resume fast path: before loading a batch, each image is checked against the results already
written — its prediction row (which gives its target) and every attribution (``attribute``) or
every score row (``evaluate``) the run would write. Only images with work left are loaded and
predicted; a batch with none is skipped without touching the images or the model. An image that
failed to load has no prediction row, so it alone is tried again (and its error recorded again).

Input independence: the untimed warm-up call of each method (below) explains a *different* image
(another image of the batch, else a mirrored copy) for the target of the first image it computes;
when that map equals the first image's map, the method's attribution does not depend on the input
(deconvnet on a network without max-pooling): a :class:`InputIndependenceWarning` is issued, the
summary lists it and ``runs.jsonl`` records it (the report shows it). It costs no extra call.

Executors: ``local`` (default) runs here; ``ray`` (``pip install .[ray]``) splits the images
into deterministic shards that Ray actors — each holding its models loaded once — run with this
same local pipeline into per-shard folders, merged atomically into the results folder
(:mod:`tfxai.executors`, docs/scaling.md).
"""

from __future__ import annotations

import json
import platform
import signal
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfxai.attribution.base import Attributer, _json_default, get_attributer
from tfxai.data.dataset import Batch, Sample, discover, iter_batches, load_batch, shard
from tfxai.evaluation.base import Metric, MetricOutput, get_metric
from tfxai.evaluation.shared import SharedWork
from tfxai.metadata import nan_reason
from tfxai.models import Backbone, load_model
from tfxai.results import SCORE_KEY, ResultsDir, ResultsWriteError, _fmt

__all__ = ["RunConfig", "RunSummary", "run_attribute", "run_evaluate", "ConfigError",
           "InputIndependenceWarning", "input_independent"]

TARGET_MODES = ("predicted", "label")
EXECUTORS = ("local", "ray")


class ConfigError(ValueError):
    """A usage error found before any work is done (exit code 2 in the CLI)."""


class InputIndependenceWarning(UserWarning):
    """A method gave identical maps for two different images explained for the same class."""


@dataclass
class RunConfig:
    """Parameters of one ``attribute``/``evaluate`` run (the CLI options)."""

    models: Sequence[str]
    methods: Sequence[str]
    images: str | Path | Sequence[str | Path]
    metrics: Sequence[str] = ()
    annotations: str | Path | None = None
    labels: str | Path | None = None
    #: labels from the file names, e.g. ``sim_{synset}_`` (:mod:`tfxai.data.names`)
    labels_from_name: str | None = None
    weights: str = "imagenet"
    out: str | Path = "results"
    target: str = "predicted"
    resize: str = "squash"
    limit: int | None = None
    batch_size: int = 8
    seed: int = 0
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    shard: tuple[int, int] | None = None
    progress: bool = True
    model_options: dict[str, Any] = field(default_factory=dict)
    #: ``local`` (default) or ``ray``
    executor: str = "local"
    #: Ray cluster address (``auto`` or ``HOST:PORT``); None starts a local Ray cluster
    address: str | None = None
    #: Ray actors to run (default: one per CPU of the cluster); sizes a local cluster too
    num_workers: int | None = None
    #: CPUs reserved by each Ray actor (also its TensorFlow thread count)
    worker_cpus: int = 1

    def validate(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.num_workers is not None and self.num_workers < 1:
            raise ConfigError(f"--num-workers must be >= 1, got {self.num_workers}")
        if self.worker_cpus < 1:
            raise ConfigError(f"--cpus-per-worker must be >= 1, got {self.worker_cpus}")
        if self.executor == "local" and (self.address or self.num_workers):
            raise ConfigError("--address and --num-workers need --executor ray")
        if self.target not in TARGET_MODES:
            raise ConfigError(f"--target must be one of {TARGET_MODES}, got {self.target!r}")
        if self.resize not in ("squash", "crop"):
            raise ConfigError(f"--resize must be 'squash' or 'crop', got {self.resize!r}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not self.models:
            raise ConfigError("--model: give at least one model")
        if not self.methods:
            raise ConfigError("--method: give at least one method")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.limit}")
        known = {m for m in self.methods} | {m.partition("+")[0] for m in self.methods}
        for name in self.method_params:
            if name not in known:
                raise ConfigError(
                    f"--param {name}.*: {name!r} is not one of the methods of this run "
                    f"({', '.join(self.methods)})"
                )
        for name in self.metric_params:
            if name not in self.metrics:
                raise ConfigError(
                    f"--param {name}.*: {name!r} is not one of the metrics of this run "
                    f"({', '.join(self.metrics) or 'none'})"
                )

    def record(self, command: str) -> dict[str, Any]:
        import tensorflow as tf

        from tfxai import __version__

        return {
            "command": command,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "models": list(self.models), "methods": list(self.methods),
            "metrics": list(self.metrics), "images": str(self.images),
            "annotations": str(self.annotations) if self.annotations else None,
            "labels_from_name": self.labels_from_name,
            "weights": self.weights, "target": self.target, "resize": self.resize,
            "limit": self.limit, "batch_size": self.batch_size, "seed": self.seed,
            "method_params": self.method_params, "metric_params": self.metric_params,
            "shard": list(self.shard) if self.shard else None,
            "executor": self.executor, "address": self.address,
            "num_workers": self.num_workers,
            "versions": {"tfxai": __version__, "tensorflow": tf.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
        }


@dataclass
class RunSummary:
    """What a run did. ``errors`` counts per-image failures recorded in ``errors.csv``.

    ``values`` counts the score rows written by (metric, variant) and ``undefined`` the NaN values
    among them by (metric, variant, reason): the reason is the metric's note without its measured
    numbers (:func:`nan_reason`), e.g. ``gated out (|ΔP| ≥ 0.05)``.
    """

    images: int = 0
    computed: int = 0
    skipped: int = 0
    rows: int = 0
    errors: int = 0
    interrupted: bool = False
    out: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: warnings issued by the run (input-independent methods); each is also a note
    warnings: list[str] = field(default_factory=list)
    values: dict[tuple[str, str], int] = field(default_factory=dict)
    undefined: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def count_rows(self, rows: list[dict[str, Any]]) -> None:
        """Count written score rows and their NaN values (rows carry the metric's note)."""
        for row in rows:
            key = (str(row["metric"]), str(row["variant"]))
            self.values[key] = self.values.get(key, 0) + 1
            if np.isnan(row["value"]):
                ukey = (*key, nan_reason(row.get("_metric_note", "")))
                self.undefined[ukey] = self.undefined.get(ukey, 0) + 1

    def add_counts(self, values: dict[tuple[str, str], int],
                   undefined: dict[tuple[str, str, str], int]) -> None:
        """Add another summary's counts (a Ray shard's)."""
        for k, n in values.items():
            self.values[tuple(k)] = self.values.get(tuple(k), 0) + n
        for k, n in undefined.items():
            self.undefined[tuple(k)] = self.undefined.get(tuple(k), 0) + n

    def undefined_lines(self) -> list[str]:
        """One line per metric with NaN values among the rows written, e.g.
        ``ssim_augmentation: 20 of 48 NaN — gated out (|ΔP| ≥ 0.05); by variant: rotate_15 4/6``."""
        lines = []
        for metric in sorted({m for m, _ in self.values}):
            total = sum(n for (m, _), n in self.values.items() if m == metric)
            reasons: dict[str, int] = {}
            by_variant: dict[str, int] = {}
            for (m, v, why), n in self.undefined.items():
                if m == metric:
                    reasons[why] = reasons.get(why, 0) + n
                    by_variant[v] = by_variant.get(v, 0) + n
            nan = sum(reasons.values())
            if not nan:
                continue
            ordered = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            why = ordered[0][0] if len(ordered) == 1 else ", ".join(
                f"{n} {text}" for text, n in ordered)
            line = f"{metric}: {nan} of {total} NaN — {why}"
            variants = [v for v in sorted({v for m, v in self.values if m == metric}) if v]
            if len(variants) > 1:
                line += "; by variant: " + ", ".join(
                    f"{v} {by_variant[v]}/{self.values[(metric, v)]}" for v in variants
                    if by_variant.get(v))
            lines.append(line)
        return lines




# --------------------------------------------------------------------------------------- signals


class _Interrupt:
    """SIGINT sets a flag; the loops stop after the batch in flight."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        print("\ntfxai: interrupt received; stopping after the current batch "
              "(Ctrl-C again to abort now)", file=sys.stderr)


@contextmanager
def _sigint_guard() -> Iterator[_Interrupt]:
    flag = _Interrupt()
    try:
        previous = signal.signal(signal.SIGINT, flag)
    except ValueError:  # not in the main thread
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------------------- helpers


def _progress(total: int, desc: str, enabled: bool) -> Any:
    """A progress bar over images (``desc`` names the model and the stage)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled, unit="img",
                dynamic_ncols=True, leave=True)


#: sets the stage shown by the progress bar: (method, stage), e.g. ("gradcam", "evaluate iou")
Stage = Callable[[str, str], None]


def _stage_setter(bar: Any, model: str) -> Stage:
    def stage(method: str, what: str) -> None:
        bar.set_description_str(f"{model} {method}: {what}", refresh=True)

    return stage


def _load_samples(cfg: RunConfig) -> list[Sample]:
    samples = discover(cfg.images, cfg.annotations, cfg.labels, limit=None,
                       name_pattern=cfg.labels_from_name)
    if cfg.shard is not None:
        samples = shard(samples, *cfg.shard)
    return samples[: cfg.limit] if cfg.limit else samples


def _check_model_names(cfg: RunConfig) -> None:
    """Registered names, existing model files and weights files, checked without loading."""
    from tfxai.models import MODELS, ModelLoadError, get_model_spec

    registered = False
    for name in cfg.models:
        if str(name).lower() in MODELS:
            registered = True
            continue
        if Path(str(name)).exists():
            continue
        if Path(str(name)).suffix.lower() in (".keras", ".h5", ".hdf5"):
            raise ConfigError(f"model file {str(name)!r} does not exist")
        try:
            get_model_spec(str(name))
        except ModelLoadError as exc:
            raise ConfigError(str(exc)) from None
    if registered and cfg.weights not in ("imagenet", "none") and not Path(cfg.weights).exists():
        raise ConfigError(f"weights file {cfg.weights!r} does not exist "
                          "(--weights takes 'imagenet', 'none' or a path to a weights file)")


def _where_annotations(cfg: RunConfig, them: str = "it") -> str:
    if cfg.annotations is not None:
        return (f"in --annotations {cfg.annotations} (as <image id>.xml or <stem>.xml, or a mask "
                "<stem>.png)")
    return f"next to {them} (same stem, .xml; or a mask <stem>_mask.png)"


def _check_inputs(cfg: RunConfig, samples: list[Sample], metrics: dict[str, Metric]) -> list[str]:
    """Boxes for metrics that need them (``Metric.needs_boxes``) and labels for ``--target
    label``: none at all is a usage error, found before any model is loaded; some missing is a
    note. Only file names are looked at (annotation files are read with their images)."""
    notes: list[str] = []
    if not samples:
        return notes
    n = len(samples)
    boxed = sorted(name for name, m in metrics.items() if m.needs_boxes)
    if boxed:
        missing = sum(1 for s in samples if not s.has_ground_truth)
        if missing == n:
            raise ConfigError(
                f"metric(s) {', '.join(boxed)} need bounding boxes or segmentation masks, but none "
                f"of the {n} images of {cfg.images} has a Pascal-VOC XML file or mask PNG "
                f"{_where_annotations(cfg)}. Put <image stem>.xml next to each image or pass "
                "--annotations DIR, or choose metrics that need no boxes (tfxai metrics lists "
                "what each needs)"
            )
        if missing:
            notes.append(f"{missing} of {n} images have no annotation file "
                         f"{_where_annotations(cfg, 'them')}: their "
                         f"{', '.join(boxed)} values are NaN with the note 'no boxes'")
    if cfg.target == "label":
        unlabelled = sum(1 for s in samples if s.label is None and s.annotation_path is None)
        if unlabelled == n:
            raise ConfigError(
                f"--target label needs the true class of each image, but none of the {n} images "
                f"of {cfg.images} has one: pass --labels CSV (columns image,label; a class index "
                "or a WordNet synset), put VOC XML files next to the images (or --annotations "
                "DIR), or use ImageNet-style synset folders; or use --target predicted"
            )
    return notes


def _preflight(cfg: RunConfig, command: str) -> tuple[list[Sample], list[str]]:
    """Every check that needs no model, before anything is loaded or written: the images and
    what the metrics and the target need of them, and the model names. Returns the samples and
    notes for the summary."""
    samples = _load_samples(cfg)
    metrics = _build_metrics(cfg, "") if command == "evaluate" else {}
    notes = _check_inputs(cfg, samples, metrics)
    _check_model_names(cfg)
    return samples, notes


def _build_attributers(cfg: RunConfig, bb: Backbone) -> dict[str, Attributer]:
    out = {}
    for name in cfg.methods:
        params = {**cfg.method_params.get(name.partition("+")[0], {}),
                  **cfg.method_params.get(name, {})}
        try:
            att = get_attributer(name, bb, **params)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        if "seed" in att.params and "seed" not in params:
            # stochastic methods and noise tunnels take the run's seed (get_attributer hands a
            # tunnel's seed to the tunnel, which derives its inner method's seeds from it)
            att = get_attributer(name, bb, **{**params, "seed": cfg.seed})
        out[name] = att
    return out


def _check_backgrounds(atts: dict[str, Attributer], samples: list[Sample]) -> None:
    """Refuse a SHAP background folder that holds evaluated images (before any work)."""
    for att in atts.values():
        check = getattr(att, "check_background_ids", None)
        if check is not None:
            try:
                check([s.path for s in samples])
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc


def _build_metrics(cfg: RunConfig, method: str) -> dict[str, Metric]:
    out = {}
    for name in cfg.metrics:
        params = dict(cfg.metric_params.get(name, {}))
        try:
            metric = get_metric(name, **params)
            if "seed" in metric.params and "seed" not in params:
                metric = get_metric(name, **{**params, "seed": cfg.seed})
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        out[name] = metric
    return out


def _load_backbone(cfg: RunConfig, name: str) -> Backbone:
    from tfxai.models import ModelLoadError

    try:
        return load_model(name, cfg.weights, seed=cfg.seed, **cfg.model_options)
    except ModelLoadError as exc:
        raise ConfigError(str(exc)) from exc


@dataclass
class _Prepared:
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


def _predict_batch(
    cfg: RunConfig, bb: Backbone, batch: Batch, rd: ResultsDir, known: Known
) -> _Prepared:
    """Predict a loaded batch, append the prediction rows not yet in ``known`` (and add them)."""
    probs = bb.predict(batch.images, batch_size=cfg.batch_size)
    predicted = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), predicted]
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
    return _Prepared(batch, keep, targets.astype(np.int64), predicted, confidence, seeds)


def _error_row(sample: Sample, stage: str, model: str, error: str, method: str = "",
               metric: str = "") -> dict[str, Any]:
    return {"image_id": sample.image_id, "path": str(sample.path), "stage": stage,
            "model": model, "method": method, "metric": metric, "error": error}


def _load_errors(batch: Batch, model: str) -> list[dict[str, Any]]:
    return [_error_row(s, "load", model, msg) for s, msg in batch.errors]


def _target_errors(cfg: RunConfig, chunk: list[Sample], labels: dict[str, int],
                   model: str) -> list[dict[str, Any]]:
    """With ``--target label``: one error per image of ``chunk`` whose label is unknown (-1)
    (images absent from ``labels``, which failed to load, have their load error instead)."""
    if cfg.target != "label":
        return []
    return [_error_row(s, "target", model, "no label for --target label")
            for s in chunk if labels.get(s.image_id, 0) < 0]


def _attributions(
    cfg: RunConfig, bb: Backbone, att: Attributer, prep: _Prepared, positions: np.ndarray,
    rd: ResultsDir, summary: RunSummary, load: bool = True,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Raw attributions and per-image seconds for ``prep.idx[positions]``: stored or computed.

    Missing ones are computed one image per call, each timed on its own, so ``seconds`` is the
    attribution time of that image (on CPU as fast as one batched call: methods batch their own
    work — steps, samples, perturbations — per image). An attributer's first call in a process
    traces its compiled functions; it is made once, untimed, on the first image, so that no
    image's ``seconds`` holds the tracing. With ``load=False`` stored ones are only counted and
    missing ones computed; returns None.
    """
    mp = att.method_params_json()
    ids = prep.ids()
    stored, missing = [], []
    for p in positions:
        item = rd.find_attribution(bb.name, bb.weights, att.key, mp, ids[p],
                                   int(prep.targets[p]))
        (stored if item is not None else missing).append((p, item))
    out: dict[int, np.ndarray] = {}
    secs: dict[int, float] = {}
    if stored and not load:
        summary.skipped += len(stored)
    elif stored:
        arrays = rd.store.load_many([it for _, it in stored])
        for (p, it), a in zip(stored, arrays, strict=True):
            out[int(p)] = a
            secs[int(p)] = it.seconds
        summary.skipped += len(stored)
    if missing:
        mpos = np.array([p for p, _ in missing])
        probe = None
        if att not in _WARM:  # the first call traces the method's tf.functions: not timed
            # it explains another image for the first image's target: the input-independence probe
            r = int(prep.idx[mpos[0]])
            other, how = _probe_image(prep, r)
            x = prep.batch.images[r : r + 1] if other is None else other[None]
            warm = att.attribute(x, prep.targets[mpos[:1]], seeds=prep.seeds[r : r + 1])
            _WARM.add(att)
            if other is not None:
                probe = (warm, how)
        parts, seconds = [], []
        for p in mpos:
            r = int(prep.idx[p])
            t0 = time.perf_counter()
            parts.append(att.attribute(prep.batch.images[r : r + 1], prep.targets[p : p + 1],
                                       seeds=prep.seeds[r : r + 1]))
            seconds.append(time.perf_counter() - t0)
        raw = np.concatenate(parts)
        if probe is not None:
            _check_input_dependence(bb, att, raw[:1], probe, ids[mpos[0]],
                                    int(prep.targets[mpos[0]]), rd, summary)
        rd.store.put(bb.name, bb.weights, att.key, mp, [ids[p] for p in mpos], raw,
                     prep.targets[mpos], seconds=seconds, run_params=_store_params(cfg))
        for p, a, sec in zip(mpos, raw, seconds, strict=True):
            out[int(p)] = a
            secs[int(p)] = sec
        summary.computed += len(mpos)
    if not load:
        return None
    order = [int(p) for p in positions]
    return np.stack([out[p] for p in order]), np.array([secs[p] for p in order])


#: attributers whose compiled functions are traced (see :func:`_attributions`)
_WARM: weakref.WeakSet[Attributer] = weakref.WeakSet()


def _probe_image(prep: _Prepared, r: int) -> tuple[np.ndarray | None, str]:
    """An image different from batch row ``r`` (another image of the batch, else ``r`` mirrored
    left-right or upside down) and how it was made; (None, "") when there is none (a constant
    image alone in its batch)."""
    images = prep.batch.images
    for j in range(len(images)):
        if j != r and not np.array_equal(images[j], images[r]):
            return images[j], f"image {prep.batch.samples[j].image_id}"
    for axis, name in ((1, "mirrored left-right"), (0, "flipped upside down")):
        flipped = np.flip(images[r], axis=axis)
        if not np.array_equal(flipped, images[r]):
            return np.ascontiguousarray(flipped), f"image {prep.batch.samples[r].image_id} {name}"
    return None, ""


#: maps (scaled to max |map| = 1) that differ by at most this everywhere are identical
INDEPENDENCE_ATOL = 1e-4


def input_independent(att: Attributer, raw_a: np.ndarray, raw_b: np.ndarray,
                      atol: float = INDEPENDENCE_ATOL) -> bool:
    """True when the maps of two raw attributions (each (1, H, W[, C])) are identical: equal to
    ``atol`` after each is scaled to max |map| = 1 (the method's map convention otherwise)."""
    maps = [np.asarray(att.to_map(np.asarray(a), scale="max"), np.float64) for a in (raw_a, raw_b)]
    if maps[0].shape != maps[1].shape or not all(np.isfinite(m).all() for m in maps):
        return False
    return bool(np.max(np.abs(maps[0] - maps[1]), initial=0.0) <= atol)


def _check_input_dependence(bb: Backbone, att: Attributer, raw: np.ndarray,
                            probe: tuple[np.ndarray, str], image_id: str, target: int,
                            rd: ResultsDir, summary: RunSummary) -> None:
    """Warn (and record in runs.jsonl) when the probe's map equals the first image's map."""
    other, how = probe
    if not input_independent(att, raw, other):
        return
    zero = not np.any(np.asarray(raw))
    message = (
        f"{att.key} on {bb.name}: the attribution does not depend on the input: image {image_id} "
        f"and {how}, both explained for class {target}, give identical maps"
        + (" (both all-zero)" if zero else "")
        + ". Its scores describe the method and the model, not the image (e.g. deconvnet on a "
        "network without max-pooling has no input-dependent switch)."
    )
    warnings.warn(message, InputIndependenceWarning, stacklevel=2)
    summary.warnings.append(message)
    summary.notes.append(message)
    rd.log_run({"command": "warning", "warning": "input_independent", "model": bb.name,
                "weights": bb.weights, "method": att.key,
                "method_params": att.method_params_json(), "image_id": image_id,
                "probe": how, "target": target, "all_zero": zero, "message": message})


def _store_params(cfg: RunConfig) -> dict[str, Any]:
    return {"resize": cfg.resize, "target": cfg.target, "seed": cfg.seed}


# --------------------------------------------------------------------------------------- resume

#: is the work of an image done, given its id and target (both known without loading it)?
DoneCheck = Callable[[str, int], bool]
#: the work of one method on a loaded batch: (method name, attributer, batch, error rows, stage)
MethodWork = Callable[[str, Attributer, _Prepared, list, Stage], None]


def _chunks(samples: list[Sample], size: int) -> Iterator[list[Sample]]:
    """The batches of ``samples``, as :func:`iter_batches` groups them, not loaded."""
    for i in range(0, len(samples), size):
        yield samples[i : i + size]


def _known_label(sample: Sample, row_label: int) -> int:
    """The label loading ``sample`` would give, without loading it: its own label unless an
    annotation file may override it, then the label written with its prediction."""
    if sample.annotation_path is None or sample.label_source in ("csv", "name"):
        return -1 if sample.label is None else int(sample.label)
    return row_label


def _split_done(cfg: RunConfig, chunk: list[Sample], known: Known, is_done: DoneCheck
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
            label = _known_label(s, row[0])
            target = label if cfg.target == "label" else row[1]
            if target < 0 or is_done(s.image_id, target):
                labels[s.image_id] = label
                continue
        todo.append(s)
    return todo, labels


def _with_target(cfg: RunConfig, labels: dict[str, int]) -> int:
    """How many of the images with these labels have a target."""
    return sum(1 for v in labels.values() if cfg.target != "label" or v >= 0)


def _work_left(cfg: RunConfig, samples: list[Sample], known: Known, is_done: DoneCheck) -> bool:
    return any(_split_done(cfg, chunk, known, is_done)[0]
               for chunk in _chunks(samples, cfg.batch_size))


def _batch_loop(cfg: RunConfig, bb: Backbone, atts: dict[str, Attributer], samples: list[Sample],
                rd: ResultsDir, summary: RunSummary, stop: _Interrupt, on_batch: BatchHook | None,
                what: str, known: Known, is_done: DoneCheck, skipped_per_image: int,
                work: MethodWork) -> bool:
    """The batch loop of ``attribute`` and ``evaluate``; True when stopped by SIGINT.

    Per batch, only the images with work left are loaded and predicted and ``work`` runs on
    them for each method; a done image counts ``skipped_per_image`` in ``summary.skipped`` and
    advances the progress bar without being loaded. Error rows go to ``errors.csv`` per batch.
    The bar counts images (a batch when all its methods are done) and names the model, the
    method and the stage it is in.
    """
    bar = _progress(len(samples), f"{bb.name} {what}", cfg.progress)
    stage = _stage_setter(bar, bb.name)
    try:
        for n, chunk in enumerate(_chunks(samples, cfg.batch_size)):
            todo, labels = _split_done(cfg, chunk, known, is_done)
            summary.skipped += _with_target(cfg, labels) * skipped_per_image
            bar.update(len(chunk) - len(todo))
            errors: list[dict[str, Any]] = []
            prep = None
            if todo:
                batch = load_batch(todo, bb.input_size, cfg.resize)
                errors = _load_errors(batch, bb.name)
                if batch.samples:
                    prep = _predict_batch(cfg, bb, batch, rd, known)
                    labels.update(zip(batch.image_ids, batch.labels.tolist(), strict=True))
            errors.extend(_target_errors(cfg, chunk, labels, bb.name))
            if prep is not None:
                for name, att in atts.items():
                    work(name, att, prep, errors, stage)
            bar.update(len(todo))
            _flush_errors(rd, errors, summary)
            if on_batch is not None:
                on_batch(bb.name, n)
            if stop.requested:
                return True
    finally:
        bar.close()
    return False


# --------------------------------------------------------------------------------------- session


class _Session:
    """Backbones, attributers and metrics built once and reused across batches, runs and shards.

    Their compiled ``tf.function`` s (fixed signatures with a free batch dimension) are traced
    once and reused for every batch, including a last partial one: memory stays flat.
    """

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self._backbones: dict[str, Backbone] = {}
        self._attributers: dict[str, dict[str, Attributer]] = {}
        self._metrics: dict[tuple[str, str], dict[str, Metric]] = {}

    def backbone(self, name: str) -> Backbone:
        if name not in self._backbones:
            self._backbones[name] = _load_backbone(self.cfg, name)
        return self._backbones[name]

    def attributers(self, bb: Backbone) -> dict[str, Attributer]:
        if bb.name not in self._attributers:
            self._attributers[bb.name] = _build_attributers(self.cfg, bb)
        return self._attributers[bb.name]

    def metrics(self, bb: Backbone, method: str) -> dict[str, Metric]:
        key = (bb.name, method)
        if key not in self._metrics:
            self._metrics[key] = _build_metrics(self.cfg, method)
        return self._metrics[key]


#: called after each batch is written: (model name, index of the batch in the run)
BatchHook = Callable[[str, int], None]


def _run_local(
    cfg: RunConfig,
    command: str,
    samples: list[Sample] | None = None,
    rd: ResultsDir | None = None,
    session: _Session | None = None,
    log: bool = True,
    on_batch: BatchHook | None = None,
    dataset_stats: dict[tuple[str, str, str], Any] | None = None,
    notes: Sequence[str] = (),
) -> RunSummary:
    """The local pipeline: ``attribute`` or ``evaluate`` over ``samples`` into ``rd``.

    Ray workers call it with their shard's samples, a shard folder resuming from the results
    folder, their cached session and the dataset statistics computed over all shards.
    ``notes`` (from :func:`_preflight`) start the summary's notes.
    """
    rd = rd if rd is not None else ResultsDir(cfg.out)
    if samples is None:
        samples = _load_samples(cfg)
    rd.check_writable()  # an unwritable folder fails before the models load; creates nothing
    session = session or _Session(cfg)
    # Every model with its methods and metrics is built before anything is written, so a usage
    # error (weights not reachable, unknown layer, bad parameter) leaves no trace. The session
    # keeps them for the whole run anyway.
    plan = []
    for model_name in cfg.models:
        bb = session.backbone(model_name)
        atts = session.attributers(bb)
        _check_backgrounds(atts, samples)
        metrics = {m: session.metrics(bb, m) for m in atts} if command == "evaluate" else {}
        plan.append((bb, atts, metrics))
    rd.ensure_writable()
    if log:
        rd.log_run(cfg.record(command))
    summary = RunSummary(images=len(samples), out=rd.root, notes=list(notes))
    with _sigint_guard() as stop:
        for bb, atts, metrics in plan:
            if command == "attribute":
                stopped = _attribute_model(cfg, bb, atts, samples, rd, summary, stop, on_batch)
            else:
                stopped = _evaluate_model(cfg, bb, atts, metrics, samples, rd, summary, stop,
                                          on_batch, log, dataset_stats)
            if stopped:
                summary.interrupted = True
                break
    return summary


def _check_metrics(cfg: RunConfig) -> None:
    """Metric names and parameters, validated before any work."""
    if not cfg.metrics:
        raise ConfigError("--metric: give at least one metric")
    for name in cfg.metrics:  # validate names and parameters before any work
        _build_metrics(RunConfig(**{**cfg.__dict__, "metrics": [name]}), "")


# --------------------------------------------------------------------------------------- attribute


def run_attribute(cfg: RunConfig) -> RunSummary:
    """Compute and store attributions (and predictions) for models × methods over the images.

    Usage errors (:class:`ConfigError`, :class:`~tfxai.data.dataset.DatasetError`) are raised
    before anything is written.
    """
    cfg.validate()
    samples, notes = _preflight(cfg, "attribute")
    if cfg.executor == "ray":
        from tfxai.executors import run_ray

        return run_ray(cfg, "attribute", samples, notes)
    return _run_local(cfg, "attribute", samples, notes=notes)


def _attribute_model(cfg, bb, atts, samples, rd, summary, stop, on_batch=None) -> bool:
    """Predictions and attributions of one model over the samples; True when interrupted."""

    def work(name: str, att: Attributer, prep: _Prepared, errors: list, stage: Stage) -> None:
        stage(name, "attribute")
        try:
            _attributions(cfg, bb, att, prep, np.arange(len(prep.idx)), rd, summary, load=False)
        except ResultsWriteError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded per image, run goes on
            errors.extend(_error_row(prep.batch.samples[i], "attribute", bb.name,
                                     f"{type(exc).__name__}: {exc}", name) for i in prep.idx)

    return _batch_loop(cfg, bb, atts, samples, rd, summary, stop, on_batch, "attribute",
                       rd.predictions_of(bb.name, bb.weights), _attributions_done(rd, bb, atts),
                       len(atts), work)


def _attributions_done(rd: ResultsDir, bb: Backbone, atts: dict[str, Attributer]) -> DoneCheck:
    """Has an image the attributions of every method for its target (as ``_attributions``)?"""
    keys = [(att.key, att.method_params_json()) for att in atts.values()]

    def done(image_id: str, target: int) -> bool:
        return all(rd.find_attribution(bb.name, bb.weights, key, mp, image_id, target)
                   is not None for key, mp in keys)

    return done


def _flush_errors(rd: ResultsDir, errors: list[dict[str, Any]], summary: RunSummary) -> None:
    if errors:
        rd.record_errors(errors)
        summary.errors += len(errors)


# --------------------------------------------------------------------------------------- evaluate


def run_evaluate(cfg: RunConfig) -> RunSummary:
    """Score models × methods × metrics over the images into ``scores.csv`` (resumable).

    Usage errors — among them a metric that needs boxes (or ``--target label``) on images that
    have none — are raised before any model is loaded and anything is written.
    """
    cfg.validate()
    _check_metrics(cfg)
    samples, notes = _preflight(cfg, "evaluate")
    if cfg.executor == "ray":
        from tfxai.executors import run_ray

        return run_ray(cfg, "evaluate", samples, notes)
    return _run_local(cfg, "evaluate", samples, notes=notes)


def _dataset_pass_metrics(atts: dict[str, Attributer], metrics: dict[str, dict[str, Metric]]
                          ) -> list[tuple[str, Metric]]:
    return [(name, m) for name in atts for m in metrics[name].values() if m.needs_dataset_pass]


def _dataset_pass(cfg, bb, atts, metrics, samples, rd, summary, stop, log=True,
                  combine=True, known: Known | None = None) -> dict[tuple[str, str, str], list[Any]]:
    """First pass for metrics that need a dataset statistic (e.g. SSIM's data range L).

    Always over all the samples (loaded and predicted), so the statistic does not depend on
    what is already done. Returns the per-batch statistics by (model, method, metric); with
    ``combine`` each metric's ``dataset_stat`` is set from them (Ray combines the lists of all
    shards instead). ``known``: the model's prediction rows (read from ``rd`` when None).
    """
    todo = _dataset_pass_metrics(atts, metrics)
    if not todo:
        return {}
    stats: dict[tuple[str, str, str], list[Any]] = {(bb.name, n, m.name): [] for n, m in todo}
    bar = _progress(len(samples), f"{bb.name} dataset pass", cfg.progress)
    stage = _stage_setter(bar, bb.name)
    known = rd.predictions_of(bb.name, bb.weights) if known is None else known
    try:
        for batch in iter_batches(samples, bb.input_size, cfg.batch_size, cfg.resize):
            if batch.samples:
                prep = _predict_batch(cfg, bb, batch, rd, known)
                for name, metric in todo:
                    stage(name, f"dataset pass of {metric.name}")
                    raw, _ = _attributions(cfg, bb, atts[name], prep, np.arange(len(prep.idx)),
                                           rd, summary)
                    stats[(bb.name, name, metric.name)].append(
                        metric.dataset_statistic(atts[name], raw))
            bar.update(len(batch.samples) + len(batch.errors))
            if stop.requested:
                return stats
    finally:
        bar.close()
    if combine:
        for name, metric in todo:
            metric.dataset_stat = metric.combine_statistics(stats[(bb.name, name, metric.name)])
            if log:
                rd.log_run({"command": "evaluate.dataset_pass", "model": bb.name,
                            "method": name, "metric": metric.name,
                            "statistic": metric.dataset_stat})
    return stats


def _set_dataset_stats(bb: Backbone, metrics: dict[str, dict[str, Metric]],
                       stats: dict[tuple[str, str, str], Any]) -> None:
    for method, ms in metrics.items():
        for metric in ms.values():
            if metric.needs_dataset_pass:
                metric.dataset_stat = stats[(bb.name, method, metric.name)]


def _evaluate_model(cfg, bb, atts, metrics, samples, rd, summary, stop, on_batch=None,
                    log=True, dataset_stats=None) -> bool:
    """Scores of one model over the samples (after the dataset pass when a metric needs one,
    or with the ``dataset_stats`` Ray computed over all shards); True when interrupted."""
    known = rd.predictions_of(bb.name, bb.weights)
    done = rd.score_keys()
    is_done = _scores_done(bb, atts, metrics, done)
    first_pass = _dataset_pass_metrics(atts, metrics)
    if dataset_stats is not None:
        _set_dataset_stats(bb, metrics, dataset_stats)
    elif first_pass and _work_left(cfg, samples, known, is_done):
        _dataset_pass(cfg, bb, atts, metrics, samples, rd, summary, stop, log=log, known=known)
        if stop.requested:
            return True
    elif first_pass:  # nothing left to score: the pass would only have reused attributions
        labels = {s.image_id: _known_label(s, known[s.image_id][0]) for s in samples}
        summary.skipped += _with_target(cfg, labels) * len(first_pass)
    orphans = rd.orphan_curve_points(done)

    def work(name: str, att: Attributer, prep: _Prepared, errors: list, stage: Stage) -> None:
        _evaluate_method(cfg, bb, att, metrics[name], prep, rd, done, orphans, summary, errors,
                         stage)

    per_image = sum(len(metrics[name]) for name in atts)
    return _batch_loop(cfg, bb, atts, samples, rd, summary, stop, on_batch, "evaluate", known,
                       is_done, per_image, work)


def _variants(metric: Metric, bb: Backbone) -> tuple[str, ...]:
    """The variants a metric writes for this model (model_randomisation's depend on it)."""
    variants_for = getattr(metric, "variants_for", None)
    return tuple(variants_for(bb) if variants_for else metric.variants) or ("",)


def _score_key_tail(bb: Backbone, att: Attributer, name: str, metric: Metric) -> tuple[str, ...]:
    """``SCORE_KEY`` without the image id (``variant`` follows)."""
    return (bb.name, bb.weights, att.key, att.method_params_json(), name,
            metric.metric_params_json())


def _scores_done(bb: Backbone, atts: dict[str, Attributer], metrics: dict[str, dict[str, Metric]],
                 done: Any) -> DoneCheck:
    """Has an image every score row (method × metric × variant) the run would write?"""
    tails = [(*_score_key_tail(bb, att, mname, metric), v)
             for name, att in atts.items() for mname, metric in metrics[name].items()
             for v in _variants(metric, bb)]

    def check(image_id: str, target: int) -> bool:
        return all((image_id, *tail) in done for tail in tails)

    return check


def _evaluate_method(cfg, bb, att, metrics, prep, rd, done, orphans, summary, errors,
                     stage: Stage | None = None) -> None:
    """Score one method's batch with the metrics; rows already written are not written again.

    ``done`` holds ``SCORE_KEY + (variant,)`` tuples: an image is scored again only when one of
    the metric's variants is missing (a kill can cut a large append at a page boundary), and
    only the missing rows are written. ``orphans`` are curve points already written whose score
    row is missing; they are not written twice.
    """
    ids = prep.ids()
    todo = {}
    for mname, metric in metrics.items():
        key_tail = _score_key_tail(bb, att, mname, metric)
        # metrics whose variants depend on the model (model_randomisation) say so up front
        variants = _variants(metric, bb)
        pos = np.array([p for p, i in enumerate(ids)
                        if any((i, *key_tail, v) not in done for v in variants)], dtype=int)
        if len(pos):
            todo[mname] = pos
    if not todo:
        summary.skipped += len(ids) * len(metrics)
        return
    stage = stage or (lambda method, what: None)
    need = np.unique(np.concatenate(list(todo.values())))
    stage(att.key, "attribute")
    try:
        raw, secs = _attributions(cfg, bb, att, prep, need, rd, summary)
    except ResultsWriteError:
        raise
    except Exception as exc:  # noqa: BLE001
        errors.extend(_error_row(prep.batch.samples[prep.idx[p]], "attribute", bb.name,
                                 f"{type(exc).__name__}: {exc}", att.key) for p in need)
        return
    where = {int(p): j for j, p in enumerate(need)}
    rows, curves = [], []
    for mname, pos in todo.items():
        metric = metrics[mname]
        sel = np.array([where[int(p)] for p in pos])
        rows_idx = prep.idx[pos]
        stage(att.key, f"evaluate {mname}")
        t0 = time.perf_counter()
        try:
            out = metric.evaluate(
                bb, att, prep.batch.images[rows_idx], prep.targets[pos], raw[sel],
                boxes=[prep.batch.boxes[i] for i in rows_idx],
                box_labels=[prep.batch.box_labels[i] for i in rows_idx],
                seeds=prep.seeds[rows_idx], shared=prep.shared,
            )
        except Exception as exc:  # noqa: BLE001 - a failing metric does not stop the run
            errors.extend(_error_row(prep.batch.samples[i], "evaluate", bb.name,
                                     f"{type(exc).__name__}: {exc}", att.key, mname)
                          for i in rows_idx)
            continue
        per_image = (time.perf_counter() - t0) / len(pos)
        r, c = _score_rows(cfg, bb, att, metric, prep, pos, secs[sel], per_image, out)
        r = [row for row in r if _row_key(row) not in done]
        c = [pt for pt in c if _row_key(pt) not in done
             and (*_row_key(pt), _fmt(pt["x"])) not in orphans]
        rows.extend(r)
        curves.extend(c)
    rd.curves.append(curves)  # curves first: a score row implies its curve is complete
    summary.rows += rd.scores.append(rows)
    summary.count_rows(rows)
    done.update(_row_key(row) for row in rows)


def _row_key(row: dict[str, Any]) -> tuple[str, ...]:
    """``SCORE_KEY + (variant,)`` of a score or curve row, as the strings written to the CSV."""
    return tuple(str(_fmt(row[c])) for c in (*SCORE_KEY, "variant"))


def _split_extra(extras: list[Any] | None, j: int) -> tuple[Any, dict[str, Any] | None]:
    """A metric's per-image extra: a dict (its ``curve`` goes to curves.csv, the rest to the
    ``extra`` column as JSON) or directly a curve of (x, y) pairs."""
    if extras is None or extras[j] is None:
        return None, None
    item = extras[j]
    if isinstance(item, dict):
        info = {k: v for k, v in item.items() if k != "curve"}
        return item.get("curve"), info or None
    return item, None


def _score_rows(cfg, bb, att, metric, prep, pos, att_secs, metric_secs, out: MetricOutput):
    ids = prep.ids()
    mp, xp = att.method_params_json(), metric.metric_params_json()
    recorded = ("; " + json.dumps(out.recorded, sort_keys=True, default=str)) if out.recorded else ""
    rows, curves = [], []
    for j, p in enumerate(pos):
        i = prep.idx[p]
        label = int(prep.batch.labels[i])
        base = {
            "image_id": ids[p], "model": bb.name, "weights": bb.weights, "method": att.key,
            "method_params": mp, "metric": metric.name, "metric_params": xp,
            "target": int(prep.targets[p]), "label": label if label >= 0 else "",
            "predicted": int(prep.predicted[i]), "confidence": float(prep.confidence[i]),
            "seconds": float(att_secs[j]), "metric_seconds": float(metric_secs),
            "seed": cfg.seed,
        }
        for variant, values in out.values.items():
            note = out.notes.get(variant, [""] * len(pos))[j]
            extra_notes = "; ".join(prep.batch.notes[i]) if metric.needs_boxes else ""
            rows.append({**base, "variant": variant, "value": float(values[j]),
                         "note": "; ".join(x for x in (note, extra_notes) if x) + recorded,
                         "_metric_note": note})  # not a column: the summary's NaN reason
            curve, info = _split_extra(out.extras.get(variant), j)
            if info:
                rows[-1]["extra"] = json.dumps(info, sort_keys=True, default=_json_default)
            if curve is not None:
                keys = ("image_id", "model", "weights", "method", "method_params", "metric",
                        "metric_params")
                curves.extend({**{k: base[k] for k in keys}, "variant": variant,
                               "x": float(x), "y": float(y)} for x, y in curve)
    return rows, curves
