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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from . import (
    augmentation,
    cost,
    curves,
    gallery,
    plots,
    ranking,
    reliability,
    report,
    roar,
    runinfo,
    settings,
    study,
    summary,
    undefined,
)
from .directions import metric_direction
from .loading import Results, load_results
from .modelinfo import add_model_id, model_id_map, model_table

#: Images in the gallery when it is drawn by default (image folder known from runs.jsonl).
DEFAULT_GALLERY = 6


@dataclass
class AnalysisOptions:
    """Options of one analysis (the ``tfxai analyse`` options)."""

    by: Sequence[str] = ("model_id", "method")
    high_confidence: float = summary.DEFAULT_HIGH_CONFIDENCE
    accuracy: Mapping[str, float] = field(default_factory=dict)
    architecture: Mapping[str, str] = field(default_factory=dict)
    min_pair_share: float = reliability.DEFAULT_MIN_PAIR_SHARE
    min_w: float = reliability.DEFAULT_MIN_W
    #: images in the gallery; None = :data:`DEFAULT_GALLERY` when an image folder is known (``images``
    #: or runs.jsonl) and an attribution store exists, else none; 0 = no gallery
    gallery: int | None = None
    gallery_images: Sequence[str] = ()
    images: Path | None = None
    plots: bool = True
    report: bool = True
    #: the bootstrap of the confidence intervals (resamples, level, seed)
    bootstrap: summary.Bootstrap = field(default_factory=summary.Bootstrap)


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


def with_settings(results: Results) -> tuple[Results, list[str]]:
    """``results`` with methods and metrics labelled by parameter set (never pooled), and the notes
    saying which were split (:func:`tfxai.analysis.settings.label_settings`)."""
    scores, (curves,), notes = settings.label_settings(results.scores, results.curves)
    return replace(results, scores=scores, curves=curves), notes


