"""The local executor: ``attribute`` or ``evaluate`` over samples into a results folder. Ray
workers (:mod:`tfxai.executors`) run it on their shards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tfxai.data.dataset import Sample
from tfxai.pipeline.attribute import attribute_model
from tfxai.pipeline.batches import BatchHook, ModelJob
from tfxai.pipeline.config import RunConfig, RunSummary
from tfxai.pipeline.evaluate import evaluate_model
from tfxai.pipeline.preflight import check_backgrounds, load_samples
from tfxai.pipeline.session import Session, sigint_guard
from tfxai.results import ResultsDir

__all__ = ["run_local"]


def run_local(
    cfg: RunConfig,
    command: str,
    samples: list[Sample] | None = None,
    rd: ResultsDir | None = None,
    session: Session | None = None,
    log: bool = True,
    on_batch: BatchHook | None = None,
    dataset_stats: dict[tuple[str, str, str], Any] | None = None,
    notes: Sequence[str] = (),
) -> RunSummary:
    """The local pipeline: ``attribute`` or ``evaluate`` over ``samples`` into ``rd``.

    Ray workers call it with their shard's samples, a shard folder resuming from the results
    folder, their cached session and the dataset statistics computed over all shards.
    ``notes`` (from :func:`preflight`) start the summary's notes.
    """
    rd = rd if rd is not None else ResultsDir(cfg.out)
    if samples is None:
        samples = load_samples(cfg)
    rd.check_writable()  # an unwritable folder fails before the models load; creates nothing
    session = session or Session(cfg)
    # Every model with its methods and metrics is built before anything is written, so a usage
    # error (weights not reachable, unknown layer, bad parameter) leaves no trace. The session
    # keeps them for the whole run anyway.
    plan = []
    for model_name in cfg.models:
        bb = session.backbone(model_name)
        atts = session.attributers(bb)
        check_backgrounds(atts, samples)
        metrics = {m: session.metrics(bb, m) for m in atts} if command == "evaluate" else {}
        plan.append((bb, atts, metrics))
    rd.ensure_writable()
    if log:
        rd.log_run(cfg.record(command))
    summary = RunSummary(images=len(samples), out=rd.root, notes=list(notes))
    with sigint_guard() as stop:
        for bb, atts, metrics in plan:
            job = ModelJob(cfg, bb, atts, samples, rd, summary, stop, metrics, on_batch)
            if command == "attribute":
                stopped = attribute_model(job)
            else:
                stopped = evaluate_model(job, log, dataset_stats)
            if stopped:
                summary.interrupted = True
                break
    return summary
