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

This module is the entry point: it checks the run (:mod:`tfxai.pipeline.preflight`) and hands it
to an executor: ``local`` (default, :func:`tfxai.pipeline.local.run_local`) runs here; ``ray``
(``pip install .[ray]``) splits the images into deterministic shards that Ray actors — each
holding its models loaded once — run with the same local pipeline into per-shard folders, merged
atomically into the results folder (:mod:`tfxai.executors`, docs/scaling.md). The pipeline itself
lives in :mod:`tfxai.pipeline`; docs/architecture.md draws the layout.
"""

from __future__ import annotations

from tfxai.pipeline import (
    ConfigError,
    InputIndependenceWarning,
    RunConfig,
    RunSummary,
    check_metrics,
    input_independent,
    preflight,
    run_local,
)

__all__ = ["RunConfig", "RunSummary", "run_attribute", "run_evaluate", "ConfigError",
           "InputIndependenceWarning", "input_independent"]


def _dispatch(cfg: RunConfig, command: str) -> RunSummary:
    samples, notes = preflight(cfg, command)
    if cfg.executor == "ray":
        from tfxai.executors import run_ray

        return run_ray(cfg, command, samples, notes)
    return run_local(cfg, command, samples, notes=notes)


def run_attribute(cfg: RunConfig) -> RunSummary:
    """Compute and store attributions (and predictions) for models × methods over the images.

    Usage errors (:class:`ConfigError`, :class:`~tfxai.data.dataset.DatasetError`) are raised
    before anything is written.
    """
    cfg.validate()
    return _dispatch(cfg, "attribute")


def run_evaluate(cfg: RunConfig) -> RunSummary:
    """Score models × methods × metrics over the images into ``scores.csv`` (resumable).

    Usage errors — among them a metric that needs boxes (or ``--target label``) on images that
    have none — are raised before any model is loaded and anything is written.
    """
    cfg.validate()
    check_metrics(cfg)
    return _dispatch(cfg, "evaluate")
