"""The Analyser: results folders in; CSV tables, PNG plots and ``report.html`` out.

:func:`analyse` is what ``tfxai analyse`` calls. It writes into ``out``:

- ``summary.csv``: mean, ``std_sample`` (sample std, ddof=1), ``count`` (defined values) and ``nan_count``
  per metric × variant × the ``by`` columns;
- ``summary_by_band.csv``: the same split by confidence band (high = top-1 p > threshold);
- ``ssim_augmentation_groups.csv`` / ``ssim_augmentation_variants.csv``: rotations vs filters vs all, and
  per augmentation (only when that metric is present);
- ``cost.csv`` (seconds per attribution per method × model) and ``cost_by_metric.csv``;
- ``model_info.csv``: model ids, architectures, accuracies and where they came from;
- ``reliability.csv``: the reliability test (see :mod:`tfxai.analysis.reliability`);
- ``roar_summary.csv`` when a ``roar.csv`` was found, ``curves_summary.csv`` when a ``curves.csv`` was;
- ``plots/*.png`` and ``report.html``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import (
    augmentation,
    cost,
    curves,
    gallery,
    plots,
    reliability,
    report,
    roar,
    runinfo,
    summary,
)
from .directions import metric_direction
from .loading import Results, load_results
from .modelinfo import add_model_id, model_id_map, model_table


@dataclass
class AnalysisOptions:
    """Options of one analysis (the ``tfxai analyse`` options)."""

    by: Sequence[str] = ("model_id", "method")
    high_confidence: float = summary.DEFAULT_HIGH_CONFIDENCE
    accuracy: Mapping[str, float] = field(default_factory=dict)
    architecture: Mapping[str, str] = field(default_factory=dict)
    min_pair_share: float = reliability.DEFAULT_MIN_PAIR_SHARE
    min_w: float = reliability.DEFAULT_MIN_W
    gallery: int = 0
    gallery_images: Sequence[str] = ()
    images: Path | None = None
    plots: bool = True
    report: bool = True


@dataclass
class Analysis:
    """What :func:`analyse` computed and wrote."""

    tables: dict[str, pd.DataFrame]
    files: list[Path]
    notes: list[str]


def _model_ids(results: Results) -> dict[tuple[str, str], str]:
    """(model, weights) → model_id over every table that names models."""
    return model_id_map(results.scores, results.predictions, results.curves)


def prepare(results: Results, options: AnalysisOptions) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores with ``model_id``, ``band`` and ``architecture`` columns, and the model table."""
    ids = _model_ids(results)
    scores = add_model_id(results.scores, ids)
    predictions = add_model_id(results.predictions, ids)
    models = model_table(
        ids,
        predictions,
        results.models,
        options.accuracy,
        options.architecture,
        extra_frames=(scores,),
    )
    models = summary.add_confidence_columns(models, predictions, options.high_confidence)
    scores = summary.add_band(scores, predictions, options.high_confidence)
    scores["architecture"] = scores["model_id"].map(
        dict(zip(models["model_id"], models["architecture"], strict=True))
    )
    return scores, models


