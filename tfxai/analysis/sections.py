"""The sections of ``report.html`` and the report itself (:func:`build_report`): the study's tables
when there is one, the summary with its bar charts, undefined values, the reliability test, the
gallery, confidence bands, augmentation robustness, cost, curves, ROAR, and last the run parameters
and versions. The HTML pieces come from :mod:`tfxai.analysis.report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from .cost import BATCH_MEAN
from .figures import Drawn
from .loading import Results
from .options import AnalysisOptions, gallery_count, gallery_sources
from .ranking import comparability_line, ranked_view
from .reliability import INSUFFICIENT, VERDICT_MEANING, verdicts
from .report import (
    Section,
    drop_blank,
    figures_block,
    kv_table,
    loud_block,
    meaning_block,
    notes_block,
    paragraph,
    ranked_table_block,
    table_block,
    verdict_table_block,
    versions,
)
from .report import write as write_report
from .runinfo import commands_table, notes_table, parameters_table, runs_table
from .study import study_sections
from .summary import compact
from .undefined import undefined_lines

#: the drawn plots keyed by report section (:func:`tfxai.analysis.figures.draw_plots`)
Plots = Mapping[str, Drawn]


def build_report(
    tables: Mapping[str, pd.DataFrame],
    drawn: Plots,
    results: Results,
    options: AnalysisOptions,
    notes: Sequence[str],
    out: Path,
) -> Path:
    """Write ``out/report.html``: results first, then run parameters and versions."""
    sections = list(study_sections(results.study, results.studies))
    if not tables["_scores"].empty:  # a roar.csv- or models.csv-only folder has none of these
        sections.extend(_score_sections(tables, drawn, options))
    if "ssim_augmentation_groups" in tables:
        sections.append(Section("Augmentation robustness (SSIM)", [
            table_block(compact(tables["ssim_augmentation_groups"]), "Rotations vs filters"),
            table_block(compact(tables["ssim_augmentation_variants"]), "Per augmentation"),
        ]))  # fmt: skip
    if not tables["cost"].empty:
        sections.append(_cost_section(tables))
    if drawn.get("curves"):
        sections.append(Section("Curves", [figures_block(drawn["curves"])]))
    if "roar_summary" in tables:
        sections.append(Section("ROAR", [
            figures_block(drawn.get("roar", [])),
            table_block(tables["roar_summary"], "roar_summary.csv"),
        ]))  # fmt: skip
    sections.append(_run_section(tables, results, options))
    return write_report(out / "report.html", "tfxai analysis report", sections, notes)


def _score_sections(
    tables: Mapping[str, pd.DataFrame], drawn: Plots, options: AnalysisOptions
) -> list[Section]:
    """The sections read from ``scores.csv``: summary, undefined values, reliability, gallery and
    confidence bands."""
    sections = [
        _summary_section(tables, drawn, options),
        _undefined_section(tables),
        _reliability_section(tables, drawn, options),
    ]
    if drawn.get("gallery"):
        sections.append(Section("Gallery", [figures_block(drawn["gallery"])]))
    sections.append(Section(
        f"Confidence bands (high: top-1 p > {options.high_confidence:g})",
        [table_block(drop_blank(compact(tables["summary_by_band"])), "summary_by_band.csv")],
    ))  # fmt: skip
    return sections


def _summary_section(
    tables: Mapping[str, pd.DataFrame], drawn: Plots, options: AnalysisOptions
) -> Section:
    """Which metrics are comparable, the bar charts and the ranked summary table."""
    boot = options.bootstrap
    view, strong = ranked_view(tables["summary"], tables["ranking"])
    line = comparability_line(tables["_scores"])
    return Section("Summary", [
        meaning_block(line) if line else "",
        paragraph(
            f"Cells read mean [{boot.level:.0%} CI] (count): the interval is a percentile bootstrap "
            f"over images ({boot.resamples} resamples, seed {boot.seed}); count is the number of "
            "defined values (undefined ones are counted in the next section). 'best' names the best "
            "method by the metric's direction, only for metrics comparable across methods; a method "
            "whose mean is equal to the best's, or lies inside its interval (or the best's inside "
            "its own), ties with it ('tie: a, b'). Green cells: the best or the tied methods. With "
            "few images the intervals are wide and, being percentile intervals, somewhat optimistic."
        ),
        ranked_table_block(drop_blank(view), strong, "summary.csv (the best column: ranking.csv)"),
        figures_block(drawn.get("bars", [])),
    ])  # fmt: skip


def _undefined_section(tables: Mapping[str, pd.DataFrame]) -> Section:
    """Shares of undefined values per metric × variant with their reasons, and per method."""
    scores = tables["_scores"]
    lines = undefined_lines(scores)
    table = tables["undefined"].copy()
    if not table.empty:
        table["share"] = [f"{v:.0%}" for v in table["share"]]
    return Section("Undefined values", [
        loud_block(lines) if lines else paragraph(
            "Every value is defined: no metric returned NaN."),
        table_block(drop_blank(table),
                    "Share of undefined values per metric and variant (undefined.csv)"),
        *([table_block(notes_table(scores), "Undefined values per method and note")]
          if lines else []),
    ])  # fmt: skip


def _cost_section(tables: Mapping[str, pd.DataFrame]) -> Section:
    """Seconds per attribution, saying whether they were timed per image or are batch means."""
    table = tables["cost"]
    blocks = []
    if "timing" in table.columns and table["timing"].astype(str).str.startswith(BATCH_MEAN).any():
        blocks.append(paragraph(
            "Rows marked 'batch mean': the seconds of those attributions are the time of a whole "
            "batch divided by its size, repeated for every image of the batch, so their std is the "
            "spread between batches, not between images."
        ))  # fmt: skip
    blocks.append(table_block(table, "Seconds per attribution (method × model)"))
    return Section("Cost", blocks)


def _reliability_section(
    tables: Mapping[str, pd.DataFrame], drawn: Plots, options: AnalysisOptions
) -> Section:
    """What the verdicts mean (or what is missing), the verdicts, metric-vs-accuracy plots and the
    per-scope numbers."""
    table = tables["reliability"]
    found = verdicts(table)
    blocks = [
        paragraph(
            "Is a measure reliable? Within one architecture, the order of the methods by the measure "
            "should be the same in every model, whatever its accuracy (Erdem 2021). A set of models is "
            f"consistent when the share of method pairs keeping their order is ≥ {options.min_pair_share:g} "
            f"and Kendall's W ≥ {options.min_w:g}. The test compares means and carries no significance "
            "test: with few images an order can be noise (the Summary's intervals show which methods "
            "are distinguishable at all)."
        ),
    ]
    tested = found[found["verdict"] != INSUFFICIENT]
    for verdict in dict.fromkeys(tested["verdict"]):
        names = _metric_labels(tested[tested["verdict"] == verdict])
        blocks.append(meaning_block(f"{verdict} ({names}): {VERDICT_MEANING[verdict]}."))
    missing = found[found["verdict"] == INSUFFICIENT]
    for reason in dict.fromkeys(missing["reason"]):
        names = _metric_labels(missing[missing["reason"] == reason])
        blocks.append(notes_block([f"Not tested ({names}): {reason}."]))
    # the reason is in the note above; which method is best is the summary's job (with intervals)
    shown = ["metric", "variant", "n_models", "n_methods", "pair_share", "kendalls_w", "direction",
             "methods_dropped", "verdict"]  # fmt: skip
    blocks.append(verdict_table_block(drop_blank(found[shown], ("variant", "methods_dropped"))))
    if not tested.empty:
        scopes = table[table["scope"] != "verdict"].drop(columns=["verdict", "reason", "best_method"])
        blocks += [
            figures_block(drawn.get("accuracy", [])),
            table_block(drop_blank(scopes, ("variant", "methods_dropped")), "Per scope"),
        ]
    return Section("Reliability of the measures", blocks)


def _metric_labels(rows: pd.DataFrame) -> str:
    """``road [lerf], iou``: the metric × variant of each row."""
    return ", ".join(_metric_label(m, v) for m, v in rows[["metric", "variant"]].itertuples(index=False))


def _metric_label(metric: str, variant: str) -> str:
    """``road [lerf]`` or ``iou``."""
    return f"{metric} [{variant}]" if variant else str(metric)


def _run_section(
    tables: Mapping[str, pd.DataFrame], results: Results, options: AnalysisOptions
) -> Section:
    """What was analysed, with which parameters and versions."""
    scores = tables["_scores"]
    shown = [(runs_table(scores, results.predictions), "Results folders"),
             (tables["model_info"], "Models")]
    blocks = [table_block(frame, caption) for frame, caption in shown if not frame.empty]
    blocks.extend(_commands_blocks([r for r in results.runs if r.get("command") != "warning"]))
    if not scores.empty:
        blocks.extend([table_block(parameters_table(scores, "method"), "Method parameters"),
                       table_block(parameters_table(scores, "metric"), "Metric parameters")])
    return Section("Run parameters and versions", [
        *blocks,
        kv_table(_option_values(options, results), "Analysis options"),
        kv_table(versions(), "Versions"),
    ])  # fmt: skip


def _commands_blocks(records: Sequence[Mapping[str, object]]) -> list[str]:
    """One name/value table per ``runs.jsonl`` record (long JSON values wrap inside their cell)."""
    if not records:
        return [paragraph("No runs.jsonl: the commands that wrote these results are not recorded.")]
    table = commands_table(list(records))
    blocks = []
    for k, row in enumerate(table.to_dict("records"), start=1):
        values = {
            name: value
            for name, value in row.items()
            if not (isinstance(value, float) and pd.isna(value))
        }
        title = f"Command {k} (runs.jsonl): {values.get('command', '')}".rstrip(": ")
        blocks.append(kv_table(values, title))
    return blocks


def _option_values(options: AnalysisOptions, results: Results | None = None) -> dict[str, object]:
    """Options as displayable values (the gallery and image folders as used)."""
    images, annotations = gallery_sources(results, options) if results is not None else ([], [])
    count = gallery_count(results, options) if results is not None else options.gallery
    gallery_text = f"{count} images" + (" (default: image folder known)" if options.gallery is None
                                        and count else "")  # fmt: skip
    return {
        "by": ",".join(options.by),
        "high_confidence": options.high_confidence,
        "accuracy": ", ".join(f"{k}={v:g}" for k, v in sorted(options.accuracy.items()))
        or "(from results)",
        "architecture": ", ".join(f"{k}={v}" for k, v in sorted(options.architecture.items()))
        or "(from results)",
        "min_pair_share": options.min_pair_share,
        "min_w": options.min_w,
        "gallery": gallery_text,
        "images": ", ".join(str(p) for p in images) or "(none known)",
        "annotations": ", ".join(str(p) for p in annotations) or "(none recorded)",
        "bootstrap": f"{options.bootstrap.resamples} resamples over images, "
                     f"{options.bootstrap.level:.0%} percentile interval, seed {options.bootstrap.seed}",
    }
