"""The PNG plots of an analysis, drawn into ``out/plots`` (:func:`draw_plots`): a bar chart per
metric, metric against model accuracy, mean curves, ROAR and one gallery per model. Each comes back
as (path, caption), grouped by the report section that shows it. How each plot looks is
:mod:`tfxai.analysis.plots`'s business.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from .directions import metric_direction
from .gallery import collect_all
from .loading import Results
from .options import AnalysisOptions, gallery_count, gallery_sources
from .plots import accuracy_lines, bar_chart, curves_plot, gallery_figure, roar_plot, save, slug
from .reliability import method_means
from .summary import group_comparability, summarise

#: (path, caption) of the plots of one report section
Drawn = list[tuple[Path, str]]


def draw_plots(
    tables: Mapping[str, pd.DataFrame], results: Results, options: AnalysisOptions, out: Path
) -> dict[str, Drawn]:
    """Draw every plot into ``out/plots``; return (path, caption) lists keyed by report section."""
    scores, models = tables["_scores"], tables["model_info"]
    folder = out / "plots"
    drawn: dict[str, Drawn] = {
        "bars": _bar_plots(scores, options, folder),
        "accuracy": _accuracy_plots(scores, models, folder),
        "curves": _curve_plots(tables.get("curves_summary"), folder),
        "roar": [],
        "gallery": [],
    }
    if "roar_summary" in tables and not tables["roar_summary"].empty:
        drawn["roar"].append(
            (save(roar_plot(tables["roar_summary"]), folder / "roar.png"), "ROAR")
        )
    if gallery_count(results, options) > 0 or options.gallery_images:
        drawn["gallery"] = _draw_gallery(results, options, folder)
    return drawn


def _variants(scores: pd.DataFrame, metric: str) -> list[str]:
    """The variants of ``metric``, sorted."""
    return sorted(scores.loc[scores["metric"] == metric, "variant"].unique())


def _directions(scores: pd.DataFrame, metric: str) -> dict[str, str]:
    """Variant → direction of ``metric`` ("higher"/"lower", "(assumed)" when unknown)."""
    found = {}
    for variant in _variants(scores, metric):
        direction = metric_direction(metric, variant, scores)
        found[variant] = direction.direction + (" (assumed)" if direction.assumed else "")
    return found


def _bar_plots(scores: pd.DataFrame, options: AnalysisOptions, folder: Path) -> Drawn:
    """One bar chart per metric: mean per method and model with its bootstrap interval."""
    per_model = summarise(scores, ["model_id", "method"], options.bootstrap)
    level = f"{options.bootstrap.level:.0%}"
    drawn = []
    for metric in sorted(per_model["metric"].unique()):
        direction = _directions(scores, metric)
        not_comparable = {}
        for variant in _variants(scores, metric):
            rows = scores[(scores["metric"] == metric) & (scores["variant"] == variant)]
            ok, reason = group_comparability(rows, metric, variant)
            if not ok:
                not_comparable[variant] = reason
        figure = bar_chart(per_model, metric, direction, not_comparable, options.bootstrap.level)
        path = save(figure, folder / f"bar_{slug(metric)}.png")
        drawn.append((path, f"{metric}: mean per method and model; error bars: {level} "
                            "bootstrap interval over images"))  # fmt: skip
    return drawn


def _accuracy_plots(scores: pd.DataFrame, models: pd.DataFrame, folder: Path) -> Drawn:
    """Per metric, the mean per method against model accuracy (two models of known accuracy)."""
    known = models.dropna(subset=["accuracy"])
    if len(known) < 2:
        return []
    drawn = []
    for metric in sorted(scores["metric"].unique()):
        panels = {}
        for variant in _variants(scores, metric):
            means = method_means(scores, metric, variant)
            means = means.loc[[m for m in means.index if m in set(known["model_id"])]]
            if len(means) >= 2:
                panels[variant] = means
        if not panels:
            continue
        figure = accuracy_lines(panels, known, metric, _directions(scores, metric))
        path = save(figure, folder / f"accuracy_{slug(metric)}.png")
        drawn.append((path, f"{metric}: mean per method vs model accuracy"))
    return drawn


def _curve_plots(mean_curves: pd.DataFrame | None, folder: Path) -> Drawn:
    """One plot of mean curves per curve metric (``curves_summary``)."""
    drawn = []
    for metric in [] if mean_curves is None else sorted(mean_curves["metric"].unique()):
        path = save(curves_plot(mean_curves, metric), folder / f"curves_{slug(metric)}.png")
        drawn.append((path, f"{metric}: mean curve per method (± sample std)"))
    return drawn


def _draw_gallery(results: Results, options: AnalysisOptions, folder: Path) -> Drawn:
    """One gallery PNG per model found in the attribution stores."""
    if not results.store_paths:
        return []
    modes = {str(r.get("resize")) for r in results.runs if r.get("resize")}
    resize = "crop" if modes == {"crop"} else "squash"
    images, annotations = gallery_sources(results, options)
    data = collect_all(
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
        figure = gallery_figure(
            data.items, data.images, model, boxes=data.boxes, captions=data.captions
        )
        drawn.append((save(figure, folder / f"gallery_{slug(model)}.png"), f"gallery: {model}"))
    return drawn
