"""The tables of an analysis: scores with model ids and bands (:func:`prepare`), every CSV table
keyed by its file stem (:func:`compute_tables`), the notes shown to the reader
(:func:`analysis_notes`) and the CSV files (:func:`write_tables`).

Tables whose name starts with ``_`` (``_scores``: the prepared scores) are used by the plots and the
report but never written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from .augmentation import SSIM_METRIC, ssim_groups, ssim_per_augmentation
from .cost import cost_by_metric, cost_table
from .curves import mean_curves
from .directions import metric_direction
from .loading import Results
from .modelinfo import add_model_id, model_id_map, model_table
from .options import AnalysisOptions, gallery_sources
from .ranking import range_text, rank_methods_table
from .reliability import reliability_test
from .roar import roar_summary
from .runinfo import independence_notes
from .settings import base_name, label_settings
from .summary import add_band, add_confidence_columns, summarise
from .undefined import undefined_lines, undefined_table


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
    models = add_confidence_columns(models, predictions, options.high_confidence)
    scores = add_band(scores, predictions, options.high_confidence)
    scores["architecture"] = scores["model_id"].map(
        dict(zip(models["model_id"], models["architecture"], strict=True))
    )
    return scores, models


def with_settings(results: Results) -> tuple[Results, list[str]]:
    """``results`` with methods and metrics labelled by parameter set (never pooled), and the notes
    saying which were split (:func:`tfxai.analysis.settings.label_settings`)."""
    scores, (curves,), notes = label_settings(results.scores, results.curves)
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
        "summary": summarise(scores, by, ci),
        "summary_by_band": summarise(scores, band_by, ci),
    }
    tables["ranking"] = rank_methods_table(tables["summary"], scores, by)
    tables["undefined"] = undefined_table(scores)
    tables.update({
        "cost": cost_table(scores),
        "cost_by_metric": cost_by_metric(scores),
        "model_info": models,
        "reliability": reliability_test(scores, models, options.min_pair_share, options.min_w),
    })  # fmt: skip
    if (scores["metric"].map(base_name) == SSIM_METRIC).any():
        tables["ssim_augmentation_groups"] = ssim_groups(scores, ci=ci)
        tables["ssim_augmentation_variants"] = ssim_per_augmentation(scores, ci=ci)
    if results.roar is not None:
        tables["roar_summary"] = roar_summary(results.roar)
    if results.curves is not None:
        tables["curves_summary"] = mean_curves(add_model_id(results.curves, _model_ids(results)))
    tables["_scores"] = scores
    return tables, analysis_notes(results, scores, models, options, tables, setting_notes)


def analysis_notes(
    results: Results,
    scores: pd.DataFrame,
    models: pd.DataFrame,
    options: AnalysisOptions,
    tables: Mapping[str, pd.DataFrame] | None = None,
    setting_notes: Sequence[str] = (),
) -> list[str]:
    """Assumptions and gaps worth telling the reader: input-independent methods and undefined values
    first (loud), values outside a metric's range, split parameter sets, unknown directions and
    accuracies, and a gallery that cannot be drawn."""
    found = list(independence_notes(results.runs))
    if results.scores.empty:
        found.append(_no_scores_note(results))
    found.extend(f"Undefined values: {line}" for line in undefined_lines(scores))
    found.extend(_range_notes((tables or {}).get("summary")))
    found.extend(setting_notes)
    found.extend(_model_notes(scores, models))
    found.extend(_gallery_notes(results, options))
    return list(dict.fromkeys(found))


def _no_scores_note(results: Results) -> str:
    """What the report shows when there are no score rows."""
    found = [name for name, frame in (("roar.csv", results.roar), ("models.csv", results.models),
                                      ("study.csv", results.study))
             if frame is not None and not frame.empty]  # fmt: skip
    return "No score rows (scores.csv missing or empty)" + (
        f": the report shows {', '.join(found)}." if found else ": only the model table is written."
    )


def _range_notes(table: pd.DataFrame | None) -> list[str]:
    """One note per metric with values outside its range (from the summary table)."""
    if table is None or "out_of_range" not in table.columns:
        return []
    found = []
    for metric, frame in table.groupby("metric", sort=True):
        outside = int(frame["out_of_range"].sum())
        if outside:
            found.append(
                f"{metric}: {outside} value(s) lie outside its range "
                f"{range_text(metric)}; nothing was clipped: check the metric's inputs."
            )
    return found


def _model_notes(scores: pd.DataFrame, models: pd.DataFrame) -> list[str]:
    """Unknown metric directions, unknown accuracies and a missing architecture."""
    found = []
    for metric, variant in scores[["metric", "variant"]].drop_duplicates().itertuples(index=False):
        if metric_direction(metric, variant, scores).assumed:
            found.append(f"Metric {metric!r} is unknown: higher is assumed to be better.")
    unknown = models[models["accuracy"].isna()]["model_id"].tolist()
    if unknown:
        found.append(f"No accuracy for model(s) {', '.join(unknown)}: give --accuracy MODEL=VALUE.")
    if len(models) > 1 and set(models["architecture"]) == {"all"}:
        found.append(
            "No architecture given: all models are treated as one architecture (--architecture)."
        )
    return found


def _gallery_notes(results: Results, options: AnalysisOptions) -> list[str]:
    """A gallery asked for without a store, or a default gallery without a known image folder."""
    if (options.gallery or options.gallery_images) and not results.store_paths:
        return ["Gallery requested but no attribution store (attributions/ or *.h5) was found."]
    if (
        options.gallery is None
        and not options.gallery_images
        and results.store_paths
        and not gallery_sources(results, options)[0]
    ):
        return [
            "No gallery: the image folder is not known (runs.jsonl names none that exists here); "
            "give --images DIR."
        ]
    return []


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
