"""The pipeline: models × methods (× metrics) over streamed image batches, with resume.

One-way layout (each module imports only the ones above it):

* :mod:`~tfxai.pipeline.config`: :class:`RunConfig` (what a run is asked) and :class:`RunSummary`
  (what it did);
* :mod:`~tfxai.pipeline.session`: the backbones, attributers and metrics a run builds once, the
  SIGINT flag, the progress bar;
* :mod:`~tfxai.pipeline.preflight`: the checks done before any model is loaded;
* :mod:`~tfxai.pipeline.batches`: the batch loop and the resume fast path;
* :mod:`~tfxai.pipeline.attribute`: attributions of a batch (stored or computed), the
  ``attribute`` job;
* :mod:`~tfxai.pipeline.evaluate`: the dataset pass and the scoring, the ``evaluate`` job;
* :mod:`~tfxai.pipeline.local`: the local executor, :func:`run_local`.

Executors (:mod:`tfxai.executors`) depend on this package only; :mod:`tfxai.run` dispatches a
run to one of them.
"""

from __future__ import annotations

from tfxai.pipeline.attribute import (
    INDEPENDENCE_ATOL,
    InputIndependenceWarning,
    input_independent,
)
from tfxai.pipeline.config import EXECUTORS, TARGET_MODES, ConfigError, RunConfig, RunSummary
from tfxai.pipeline.local import run_local
from tfxai.pipeline.preflight import check_metrics, load_samples, preflight
from tfxai.pipeline.session import Session

__all__ = ["RunConfig", "RunSummary", "ConfigError", "InputIndependenceWarning",
           "input_independent", "INDEPENDENCE_ATOL", "EXECUTORS", "TARGET_MODES", "run_local",
           "Session", "preflight", "check_metrics", "load_samples"]
