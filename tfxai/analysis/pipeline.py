"""The Analyser: results folders in; CSV tables, PNG plots and ``report.html`` out.

:func:`analyse` is what ``tfxai analyse`` calls. It writes into ``out``:

- ``summary.csv``: mean, ``std_sample`` (sample std, ddof=1), ``count`` (defined values), ``nan_count``,
  a seeded bootstrap 95 % interval over images (``ci_low``, ``ci_high``, ``n`` images), ``out_of_range``,
  ``direction`` and ``comparable`` per metric × variant × the ``by`` columns;
- ``summary_by_band.csv``: the same split by confidence band (high = top-1 p > threshold);
- ``ranking.csv``: per metric × variant × model, the best method, ``tie: a, b``, or why there is no
  ranking (not comparable across methods, too few values) (:mod:`tfxai.analysis.ranking`);
- ``undefined.csv``: the share of NaN values per metric × variant and their reasons
  (:mod:`tfxai.analysis.undefined`);
- ``ssim_augmentation_groups.csv`` / ``ssim_augmentation_variants.csv``: rotations vs filters vs all, and
  per augmentation (only when that metric is present);
- ``cost.csv`` (seconds per attribution per method × model) and ``cost_by_metric.csv``;
- ``model_info.csv``: model ids, architectures, accuracies and where they came from;
- ``reliability.csv``: the reliability test (see :mod:`tfxai.analysis.reliability`);
- ``roar_summary.csv`` when a ``roar.csv`` was found, ``curves_summary.csv`` when a ``curves.csv`` was;
- ``plots/*.png`` and ``report.html``; with a ``study.csv`` (``tfxai study``) the report opens with the
  study's published tables next to ours and which findings hold (:mod:`tfxai.analysis.study`).

A method or metric computed with several parameter sets is never pooled: each set is its own row,
labelled with the differing parameters (:mod:`tfxai.analysis.settings`).

The steps live in their own modules: the options (:mod:`tfxai.analysis.options`), the tables and
notes (:mod:`tfxai.analysis.tables`), the plots (:mod:`tfxai.analysis.figures`) and the report's
sections (:mod:`tfxai.analysis.sections`); the names they define are importable from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .figures import Drawn, draw_plots
from .loading import load_results
from .options import DEFAULT_GALLERY, Analysis, AnalysisOptions, gallery_count, gallery_sources
from .options import _existing as _existing  # re-exported: tests/test_studies.py imports it here
from .sections import build_report
from .tables import compute_tables, prepare, with_settings, write_tables

__all__ = [
    "DEFAULT_GALLERY",
    "Analysis",
    "AnalysisOptions",
    "analyse",
    "build_report",
    "compute_tables",
    "draw_plots",
    "gallery_count",
    "gallery_sources",
    "prepare",
    "with_settings",
    "write_tables",
]


def analyse(
    dirs: Sequence[str | Path], out: str | Path, options: AnalysisOptions | None = None
) -> Analysis:
    """Analyse the results folders ``dirs`` and write tables, plots and the report into ``out``.

    Raises:
        tfxai.analysis.ResultsError: a folder is missing or is not a results folder.
        ValueError: an option is invalid (the message names it).
    """
    options = options or AnalysisOptions()
    results = load_results(dirs)
    tables, notes = compute_tables(results, options)
    out = Path(out)
    files = write_tables(tables, out)
    drawn: dict[str, Drawn] = {}
    if options.plots:
        drawn = draw_plots(tables, results, options, out)
        files.extend(p for group in drawn.values() for p, _ in group)
    if options.report:
        files.append(build_report(tables, drawn, results, options, notes, out))
    return Analysis({k: v for k, v in tables.items() if not k.startswith("_")}, files, notes)
