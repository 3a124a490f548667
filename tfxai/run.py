"""The pipeline: models × methods (× metrics) over streamed image batches, with resume.

``run_attribute`` computes and stores attributions and ``predictions.csv``. ``run_evaluate``
additionally scores them with metrics into ``scores.csv``, reusing stored attributions whose
parameters and target match and computing the missing ones.

Both stream images from disk one batch at a time, skip keys that are already written (so an
interrupted run resumes where it stopped), record per-image failures in ``errors.csv`` and go on.
SIGINT (Ctrl-C) stops cleanly after the batch in flight.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfxai.attribution.base import Attributer, _json_default, get_attributer
from tfxai.data.dataset import Batch, Sample, discover, iter_batches, shard
from tfxai.evaluation.base import Metric, MetricOutput, get_metric
from tfxai.models import Backbone, load_model
from tfxai.results import SCORE_KEY, ResultsDir, ResultsWriteError, _fmt

__all__ = ["RunConfig", "RunSummary", "run_attribute", "run_evaluate", "ConfigError"]

TARGET_MODES = ("predicted", "label")
EXECUTORS = ("local", "ray")


class ConfigError(ValueError):
    """A usage error found before any work is done (exit code 2 in the CLI)."""


@dataclass
class RunConfig:
    """Parameters of one ``attribute``/``evaluate`` run (the CLI options)."""

    models: Sequence[str]
    methods: Sequence[str]
    images: str | Path | Sequence[str | Path]
    metrics: Sequence[str] = ()
    annotations: str | Path | None = None
    labels: str | Path | None = None
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
    """What a run did. ``errors`` counts per-image failures recorded in ``errors.csv``."""

    images: int = 0
    computed: int = 0
    skipped: int = 0
    rows: int = 0
    errors: int = 0
    interrupted: bool = False
    out: Path | None = None
    notes: list[str] = field(default_factory=list)


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
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, disable=not enabled, unit="img",
                dynamic_ncols=True, leave=True)


def _load_samples(cfg: RunConfig) -> list[Sample]:
    samples = discover(cfg.images, cfg.annotations, cfg.labels, limit=None)
    if cfg.shard is not None:
        samples = shard(samples, *cfg.shard)
    return samples[: cfg.limit] if cfg.limit else samples


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

    def ids(self) -> list[str]:
        return [self.batch.samples[i].image_id for i in self.idx]


def _predict_batch(
    cfg: RunConfig, bb: Backbone, batch: Batch, rd: ResultsDir, pred_done: set, errors: list
) -> _Prepared:
    probs = bb.predict(batch.images, batch_size=cfg.batch_size)
    predicted = probs.argmax(axis=1)
    confidence = probs[np.arange(len(probs)), predicted]
    rows = []
    for i, s in enumerate(batch.samples):
        key = (s.image_id, bb.name, bb.weights)
        if key in pred_done:
            continue
        label = int(batch.labels[i])
        rows.append({
            "image_id": s.image_id, "model": bb.name, "weights": bb.weights,
            "label": label if label >= 0 else "", "predicted": int(predicted[i]),
            "confidence": float(confidence[i]),
            "correct": "" if label < 0 else int(label == predicted[i]),
        })
        pred_done.add(key)
    rd.predictions.append(rows)
    if cfg.target == "label":
        keep = np.flatnonzero(batch.labels >= 0)
        for i in np.flatnonzero(batch.labels < 0):
            errors.append(_error_row(batch.samples[i], "target", bb.name,
                                     "no label for --target label"))
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


def _attributions(
    cfg: RunConfig, bb: Backbone, att: Attributer, prep: _Prepared, positions: np.ndarray,
    rd: ResultsDir, summary: RunSummary, load: bool = True,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Raw attributions and per-image seconds for ``prep.idx[positions]``: stored or computed.

    With ``load=False`` stored ones are only counted and missing ones computed; returns None.
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
        rows = prep.idx[mpos]
        t0 = time.perf_counter()
        raw = att.attribute(prep.batch.images[rows], prep.targets[mpos], seeds=prep.seeds[rows])
        per_image = (time.perf_counter() - t0) / len(mpos)
        rd.store.put(bb.name, bb.weights, att.key, mp, [ids[p] for p in mpos], raw,
                     prep.targets[mpos], seconds=[per_image] * len(mpos),
                     run_params=_store_params(cfg))
        for p, a in zip(mpos, raw, strict=True):
            out[int(p)] = a
            secs[int(p)] = per_image
        summary.computed += len(mpos)
    if not load:
        return None
    order = [int(p) for p in positions]
    return np.stack([out[p] for p in order]), np.array([secs[p] for p in order])


def _store_params(cfg: RunConfig) -> dict[str, Any]:
    return {"resize": cfg.resize, "target": cfg.target, "seed": cfg.seed}


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
) -> RunSummary:
    """The local pipeline: ``attribute`` or ``evaluate`` over ``samples`` into ``rd``.

    Ray workers call it with their shard's samples, a shard folder resuming from the results
    folder, their cached session and the dataset statistics computed over all shards.
    """
    rd = rd if rd is not None else ResultsDir(cfg.out)
    if samples is None:
        samples = _load_samples(cfg)
    rd.ensure_writable()
    if log:
        rd.log_run(cfg.record(command))
    session = session or _Session(cfg)
    summary = RunSummary(images=len(samples), out=rd.root)
    with _sigint_guard() as stop:
        for model_name in cfg.models:
            bb = session.backbone(model_name)
            atts = session.attributers(bb)
            if command == "attribute":
                if _attribute_model(cfg, bb, atts, samples, rd, summary, stop, on_batch):
                    break
                continue
            metrics = {m: session.metrics(bb, m) for m in atts}
            if cfg.annotations is None and any(
                x.needs_boxes for ms in metrics.values() for x in ms.values()
            ):
                summary.notes.append("no --annotations given: localisation metrics are NaN "
                                     "with note 'no boxes'")
            if dataset_stats is None:
                _dataset_pass(cfg, bb, atts, metrics, samples, rd, summary, stop, log=log)
            else:
                _set_dataset_stats(bb, metrics, dataset_stats)
            if stop.requested or _evaluate_model(cfg, bb, atts, metrics, samples, rd, summary,
                                                  stop, on_batch):
                summary.interrupted = True
                break
    return summary


def _check_metrics(cfg: RunConfig) -> None:
    if not cfg.metrics:
        raise ConfigError("--metric: give at least one metric")
    for name in cfg.metrics:  # validate names and parameters before any work
        _build_metrics(RunConfig(**{**cfg.__dict__, "metrics": [name]}), "")


# --------------------------------------------------------------------------------------- attribute


def run_attribute(cfg: RunConfig) -> RunSummary:
    """Compute and store attributions (and predictions) for models × methods over the images."""
    cfg.validate()
    if cfg.executor == "ray":
        from tfxai.executors import run_ray

        return run_ray(cfg, "attribute")
    return _run_local(cfg, "attribute")


def _attribute_model(cfg, bb, atts, samples, rd, summary, stop, on_batch=None) -> bool:
    _check_backgrounds(atts, samples)
    pred_done = rd.prediction_keys()
    bar = _progress(len(samples) * len(atts), f"{bb.name} attribute", cfg.progress)
    try:
        for n, batch in enumerate(iter_batches(samples, bb.input_size, cfg.batch_size,
                                               cfg.resize)):
            errors = _load_errors(batch, bb.name)
            if batch.samples:
                prep = _predict_batch(cfg, bb, batch, rd, pred_done, errors)
                for name, att in atts.items():
                    try:
                        _attributions(cfg, bb, att, prep, np.arange(len(prep.idx)), rd, summary,
                                      load=False)
                    except ResultsWriteError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - recorded per image, run goes on
                        errors.extend(_error_row(batch.samples[i], "attribute", bb.name,
                                                 f"{type(exc).__name__}: {exc}", name)
                                      for i in prep.idx)
                    bar.update(len(batch.samples) + len(batch.errors))
            else:
                bar.update(len(batch.errors) * len(atts))
            _flush_errors(rd, errors, summary)
            if on_batch is not None:
                on_batch(bb.name, n)
            if stop.requested:
                summary.interrupted = True
                return True
    finally:
        bar.close()
    return False


def _flush_errors(rd: ResultsDir, errors: list[dict[str, Any]], summary: RunSummary) -> None:
    if errors:
        rd.record_errors(errors)
        summary.errors += len(errors)


# --------------------------------------------------------------------------------------- evaluate


def run_evaluate(cfg: RunConfig) -> RunSummary:
    """Score models × methods × metrics over the images into ``scores.csv`` (resumable)."""
    cfg.validate()
    _check_metrics(cfg)
    if cfg.executor == "ray":
        from tfxai.executors import run_ray

        return run_ray(cfg, "evaluate")
    return _run_local(cfg, "evaluate")


def _dataset_pass(cfg, bb, atts, metrics, samples, rd, summary, stop, log=True,
                  combine=True) -> dict[tuple[str, str, str], list[Any]]:
    """First pass for metrics that need a dataset statistic (e.g. SSIM's data range L).

    Returns the per-batch statistics by (model, method, metric); with ``combine`` each metric's
    ``dataset_stat`` is set from them (Ray combines the lists of all shards instead).
    """
    todo = [(name, m) for name in atts for m in metrics[name].values() if m.needs_dataset_pass]
    if not todo:
        return {}
    stats: dict[tuple[str, str, str], list[Any]] = {(bb.name, n, m.name): [] for n, m in todo}
    bar = _progress(len(samples) * len(atts), f"{bb.name} dataset pass", cfg.progress)
    pred_done = rd.prediction_keys()
    try:
        for batch in iter_batches(samples, bb.input_size, cfg.batch_size, cfg.resize):
            if not batch.samples:
                continue
            prep = _predict_batch(cfg, bb, batch, rd, pred_done, [])
            for name, metric in todo:
                raw, _ = _attributions(cfg, bb, atts[name], prep, np.arange(len(prep.idx)), rd,
                                       summary)
                stats[(bb.name, name, metric.name)].append(
                    metric.dataset_statistic(atts[name], raw))
            bar.update(len(batch.samples) * len(atts))
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


def _evaluate_model(cfg, bb, atts, metrics, samples, rd, summary, stop, on_batch=None) -> bool:
    _check_backgrounds(atts, samples)
    done = rd.score_keys()
    orphans = rd.orphan_curve_points(done)
    pred_done = rd.prediction_keys()
    bar = _progress(len(samples) * len(atts), f"{bb.name} evaluate", cfg.progress)
    try:
        for n, batch in enumerate(iter_batches(samples, bb.input_size, cfg.batch_size,
                                               cfg.resize)):
            errors = _load_errors(batch, bb.name)
            if batch.samples:
                prep = _predict_batch(cfg, bb, batch, rd, pred_done, errors)
                for name, att in atts.items():
                    _evaluate_method(cfg, bb, att, metrics[name], prep, rd, done, orphans,
                                     summary, errors)
                    bar.update(len(batch.samples))
            _flush_errors(rd, errors, summary)
            if on_batch is not None:
                on_batch(bb.name, n)
            if stop.requested:
                return True
    finally:
        bar.close()
    return False


def _evaluate_method(cfg, bb, att, metrics, prep, rd, done, orphans, summary, errors) -> None:
    """Score one method's batch with the metrics; rows already written are not written again.

    ``done`` holds ``SCORE_KEY + (variant,)`` tuples: an image is scored again only when one of
    the metric's variants is missing (a kill can cut a large append at a page boundary), and
    only the missing rows are written. ``orphans`` are curve points already written whose score
    row is missing; they are not written twice.
    """
    mp = att.method_params_json()
    ids = prep.ids()
    todo = {}
    for mname, metric in metrics.items():
        key_tail = (bb.name, bb.weights, att.key, mp, mname, metric.metric_params_json())
        # metrics whose variants depend on the model (model_randomisation) say so up front
        variants_for = getattr(metric, "variants_for", None)
        variants = tuple(variants_for(bb) if variants_for else metric.variants) or ("",)
        pos = np.array([p for p, i in enumerate(ids)
                        if any((i, *key_tail, v) not in done for v in variants)], dtype=int)
        if len(pos):
            todo[mname] = pos
    if not todo:
        summary.skipped += len(ids) * len(metrics)
        return
    need = np.unique(np.concatenate(list(todo.values())))
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
        t0 = time.perf_counter()
        try:
            out = metric.evaluate(
                bb, att, prep.batch.images[rows_idx], prep.targets[pos], raw[sel],
                boxes=[prep.batch.boxes[i] for i in rows_idx],
                box_labels=[prep.batch.box_labels[i] for i in rows_idx],
                seeds=prep.seeds[rows_idx],
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
                         "note": "; ".join(x for x in (note, extra_notes) if x) + recorded})
            curve, info = _split_extra(out.extras.get(variant), j)
            if info:
                rows[-1]["extra"] = json.dumps(info, sort_keys=True, default=_json_default)
            if curve is not None:
                keys = ("image_id", "model", "weights", "method", "method_params", "metric",
                        "metric_params")
                curves.extend({**{k: base[k] for k in keys}, "variant": variant,
                               "x": float(x), "y": float(y)} for x, y in curve)
    return rows, curves
