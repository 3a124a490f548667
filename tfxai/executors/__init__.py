"""Executors other than the local one (:func:`tfxai.pipeline.local.run_local`): they depend on
:mod:`tfxai.pipeline` only, and :mod:`tfxai.run` dispatches to them.

* :mod:`tfxai.executors.ray`: shards of the image list on Ray actors, merged into one folder
  (the driver);
* :mod:`tfxai.executors.worker`: the Ray actor.
"""

from __future__ import annotations

from tfxai.executors.ray import (
    MAX_RETRIES,
    SHARD_DIR,
    SHARDS_PER_WORKER,
    ExecutorError,
    _combine_stats,
    partition,
    run_ray,
)
from tfxai.executors.worker import FAULT_ENV, ShardWorker

__all__ = ["run_ray", "partition", "ExecutorError", "ShardWorker", "SHARD_DIR",
           "SHARDS_PER_WORKER", "MAX_RETRIES", "FAULT_ENV", "_combine_stats"]
