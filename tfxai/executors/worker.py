"""The Ray actor of the ``ray`` executor (:mod:`tfxai.executors.ray`): it loads the run's
models once and runs the local pipeline (:func:`tfxai.pipeline.local.run_local`) on one shard at
a time, into its own folder."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from tfxai.data.dataset import Sample
from tfxai.pipeline.batches import ModelJob
from tfxai.pipeline.config import RunConfig, RunSummary
from tfxai.pipeline.evaluate import dataset_pass
from tfxai.pipeline.local import run_local
from tfxai.pipeline.session import Session, sigint_guard
from tfxai.results import ResultsDir

#: test hook: a worker finding ``<dir>/kill-shard-<j>`` exits hard after the first batch of shard j
FAULT_ENV = "TFXAI_TEST_FAULT_DIR"

__all__ = ["ShardWorker", "FAULT_ENV"]


def _limit_threads(cpus: int) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(min(cpus, 2))
    except RuntimeError:  # TensorFlow already initialised in this process
        pass


def _fault_hook(shard: int):
    folder = os.environ.get(FAULT_ENV)
    if not folder:
        return None
    armed = Path(folder) / f"kill-shard-{shard}"

    def hook(model: str, batch: int) -> None:
        if not armed.exists():
            return
        try:
            os.replace(armed, armed.with_name(armed.name + ".fired"))  # atomic: fires once
        except OSError:
            return
        os._exit(17)

    return hook


def _session_key(cfg: RunConfig) -> str:
    """What a worker's loaded models, attributers and metrics depend on."""
    import json

    return json.dumps([list(cfg.models), cfg.weights, cfg.model_options, list(cfg.methods),
                       cfg.method_params, list(cfg.metrics), cfg.metric_params, cfg.seed],
                      sort_keys=True, default=str)


class ShardWorker:
    """A Ray actor: the run's models loaded once (kept for the next run with the same models,
    methods and metrics), running shards with the local pipeline."""

    def __init__(self, cpus: int) -> None:
        _limit_threads(cpus)
        self._key: str | None = None
        self.session: Session | None = None
        self.cfg: RunConfig | None = None

    def pid(self) -> int:
        return os.getpid()

    def _use(self, cfg: RunConfig) -> Session:
        cfg = dataclasses.replace(cfg, progress=False, executor="local", address=None,
                                  num_workers=None)
        key = _session_key(cfg)
        if key != self._key or self.session is None:
            self.session = None  # free the previous models first
            self.session = Session(cfg)
            self._key = key
        self.session.cfg = cfg
        self.cfg = cfg
        return self.session

    def dataset_stats(self, shard: int, samples: list[Sample], cfg: RunConfig, command: str,
                      shard_dir: str, dest: str) -> dict[tuple[str, str, str], list[Any]]:
        """Per-batch statistics of the dataset-pass metrics over this shard."""
        session = self._use(cfg)
        rd = ResultsDir(shard_dir, resume_from=[dest])
        rd.ensure_writable()
        summary = RunSummary()
        out: dict[tuple[str, str, str], list[Any]] = {}
        with sigint_guard() as stop:
            for model in session.cfg.models:
                bb = session.backbone(model)
                atts = session.attributers(bb)
                metrics = {m: session.metrics(bb, m) for m in atts}
                job = ModelJob(session.cfg, bb, atts, samples, rd, summary, stop, metrics)
                out.update(dataset_pass(job))
        return out

    def run_shard(self, shard: int, samples: list[Sample], cfg: RunConfig, command: str,
                  shard_dir: str, dest: str, stats: dict[tuple[str, str, str], Any] | None
                  ) -> dict[str, Any]:
        session = self._use(cfg)
        summary = run_local(session.cfg, command, samples,
                             ResultsDir(shard_dir, resume_from=[dest]), session, log=False,
                             on_batch=_fault_hook(shard), dataset_stats=stats)
        return {k: v for k, v in dataclasses.asdict(summary).items() if k != "out"}