def compute_tables(
    results: Results, options: AnalysisOptions
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Every table of the analysis, keyed by output file stem, and the notes to show."""
    scores, models = prepare(results, options)
    by = list(options.by)
    band_by = list(dict.fromkeys([*by, "band"]))
    tables: dict[str, pd.DataFrame] = {
        "summary": summary.summarise(scores, by),
        "summary_by_band": summary.summarise(scores, band_by),
        "cost": cost.cost_table(scores),
        "cost_by_metric": cost.cost_by_metric(scores),
        "model_info": models,
        "reliability": reliability.reliability_test(
            scores, models, options.min_pair_share, options.min_w
        ),
    }
    if (scores["metric"] == augmentation.SSIM_METRIC).any():
        tables["ssim_augmentation_groups"] = augmentation.ssim_groups(scores)
        tables["ssim_augmentation_variants"] = augmentation.ssim_per_augmentation(scores)
    if results.roar is not None:
        tables["roar_summary"] = roar.roar_summary(results.roar)
    if results.curves is not None:
        tables["curves_summary"] = curves.mean_curves(
            add_model_id(results.curves, _model_ids(results))
        )
    tables["_scores"] = scores
    return tables, _notes(results, scores, models, options)


def _notes(
    results: Results, scores: pd.DataFrame, models: pd.DataFrame, options: AnalysisOptions
) -> list[str]:
    """Assumptions and gaps worth telling the reader."""
    notes = []
    if results.scores.empty:
        notes.append(
            "No score rows (scores.csv missing or empty): only the model table is written."
        )
    for metric, variant in scores[["metric", "variant"]].drop_duplicates().itertuples(index=False):
        direction = metric_direction(metric, variant, scores)
        if direction.assumed:
            notes.append(f"Metric {metric!r} is unknown: higher is assumed to be better.")
    unknown = models[models["accuracy"].isna()]["model_id"].tolist()
    if unknown:
        notes.append(f"No accuracy for model(s) {', '.join(unknown)}: give --accuracy MODEL=VALUE.")
    if len(models) > 1 and set(models["architecture"]) == {"all"}:
        notes.append(
            "No architecture given: all models are treated as one architecture (--architecture)."
        )
    if options.gallery and not results.store_paths:
        notes.append(
            "Gallery requested but no attribution store (attributions/ or *.h5) was found."
        )
    return list(dict.fromkeys(notes))


def write_tables(tables: Mapping[str, pd.DataFrame], out: Path) -> list[Path]:
    """Write every public table as ``<name>.csv`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in tables.items():
        if name.startswith("_"):
            continue
        path = out / f"{name}.csv"
        frame.to_csv(path, index=False)
        written.append(path)
    return written


def draw_plots(
    tables: Mapping[str, pd.DataFrame], results: Results, options: AnalysisOptions, out: Path
) -> dict[str, list[tuple[Path, str]]]:
    """Draw every plot into ``out/plots``; return (path, caption) lists keyed by report section."""
    scores, models = tables["_scores"], tables["model_info"]
    folder = out / "plots"
    sections = ("bars", "accuracy", "curves", "roar", "gallery")
    drawn: dict[str, list[tuple[Path, str]]] = {name: [] for name in sections}
    per_model = summary.summarise(scores, ["model_id", "method"])
    for metric in sorted(per_model["metric"].unique()):
        direction = _directions(scores, metric)
        path = plots.save(
            plots.bar_chart(per_model, metric, direction), folder / f"bar_{plots.slug(metric)}.png"
        )
        drawn["bars"].append((path, f"{metric}: mean ± sample std per method and model"))
    known = models.dropna(subset=["accuracy"])
    if len(known) >= 2:
        for metric in sorted(scores["metric"].unique()):
            panels = {}
            for variant in sorted(scores.loc[scores["metric"] == metric, "variant"].unique()):
                means = reliability.method_means(scores, metric, variant)
                means = means.loc[[m for m in means.index if m in set(known["model_id"])]]
                if len(means) >= 2:
                    panels[variant] = means
            if not panels:
                continue
            figure = plots.accuracy_lines(panels, known, metric, _directions(scores, metric))
            path = plots.save(figure, folder / f"accuracy_{plots.slug(metric)}.png")
            drawn["accuracy"].append((path, f"{metric}: mean per method vs model accuracy"))
    mean_curves = tables.get("curves_summary")
    for metric in [] if mean_curves is None else sorted(mean_curves["metric"].unique()):
        path = plots.save(
            plots.curves_plot(mean_curves, metric), folder / f"curves_{plots.slug(metric)}.png"
        )
        drawn["curves"].append((path, f"{metric}: mean curve per method (± sample std)"))
    if "roar_summary" in tables and not tables["roar_summary"].empty:
        drawn["roar"].append(
            (plots.save(plots.roar_plot(tables["roar_summary"]), folder / "roar.png"), "ROAR")
        )
    if options.gallery > 0 or options.gallery_images:
        drawn["gallery"] = _draw_gallery(results, options, folder)
    return drawn


def _directions(scores: pd.DataFrame, metric: str) -> dict[str, str]:
    """Variant → direction of ``metric`` ("higher"/"lower", "(assumed)" when unknown)."""
    found = {}
    for variant in sorted(scores.loc[scores["metric"] == metric, "variant"].unique()):
        direction = metric_direction(metric, variant, scores)
        found[variant] = direction.direction + (" (assumed)" if direction.assumed else "")
    return found


def _draw_gallery(
    results: Results, options: AnalysisOptions, folder: Path
) -> list[tuple[Path, str]]:
    """One gallery PNG per model found in the attribution stores."""
    if not results.store_paths:
        return []
    modes = {str(r.get("resize")) for r in results.runs if r.get("resize")}
    resize = "crop" if modes == {"crop"} else "squash"
    items, images = gallery.collect(
        results.store_paths,
        options.gallery,
        options.images,
        list(options.gallery_images) or None,
        resize,
    )
    drawn = []
    for model in sorted({i.model_id or i.model for i in items}):
        figure = plots.gallery_figure(items, images, model)
        drawn.append(
            (plots.save(figure, folder / f"gallery_{plots.slug(model)}.png"), f"gallery: {model}")
        )
    return drawn


def build_report(
    tables: Mapping[str, pd.DataFrame],
    drawn: Mapping[str, list[tuple[Path, str]]],
    results: Results,
    options: AnalysisOptions,
    notes: Sequence[str],
    out: Path,
) -> Path:
    """Write ``out/report.html``: results first, then run parameters and versions."""
    sections = [
        _summary_section(tables, drawn),
        _reliability_section(tables, drawn, options),
        report.Section(
            f"Confidence bands (high: top-1 p > {options.high_confidence:g})",
            [report.table_block(summary.compact(tables["summary_by_band"]), "summary_by_band.csv")],
        ),
    ]
    if "ssim_augmentation_groups" in tables:
        sections.append(report.Section("Augmentation robustness (SSIM)", [
            report.table_block(summary.compact(tables["ssim_augmentation_groups"]), "Rotations vs filters"),
            report.table_block(summary.compact(tables["ssim_augmentation_variants"]), "Per augmentation"),
        ]))  # fmt: skip
    sections.append(report.Section("Cost", [
        report.table_block(tables["cost"], "Seconds per attribution (method × model)"),
    ]))  # fmt: skip
    if drawn.get("curves"):
        sections.append(report.Section("Curves", [report.figures_block(drawn["curves"])]))
    if "roar_summary" in tables:
        sections.append(report.Section("ROAR", [
            report.figures_block(drawn.get("roar", [])),
            report.table_block(tables["roar_summary"], "roar_summary.csv"),
        ]))  # fmt: skip
    if drawn.get("gallery"):
        sections.append(report.Section("Gallery", [report.figures_block(drawn["gallery"])]))
    sections.append(_run_section(tables, results, options))
    scores = tables["_scores"]
    sections.append(
        report.Section("Undefined values", [report.table_block(runinfo.notes_table(scores))])
    )
    return report.write(out / "report.html", "tfxai analysis report", sections, notes)


def _summary_section(
    tables: Mapping[str, pd.DataFrame], drawn: Mapping[str, list[tuple[Path, str]]]
) -> report.Section:
    """Bar charts and the summary table (cells: mean ± sample std (n))."""
    return report.Section("Summary", [
        report.paragraph("Cells read mean ± std_sample (count). std_sample is the sample standard "
                         "deviation (ddof=1); count is the number of defined values; summary.csv also "
                         "gives nan_count, the number of undefined ones."),
        report.figures_block(drawn.get("bars", [])),
        report.table_block(summary.compact(tables["summary"]), "summary.csv"),
    ])  # fmt: skip


def _reliability_section(
    tables: Mapping[str, pd.DataFrame],
    drawn: Mapping[str, list[tuple[Path, str]]],
    options: AnalysisOptions,
) -> report.Section:
    """Verdicts, metric-vs-accuracy plots and the per-scope numbers."""
    table = tables["reliability"]
    return report.Section("Reliability of the measures", [
        report.paragraph(
            f"A set of models is consistent when pair share ≥ {options.min_pair_share:g} and "
            f"Kendall's W ≥ {options.min_w:g}. reliable = consistent within every architecture and across "
            "architectures; order-preserving = consistent within every architecture only; unreliable = "
            "inconsistent within an architecture."
        ),
        report.verdict_table_block(reliability.verdicts(table).drop(columns="scope")),
        report.figures_block(drawn.get("accuracy", [])),
        report.table_block(table[table["scope"] != "verdict"].drop(columns="verdict"), "Per scope"),
    ])  # fmt: skip


def _run_section(
    tables: Mapping[str, pd.DataFrame], results: Results, options: AnalysisOptions
) -> report.Section:
    """What was analysed, with which parameters and versions."""
    scores = tables["_scores"]
    return report.Section("Run parameters and versions", [
        report.table_block(runinfo.runs_table(scores, results.predictions), "Results folders"),
        report.table_block(tables["model_info"], "Models"),
        *_commands_blocks(results.runs),
        report.table_block(runinfo.parameters_table(scores, "method"), "Method parameters"),
        report.table_block(runinfo.parameters_table(scores, "metric"), "Metric parameters"),
        report.kv_table(_option_values(options), "Analysis options"),
        report.kv_table(report.versions(), "Versions"),
    ])  # fmt: skip


def _commands_blocks(records: Sequence[Mapping[str, object]]) -> list[str]:
    """One name/value table per ``runs.jsonl`` record (long JSON values wrap inside their cell)."""
    if not records:
        return [report.table_block(pd.DataFrame(), "Commands run (runs.jsonl)")]
    table = runinfo.commands_table(list(records))
    blocks = []
    for k, row in enumerate(table.to_dict("records"), start=1):
        values = {
            name: value
            for name, value in row.items()
            if not (isinstance(value, float) and pd.isna(value))
        }
        title = f"Command {k} (runs.jsonl): {values.get('command', '')}".rstrip(": ")
        blocks.append(report.kv_table(values, title))
    return blocks


def _option_values(options: AnalysisOptions) -> dict[str, object]:
    """Options as displayable values."""
    return {
        "by": ",".join(options.by),
        "high_confidence": options.high_confidence,
        "accuracy": ", ".join(f"{k}={v:g}" for k, v in sorted(options.accuracy.items()))
        or "(from results)",
        "architecture": ", ".join(f"{k}={v}" for k, v in sorted(options.architecture.items()))
        or "(from results)",
        "min_pair_share": options.min_pair_share,
        "min_w": options.min_w,
        "gallery": options.gallery,
        "images": options.images or "",
    }


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
    drawn: dict[str, list[tuple[Path, str]]] = {}
    if options.plots:
        drawn = draw_plots(tables, results, options, out)
        files.extend(p for group in drawn.values() for p, _ in group)
    if options.report:
        files.append(build_report(tables, drawn, results, options, notes, out))
    return Analysis({k: v for k, v in tables.items() if not k.startswith("_")}, files, notes)