def compute_tables(
    results: Results, options: AnalysisOptions
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Every table of the analysis, keyed by output file stem, and the notes to show."""
    results, setting_notes = with_settings(results)
    scores, models = prepare(results, options)
    by = list(options.by)
    band_by = list(dict.fromkeys([*by, "band"]))
    ci = options.bootstrap
    tables: dict[str, pd.DataFrame] = {
        "summary": summary.summarise(scores, by, ci),
        "summary_by_band": summary.summarise(scores, band_by, ci),
    }
    tables["ranking"] = ranking.rank_methods_table(tables["summary"], scores, by)
    tables["undefined"] = undefined.undefined_table(scores)
    tables.update({
        "cost": cost.cost_table(scores),
        "cost_by_metric": cost.cost_by_metric(scores),
        "model_info": models,
        "reliability": reliability.reliability_test(
            scores, models, options.min_pair_share, options.min_w
        ),
    })  # fmt: skip
    if (scores["metric"].map(settings.base_name) == augmentation.SSIM_METRIC).any():
        tables["ssim_augmentation_groups"] = augmentation.ssim_groups(scores, ci=ci)
        tables["ssim_augmentation_variants"] = augmentation.ssim_per_augmentation(scores, ci=ci)
    if results.roar is not None:
        tables["roar_summary"] = roar.roar_summary(results.roar)
    if results.curves is not None:
        tables["curves_summary"] = curves.mean_curves(
            add_model_id(results.curves, _model_ids(results))
        )
    tables["_scores"] = scores
    return tables, _notes(results, scores, models, options, tables, setting_notes)


def _notes(
    results: Results,
    scores: pd.DataFrame,
    models: pd.DataFrame,
    options: AnalysisOptions,
    tables: Mapping[str, pd.DataFrame] | None = None,
    setting_notes: Sequence[str] = (),
) -> list[str]:
    """Assumptions and gaps worth telling the reader: input-independent methods and undefined values
    first (loud), values outside a metric's range, split parameter sets, unknown directions and
    accuracies."""
    notes = list(runinfo.independence_notes(results.runs))
    if results.scores.empty:
        found = [name for name, frame in (("roar.csv", results.roar), ("models.csv", results.models),
                                          ("study.csv", results.study))
                 if frame is not None and not frame.empty]
        notes.append(
            "No score rows (scores.csv missing or empty)"
            + (f": the report shows {', '.join(found)}." if found else
               ": only the model table is written.")
        )
    notes.extend(f"Undefined values: {line}" for line in undefined.undefined_lines(scores))
    table = (tables or {}).get("summary")
    if table is not None and "out_of_range" in table.columns:
        for metric, frame in table.groupby("metric", sort=True):
            outside = int(frame["out_of_range"].sum())
            if outside:
                notes.append(
                    f"{metric}: {outside} value(s) lie outside its range "
                    f"{ranking.range_text(metric)}; nothing was clipped: check the metric's inputs."
                )
    notes.extend(setting_notes)
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
    if (options.gallery or options.gallery_images) and not results.store_paths:
        notes.append(
            "Gallery requested but no attribution store (attributions/ or *.h5) was found."
        )
    if (
        options.gallery is None
        and not options.gallery_images
        and results.store_paths
        and not gallery_sources(results, options)[0]
    ):
        notes.append(
            "No gallery: the image folder is not known (runs.jsonl names none that exists here); "
            "give --images DIR."
        )
    return list(dict.fromkeys(notes))


def _existing(value: object, run: object) -> Path | None:
    """``value`` as a folder that exists: as given, or relative to the results folder ``run``; a
    list file of images (``--images list.txt``) gives the folder that holds all its images."""
    if not isinstance(value, str) or not value or value == "None":
        return None
    path = Path(value)
    for candidate in (path, Path(str(run)) / path if run and not path.is_absolute() else None):
        if candidate is not None and candidate.is_dir():
            return candidate
        if candidate is not None and candidate.is_file() and candidate.suffix.lower() == ".txt":
            return _list_folder(candidate)
    return None


def _list_folder(listing: Path) -> Path | None:
    """The one folder holding every image of a list file, or None."""
    try:
        lines = [line.strip() for line in listing.read_text().splitlines()]
    except (OSError, UnicodeDecodeError):
        return None
    parents = {(listing.parent / line).parent for line in lines if line and not line.startswith("#")}
    if len(parents) == 1:
        folder = parents.pop()
        return folder if folder.is_dir() else None
    return None


def gallery_sources(results: Results, options: AnalysisOptions) -> tuple[list[Path], list[Path]]:
    """Image folders (``--images`` first, then those of runs.jsonl) and annotation folders (runs.jsonl),
    keeping only folders that exist."""
    images: list[Path] = [Path(options.images)] if options.images else []
    annotations: list[Path] = []
    for record in results.runs:
        for key, bucket in (("images", images), ("annotations", annotations)):
            found = _existing(record.get(key), record.get("run"))
            if found is not None and found not in bucket:
                bucket.append(found)
    return images, annotations


def gallery_count(results: Results, options: AnalysisOptions) -> int:
    """How many images the gallery shows (see :attr:`AnalysisOptions.gallery`)."""
    if options.gallery is not None:
        return int(options.gallery)
    if options.gallery_images:
        return len(options.gallery_images)
    if results.store_paths and gallery_sources(results, options)[0]:
        return DEFAULT_GALLERY
    return 0


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
    per_model = summary.summarise(scores, ["model_id", "method"], options.bootstrap)
    level = f"{options.bootstrap.level:.0%}"
    for metric in sorted(per_model["metric"].unique()):
        direction = _directions(scores, metric)
        not_comparable = {}
        for variant in sorted(scores.loc[scores["metric"] == metric, "variant"].unique()):
            rows = scores[(scores["metric"] == metric) & (scores["variant"] == variant)]
            ok, reason = summary.group_comparability(rows, metric, variant)
            if not ok:
                not_comparable[variant] = reason
        figure = plots.bar_chart(per_model, metric, direction, not_comparable,
                                 options.bootstrap.level)
        path = plots.save(figure, folder / f"bar_{plots.slug(metric)}.png")
        drawn["bars"].append((path, f"{metric}: mean per method and model; error bars: {level} "
                                    "bootstrap interval over images"))  # fmt: skip
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
    if gallery_count(results, options) > 0 or options.gallery_images:
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
    images, annotations = gallery_sources(results, options)
    data = gallery.collect_all(
        results.store_paths,
        gallery_count(results, options),
        images,
        list(options.gallery_images) or None,
        resize,
        annotations,
        results.predictions,
        results.scores,
    )
    drawn = []
    for model in sorted({i.model_id or i.model for i in data.items}):
        figure = plots.gallery_figure(
            data.items, data.images, model, boxes=data.boxes, captions=data.captions
        )
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
        *study.study_sections(results.study, results.studies),
        _summary_section(tables, drawn, options),
        _undefined_section(tables),
        _reliability_section(tables, drawn, options),
    ]
    if drawn.get("gallery"):
        sections.append(report.Section("Gallery", [report.figures_block(drawn["gallery"])]))
    sections.append(report.Section(
        f"Confidence bands (high: top-1 p > {options.high_confidence:g})",
        [report.table_block(report.drop_blank(summary.compact(tables["summary_by_band"])),
                            "summary_by_band.csv")],
    ))  # fmt: skip
    if "ssim_augmentation_groups" in tables:
        sections.append(report.Section("Augmentation robustness (SSIM)", [
            report.table_block(summary.compact(tables["ssim_augmentation_groups"]), "Rotations vs filters"),
            report.table_block(summary.compact(tables["ssim_augmentation_variants"]), "Per augmentation"),
        ]))  # fmt: skip
    sections.append(_cost_section(tables))
    if drawn.get("curves"):
        sections.append(report.Section("Curves", [report.figures_block(drawn["curves"])]))
    if "roar_summary" in tables:
        sections.append(report.Section("ROAR", [
            report.figures_block(drawn.get("roar", [])),
            report.table_block(tables["roar_summary"], "roar_summary.csv"),
        ]))  # fmt: skip
    sections.append(_run_section(tables, results, options))
    return report.write(out / "report.html", "tfxai analysis report", sections, notes)


def _summary_section(
    tables: Mapping[str, pd.DataFrame],
    drawn: Mapping[str, list[tuple[Path, str]]],
    options: AnalysisOptions,
) -> report.Section:
    """Which metrics are comparable, the bar charts and the ranked summary table."""
    boot = options.bootstrap
    view, strong = ranking.ranked_view(tables["summary"], tables["ranking"])
    line = ranking.comparability_line(tables["_scores"])
    return report.Section("Summary", [
        report.meaning_block(line) if line else "",
        report.paragraph(
            f"Cells read mean [{boot.level:.0%} CI] (count): the interval is a percentile bootstrap "
            f"over images ({boot.resamples} resamples, seed {boot.seed}); count is the number of "
            "defined values (undefined ones are counted in the next section). 'best' names the best "
            "method by the metric's direction, only for metrics comparable across methods; a method "
            "whose mean is equal to the best's, or lies inside its interval (or the best's inside "
            "its own), ties with it ('tie: a, b'). Green cells: the best or the tied methods. With "
            "few images the intervals are wide and, being percentile intervals, somewhat optimistic."
        ),
        report.ranked_table_block(report.drop_blank(view), strong,
                                  "summary.csv (the best column: ranking.csv)"),
        report.figures_block(drawn.get("bars", [])),
    ])  # fmt: skip


def _undefined_section(tables: Mapping[str, pd.DataFrame]) -> report.Section:
    """Shares of undefined values per metric × variant with their reasons, and per method."""
    scores = tables["_scores"]
    lines = undefined.undefined_lines(scores)
    table = tables["undefined"].copy()
    if not table.empty:
        table["share"] = [f"{v:.0%}" for v in table["share"]]
    return report.Section("Undefined values", [
        report.loud_block(lines) if lines else report.paragraph(
            "Every value is defined: no metric returned NaN."),
        report.table_block(report.drop_blank(table),
                           "Share of undefined values per metric and variant (undefined.csv)"),
        *([report.table_block(runinfo.notes_table(scores), "Undefined values per method and note")]
          if lines else []),
    ])  # fmt: skip


def _cost_section(tables: Mapping[str, pd.DataFrame]) -> report.Section:
    """Seconds per attribution, saying whether they were timed per image or are batch means."""
    table = tables["cost"]
    blocks = []
    if "timing" in table.columns and table["timing"].astype(str).str.startswith(cost.BATCH_MEAN).any():
        blocks.append(report.paragraph(
            "Rows marked 'batch mean': the seconds of those attributions are the time of a whole "
            "batch divided by its size, repeated for every image of the batch, so their std is the "
            "spread between batches, not between images."
        ))  # fmt: skip
    blocks.append(report.table_block(table, "Seconds per attribution (method × model)"))
    return report.Section("Cost", blocks)


def _reliability_section(
    tables: Mapping[str, pd.DataFrame],
    drawn: Mapping[str, list[tuple[Path, str]]],
    options: AnalysisOptions,
) -> report.Section:
    """What the verdicts mean (or what is missing), the verdicts, metric-vs-accuracy plots and the
    per-scope numbers."""
    table = tables["reliability"]
    found = reliability.verdicts(table)
    blocks = [
        report.paragraph(
            "Is a measure reliable? Within one architecture, the order of the methods by the measure "
            "should be the same in every model, whatever its accuracy (Erdem 2021). A set of models is "
            f"consistent when the share of method pairs keeping their order is ≥ {options.min_pair_share:g} "
            f"and Kendall's W ≥ {options.min_w:g}. The test compares means and carries no significance "
            "test: with few images an order can be noise (the Summary's intervals show which methods "
            "are distinguishable at all)."
        ),
    ]
    tested = found[found["verdict"] != reliability.INSUFFICIENT]
    for verdict in dict.fromkeys(tested["verdict"]):
        names = ", ".join(_metric_label(m, v) for m, v in
                          tested.loc[tested["verdict"] == verdict, ["metric", "variant"]].itertuples(index=False))
        blocks.append(report.meaning_block(
            f"{verdict} ({names}): {reliability.VERDICT_MEANING[verdict]}."))  # fmt: skip
    missing = found[found["verdict"] == reliability.INSUFFICIENT]
    for reason in dict.fromkeys(missing["reason"]):
        names = ", ".join(_metric_label(m, v) for m, v in
                          missing.loc[missing["reason"] == reason, ["metric", "variant"]].itertuples(index=False))
        blocks.append(report.notes_block([f"Not tested ({names}): {reason}."]))
    # the reason is in the note above; which method is best is the summary's job (with intervals)
    shown = ["metric", "variant", "n_models", "n_methods", "pair_share", "kendalls_w", "direction",
             "methods_dropped", "verdict"]  # fmt: skip
    blocks.append(report.verdict_table_block(report.drop_blank(found[shown], ("variant", "methods_dropped"))))
    if not tested.empty:
        scopes = table[table["scope"] != "verdict"].drop(columns=["verdict", "reason", "best_method"])
        blocks += [
            report.figures_block(drawn.get("accuracy", [])),
            report.table_block(report.drop_blank(scopes, ("variant", "methods_dropped")), "Per scope"),
        ]
    return report.Section("Reliability of the measures", blocks)


def _metric_label(metric: str, variant: str) -> str:
    """``road [lerf]`` or ``iou``."""
    return f"{metric} [{variant}]" if variant else str(metric)


def _run_section(
    tables: Mapping[str, pd.DataFrame], results: Results, options: AnalysisOptions
) -> report.Section:
    """What was analysed, with which parameters and versions."""
    scores = tables["_scores"]
    return report.Section("Run parameters and versions", [
        report.table_block(runinfo.runs_table(scores, results.predictions), "Results folders"),
        report.table_block(tables["model_info"], "Models"),
        *_commands_blocks([r for r in results.runs if r.get("command") != "warning"]),
        report.table_block(runinfo.parameters_table(scores, "method"), "Method parameters"),
        report.table_block(runinfo.parameters_table(scores, "metric"), "Metric parameters"),
        report.kv_table(_option_values(options, results), "Analysis options"),
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
