"""The ``evaluate`` job of one model: the dataset pass of metrics that need one, scoring each
method's batch with its metrics (only the rows not yet written), and the score rows."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from tfxai.attribution.base import Attributer
from tfxai.data.dataset import iter_batches
from tfxai.evaluation.base import Metric, MetricOutput
from tfxai.models import Backbone
from tfxai.params import json_default
from tfxai.pipeline.attribute import compute_attributions
from tfxai.pipeline.batches import (
    DoneCheck,
    Known,
    ModelJob,
    PredictionMemo,
    Prepared,
    batch_loop,
    count_with_target,
    error_row,
    known_label,
    predict_batch,
    work_left,
)
from tfxai.pipeline.config import RunConfig, RunSummary
from tfxai.pipeline.session import Stage, progress_bar, stage_setter
from tfxai.results import SCORE_KEY, ResultsDir, ResultsWriteError, _fmt

__all__ = ["dataset_pass_metrics", "dataset_pass", "combine_dataset_stats", "evaluate_model", "metric_variants", "score_key_tail", "scores_done", "evaluate_method", "row_key", "split_extra", "score_rows"]


def dataset_pass_metrics(atts: dict[str, Attributer], metrics: dict[str, dict[str, Metric]]
                          ) -> list[tuple[str, Metric]]:
    return [(name, m) for name in atts for m in metrics[name].values() if m.needs_dataset_pass]


def dataset_pass(job: ModelJob, known: Known | None = None, memo: PredictionMemo | None = None
                 ) -> dict[tuple[str, str, str], list[Any]]:
    """First pass for metrics that need a dataset statistic (e.g. SSIM's data range L).

    Always over all the samples (loaded and predicted), so the statistic does not depend on
    what is already done. Returns the per-batch statistics by (model, method, metric), for
    :func:`combine_dataset_stats` (Ray combines the lists of all shards instead). ``known``: the
    model's prediction rows (read from ``rd`` when None).
    """
    cfg, bb, atts, rd, samples = job.cfg, job.bb, job.atts, job.rd, job.samples
    todo = dataset_pass_metrics(atts, job.metrics)
    if not todo:
        return {}
    stats: dict[tuple[str, str, str], list[Any]] = {(bb.name, n, m.name): [] for n, m in todo}
    bar = progress_bar(len(samples), f"{bb.name} dataset pass", cfg.progress)
    stage = stage_setter(bar, bb.name)
    known = rd.predictions_of(bb.name, bb.weights) if known is None else known
    try:
        for batch in iter_batches(samples, bb.input_size, cfg.batch_size, cfg.resize):
            if batch.samples:
                prep = predict_batch(cfg, bb, batch, rd, known, memo)
                for name, metric in todo:
                    stage(name, f"dataset pass of {metric.name}")
                    raw, _ = compute_attributions(cfg, bb, atts[name], prep, np.arange(len(prep.idx)),
                                           rd, job.summary)
                    stats[(bb.name, name, metric.name)].append(
                        metric.dataset_statistic(atts[name], raw))
            bar.update(len(batch.samples) + len(batch.errors))
            if job.stop.requested:
                return stats
    finally:
        bar.close()
    return stats


def combine_dataset_stats(job: ModelJob, lists: dict[tuple[str, str, str], list[Any]],
                          log: bool = True) -> dict[tuple[str, str, str], Any]:
    """Each metric's dataset statistic from its per-batch ones (logged to ``runs.jsonl``); the
    statistics are passed to the metrics when they score, never stored on them."""
    out = {}
    for name, metric in dataset_pass_metrics(job.atts, job.metrics):
        key = (job.bb.name, name, metric.name)
        out[key] = metric.combine_statistics(lists[key])
        if log:
            job.rd.log_run({"command": "evaluate.dataset_pass", "model": job.bb.name,
                            "method": name, "metric": metric.name, "statistic": out[key]})
    return out


def evaluate_model(job: ModelJob, log: bool = True,
                   dataset_stats: dict[tuple[str, str, str], Any] | None = None) -> bool:
    """Scores of one model over the samples (after the dataset pass when a metric needs one,
    or with the ``dataset_stats`` Ray computed over all shards); True when interrupted."""
    cfg, bb, atts, metrics, rd, summary = (job.cfg, job.bb, job.atts, job.metrics, job.rd,
                                           job.summary)
    known = rd.predictions_of(bb.name, bb.weights)
    done = rd.score_keys()
    is_done = scores_done(bb, atts, metrics, done)
    first_pass = dataset_pass_metrics(atts, metrics)
    memo: PredictionMemo | None = {} if first_pass else None  # the pass predicts each image
    stats = dict(dataset_stats or {})
    if dataset_stats is None and first_pass and work_left(cfg, job.samples, known, is_done):
        lists = dataset_pass(job, known=known, memo=memo)
        if job.stop.requested:
            return True
        stats = combine_dataset_stats(job, lists, log)
    elif dataset_stats is None and first_pass:  # nothing left to score: no pass needed
        labels = {s.image_id: known_label(s, known[s.image_id][0]) for s in job.samples}
        summary.skipped += count_with_target(cfg, labels) * len(first_pass)
    orphans = rd.orphan_curve_points(done)

    def work(name: str, att: Attributer, prep: Prepared, errors: list, stage: Stage) -> None:
        evaluate_method(cfg, bb, att, metrics[name], prep, rd, done, orphans, summary, errors,
                        stage, {m: stats.get((bb.name, name, m)) for m in metrics[name]})

    per_image = sum(len(metrics[name]) for name in atts)
    return batch_loop(job, "evaluate", known, is_done, per_image, work, memo)


def metric_variants(metric: Metric, bb: Backbone) -> tuple[str, ...]:
    """The variants a metric writes for this model (model_randomisation's depend on it)."""
    return tuple(metric.variants_for(bb)) or ("",)


def score_key_tail(bb: Backbone, att: Attributer, name: str, metric: Metric) -> tuple[str, ...]:
    """``SCORE_KEY`` without the image id (``variant`` follows)."""
    return (bb.name, bb.weights, att.key, att.method_params_json(), name,
            metric.metric_params_json())


def scores_done(bb: Backbone, atts: dict[str, Attributer], metrics: dict[str, dict[str, Metric]],
                 done: Any) -> DoneCheck:
    """Has an image every score row (method × metric × variant) the run would write?"""
    tails = [(*score_key_tail(bb, att, mname, metric), v)
             for name, att in atts.items() for mname, metric in metrics[name].items()
             for v in metric_variants(metric, bb)]

    def check(image_id: str, target: int) -> bool:
        return all((image_id, *tail) in done for tail in tails)

    return check


def _positions_to_score(bb: Backbone, att: Attributer, metrics: dict[str, Metric],
                        ids: list[str], done: Any) -> dict[str, np.ndarray]:
    """Per metric, the batch positions with a score row (any variant) not yet written."""
    todo = {}
    for mname, metric in metrics.items():
        key_tail = score_key_tail(bb, att, mname, metric)
        # metrics whose variants depend on the model (model_randomisation) say so up front
        variants = metric_variants(metric, bb)
        pos = np.array([p for p, i in enumerate(ids)
                        if any((i, *key_tail, v) not in done for v in variants)], dtype=int)
        if len(pos):
            todo[mname] = pos
    return todo


def evaluate_method(cfg: RunConfig, bb: Backbone, att: Attributer, metrics: dict[str, Metric],
                    prep: Prepared, rd: ResultsDir, done: Any, orphans: set[tuple[str, ...]],
                    summary: RunSummary, errors: list[dict[str, Any]],
                    stage: Stage | None = None, dataset_stats: dict[str, Any] | None = None
                    ) -> None:
    """Score one method's batch with the metrics; rows already written are not written again.

    ``done`` holds ``SCORE_KEY + (variant,)`` tuples: an image is scored again only when one of
    the metric's variants is missing (a kill can cut a large append at a page boundary), and
    only the missing rows are written. ``orphans`` are curve points already written whose score
    row is missing; they are not written twice.
    """
    ids = prep.ids()
    todo = _positions_to_score(bb, att, metrics, ids, done)
    if not todo:
        summary.skipped += len(ids) * len(metrics)
        return
    stage = stage or (lambda method, what: None)
    need = np.unique(np.concatenate(list(todo.values())))
    stage(att.key, "attribute")
    try:
        raw, secs = compute_attributions(cfg, bb, att, prep, need, rd, summary)
    except ResultsWriteError:
        raise
    except Exception as exc:  # noqa: BLE001
        errors.extend(error_row(prep.batch.samples[prep.idx[p]], "attribute", bb.name,
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
                dataset_stat=(dataset_stats or {}).get(mname),
            )
        except Exception as exc:  # noqa: BLE001 - a failing metric does not stop the run
            errors.extend(error_row(prep.batch.samples[i], "evaluate", bb.name,
                                     f"{type(exc).__name__}: {exc}", att.key, mname)
                          for i in rows_idx)
            continue
        per_image = (time.perf_counter() - t0) / len(pos)
        r, c = score_rows(cfg, bb, att, metric, prep, pos, secs[sel], per_image, out)
        r = [row for row in r if row_key(row) not in done]
        c = [pt for pt in c if row_key(pt) not in done
             and (*row_key(pt), _fmt(pt["x"])) not in orphans]
        rows.extend(r)
        curves.extend(c)
    rd.curves.append(curves)  # curves first: a score row implies its curve is complete
    summary.rows += rd.scores.append(rows)
    summary.count_rows(rows)
    done.update(row_key(row) for row in rows)


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    """``SCORE_KEY + (variant,)`` of a score or curve row, as the strings written to the CSV."""
    return tuple(str(_fmt(row[c])) for c in (*SCORE_KEY, "variant"))


def split_extra(extras: list[Any] | None, j: int) -> tuple[Any, dict[str, Any] | None]:
    """A metric's per-image extra: a dict (its ``curve`` goes to curves.csv, the rest to the
    ``extra`` column as JSON) or directly a curve of (x, y) pairs."""
    if extras is None or extras[j] is None:
        return None, None
    item = extras[j]
    if isinstance(item, dict):
        info = {k: v for k, v in item.items() if k != "curve"}
        return item.get("curve"), info or None
    return item, None


def score_rows(cfg: RunConfig, bb: Backbone, att: Attributer, metric: Metric, prep: Prepared,
               pos: np.ndarray, att_secs: np.ndarray, metric_secs: float, out: MetricOutput
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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
            curve, info = split_extra(out.extras.get(variant), j)
            if info:
                rows[-1]["extra"] = json.dumps(info, sort_keys=True, default=json_default)
            if curve is not None:
                keys = ("image_id", "model", "weights", "method", "method_params", "metric",
                        "metric_params")
                curves.extend({**{k: base[k] for k in keys}, "variant": variant,
                               "x": float(x), "y": float(y)} for x, y in curve)
    return rows, curves
