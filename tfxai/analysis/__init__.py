"""The Analyser: summaries, the reliability test, plots and a self-contained HTML report.

It reads results folders (``scores.csv``, ``predictions.csv`` and optionally ``roar.csv``, ``models.csv``
and ``attributions.h5``) and needs no model. Entry point: :func:`analyse`. It never imports the CLI nor
TensorFlow: metric facts (direction, range, comparability) come from :mod:`tfxai.metadata`.

This package only re-exports; its modules import each other, never the package. In the order of
:func:`analyse`: ``loading`` (results folders) → ``options`` → ``tables`` (summary, ranking,
undefined, reliability, cost, augmentation, roar, curves, modelinfo, settings, runinfo) → ``figures``
(``plots``, ``gallery_plot`` and ``canvas`` draw; ``gallery``, ``stores``, ``imagefiles`` and
``display`` gather the gallery) → ``sections`` (``report``, ``study``); ``pipeline`` runs them.
"""

from .directions import HIGHER, LOWER, Direction, metric_direction
from .loading import Results, ResultsError, load_results
from .pipeline import Analysis, AnalysisOptions, analyse
from .reliability import (
    ORDER_PRESERVING,
    RELIABLE,
    UNRELIABLE,
    kendalls_w,
    pair_order_share,
    rank_methods,
    reliability_test,
)
from .summary import Bootstrap, add_band, bootstrap_ci, confidence_band, describe, summarise

__all__ = [
    "HIGHER",
    "LOWER",
    "ORDER_PRESERVING",
    "RELIABLE",
    "UNRELIABLE",
    "Analysis",
    "AnalysisOptions",
    "Bootstrap",
    "Direction",
    "Results",
    "ResultsError",
    "add_band",
    "analyse",
    "bootstrap_ci",
    "confidence_band",
    "describe",
    "kendalls_w",
    "load_results",
    "metric_direction",
    "pair_order_share",
    "rank_methods",
    "reliability_test",
    "summarise",
]
