"""Plots of the analysis, drawn with matplotlib's Agg canvas (no pyplot, no global backend change).

- :func:`bar_chart`: per metric, the mean per method with its bootstrap 95 % interval as error bar, one
  bar per model, one panel per variant; the y axis is the metric's range (:mod:`tfxai.metadata`), a
  metric not comparable across methods says so in red, and an empty panel reads "no data";
- :func:`accuracy_lines`: per metric, mean score against model accuracy, one line per method, one panel per
  architecture (Erdem's figures);
- :func:`roar_plot`: ROAR accuracy against removed fraction, mean ± std over seeds, random dashed;
- :func:`gallery_figure`: image × method maps overlaid on the images, with the annotated boxes, the true
  and predicted classes, the explained target and a colour bar per method (defined in
  :mod:`tfxai.analysis.gallery_plot`; :mod:`tfxai.analysis.display` says how each kind of map is shown).

Every function returns a :class:`matplotlib.figure.Figure`; :func:`save` writes it as PNG without
time-dependent metadata, so the same inputs give the same bytes (:mod:`tfxai.analysis.canvas`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from tfxai import metadata

from .canvas import COLORS, DPI, constrained_figure, grid, new_figure, no_data, save, slug
from .gallery_plot import BOX_COLOUR, RIGHT_COLOUR, WRONG_COLOUR, gallery_figure, overlay
from .modelinfo import natural_key
from .roar import RANDOM_METHOD
from .settings import base_name

__all__ = [
    "BOX_COLOUR",
    "DPI",
    "RIGHT_COLOUR",
    "WRONG_COLOUR",
    "accuracy_lines",
    "bar_chart",
    "curves_plot",
    "gallery_figure",
    "new_figure",
    "no_data",
    "overlay",
    "roar_plot",
    "save",
    "slug",
]


def _better(direction: str | Mapping[str, str], variant: str, template: str) -> str:
    """Title suffix naming the better direction of ``variant`` ("" when unknown)."""
    found = direction.get(variant, "") if isinstance(direction, Mapping) else direction
    return template.format(found) if found else ""



def _range_limits(metric: str, low: np.ndarray, high: np.ndarray) -> tuple[float, float] | None:
    """y limits showing the metric's range where it is bounded, and the data otherwise."""
    lo, hi = metadata.value_range(base_name(metric))
    data = np.concatenate([low[np.isfinite(low)], high[np.isfinite(high)]])
    if not data.size:
        return None
    top = hi if np.isfinite(hi) else float(data.max())
    bottom = lo if np.isfinite(lo) else float(data.min())
    top, bottom = max(top, float(data.max())), min(bottom, float(data.min()))
    pad = 0.04 * (top - bottom if top > bottom else 1.0)
    return bottom - (pad if not np.isfinite(lo) or bottom < lo else 0.0), top + pad


def bar_chart(
    summary: pd.DataFrame,
    metric: str,
    direction: str | Mapping[str, str] = "",
    comparable: Mapping[str, str] | None = None,
    level: float = 0.95,
) -> Figure:
    """Bars of the mean of ``metric`` with its bootstrap interval: methods on x, one bar per model, one
    panel per variant.

    ``summary`` needs columns metric, variant, model_id, method, mean, ci_low, ci_high, count (and
    out_of_range when present). ``direction`` is one direction for every panel or a mapping variant →
    direction; ``comparable`` maps a variant to the reason it is *not* comparable across methods
    (absent: comparable). Error bars are the interval, which lies in the metric's range as long as the
    values do; values outside the range are counted in the panel's title, never clipped.
    """
    rows = summary[summary["metric"] == metric]
    variants = sorted(rows["variant"].unique()) or [""]
    methods = sorted(rows["method"].unique())
    models = sorted(rows["model_id"].unique(), key=natural_key)
    n_rows, n_cols = grid(len(variants))
    figure = constrained_figure(
        max(4.5, 0.9 * len(methods) * max(1, len(models)) ** 0.5) * n_cols,
        3.9 * n_rows + (0.3 if len(models) > 1 else 0.0),
    )
    comparable = comparable or {}
    handles: list[BarContainer] = []
    for k, variant in enumerate(variants):
        axes = figure.add_subplot(n_rows, n_cols, k + 1)
        panel = rows[rows["variant"] == variant]
        title = f"{metric} {variant}".strip() + _better(direction, variant, " ({} is better)")
        if panel.empty or panel["mean"].isna().all():
            no_data(axes, "no data" if panel.empty else
                    f"no data: all {int(panel['nan_count'].sum())} values undefined")
            axes.set_title(title, fontsize=9)
            continue
        bars = _bar_panel(axes, panel, metric, methods, models)
        handles = handles or bars
        _panel_title(axes, panel, metric, title, comparable.get(variant))
        axes.set_ylabel(f"mean, {level:.0%} bootstrap CI", fontsize=8)
        axes.grid(axis="y", alpha=0.3)
    if len(models) > 1 and handles:
        # below the panels, so it never covers a bar
        figure.legend(handles, models, loc="outside lower center", ncol=min(len(models), 4),
                      fontsize=7)  # fmt: skip
    return figure


def _bar_panel(
    axes: Axes, panel: pd.DataFrame, metric: str, methods: list[str], models: list[str]
) -> list[BarContainer]:
    """One panel: a bar per method and model with its interval as error bar, the method ticks with
    the counts, and the y range of the metric; returns the bars of each model (for the legend)."""
    width = 0.8 / max(len(models), 1)
    bars, lows, highs = [], [], []
    for j, model in enumerate(models):
        part = panel[panel["model_id"] == model].set_index("method").reindex(methods)
        x = np.arange(len(methods)) + (j - (len(models) - 1) / 2) * width
        mean = part["mean"].to_numpy(dtype=float)
        low = part["ci_low"].to_numpy(dtype=float)
        high = part["ci_high"].to_numpy(dtype=float)
        has = np.isfinite(low) & np.isfinite(high)
        bars.append(axes.bar(x, np.nan_to_num(mean), width, label=model,
                             color=COLORS[j % len(COLORS)]))  # fmt: skip
        if has.any():
            axes.errorbar(
                x[has], mean[has], yerr=[mean[has] - low[has], high[has] - mean[has]],
                fmt="none", ecolor="black", capsize=3, linewidth=1,
            )  # fmt: skip
        lows.append(np.where(has, low, mean))
        highs.append(np.where(has, high, mean))
    _method_ticks(axes, panel, methods, models)
    limits = _range_limits(metric, np.concatenate(lows), np.concatenate(highs))
    if limits is not None:
        axes.set_ylim(*limits)
    return bars


def _method_ticks(axes: Axes, panel: pd.DataFrame, methods: list[str], models: list[str]) -> None:
    """Method names on x with the number of values (one n, or one per model when they differ)."""
    counts = panel.pivot_table(index="method", columns="model_id", values="count",
                               aggfunc="sum").reindex(index=methods, columns=models)  # fmt: skip
    counts = counts.fillna(0).astype(int)
    ticks = []
    for m in methods:
        per = sorted(set(counts.loc[m].tolist()))
        ticks.append(f"{m}\n(n={per[0]})" if len(per) == 1 else
                     f"{m}\n(n={'/'.join(str(v) for v in counts.loc[m].tolist())})")
    upright = len(methods) <= 3 and max(len(m) for m in methods) <= 22
    axes.set_xticks(
        np.arange(len(methods)), ticks,
        rotation=0 if upright else 30, ha="center" if upright else "right", fontsize=8,
    )  # fmt: skip


def _panel_title(
    axes: Axes, panel: pd.DataFrame, metric: str, title: str, not_comparable: str | None
) -> None:
    """The panel's title, with the count of values outside the metric's range and, in red, why the
    metric is not comparable across methods."""
    outside = int(panel["out_of_range"].sum()) if "out_of_range" in panel.columns else 0
    span = metadata.value_range(base_name(metric))
    if outside:
        title += f"\n{outside} value(s) outside [{span[0]:g}, {span[1]:g}] (not clipped)"
    if not_comparable is not None:
        reason = textwrap.fill(not_comparable, 60)
        axes.set_title(f"{title}\nNOT COMPARABLE ACROSS METHODS (not ranked):\n{reason}",
                       fontsize=8, color="#cf222e")  # fmt: skip
    else:
        axes.set_title(title, fontsize=9)



def accuracy_lines(
    means_by_variant: Mapping[str, pd.DataFrame],
    models: pd.DataFrame,
    metric: str,
    direction: str | Mapping[str, str] = "",
) -> Figure:
    """Mean ``metric`` against model accuracy, one line per method (Erdem's figures).

    ``means_by_variant`` maps each variant ("" for single-variant metrics) to a models × methods table
    (:func:`tfxai.analysis.reliability.method_means`); ``models`` is the model table with model_id,
    architecture and accuracy. One panel per (variant, architecture).
    """
    info = models.set_index("model_id")
    panels = []
    for variant, means in sorted(means_by_variant.items()):
        known = [m for m in means.index if m in info.index]
        for arch in sorted({info.loc[m, "architecture"] for m in known}):
            members = [m for m in known if info.loc[m, "architecture"] == arch]
            panels.append((variant, arch, means.loc[members]))
    n_rows, n_cols = grid(len(panels))
    figure = new_figure(5.0 * n_cols, 3.6 * n_rows)
    if not panels:
        no_data(figure.add_subplot(1, 1, 1), f"{metric}: no model with a known accuracy")
    for k, (variant, arch, means) in enumerate(panels):
        axes = figure.add_subplot(n_rows, n_cols, k + 1)
        accuracy = info.loc[means.index, "accuracy"].astype(float).sort_values(kind="stable")
        for j, method in enumerate(means.columns):
            axes.plot(
                accuracy.to_numpy(), means.loc[accuracy.index, method].to_numpy(dtype=float),
                marker="o", label=str(method), color=COLORS[j % len(COLORS)],
            )  # fmt: skip
        label = f"{metric} {variant}".strip()
        axes.set_title(
            f"{label} ({arch})" + _better(direction, variant, ", {} is better"), fontsize=9
        )
        axes.set_xlabel("model accuracy", fontsize=8)
        axes.set_ylabel(f"mean {label}", fontsize=8)
        axes.grid(alpha=0.3)
        if k == 0:
            axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


_CURVE_X = {
    "deletion": "pixels removed (%)",
    "insertion": "pixels inserted (%)",
    "road": "pixels removed and imputed (%)",
}


def curves_plot(curves: pd.DataFrame, metric: str) -> Figure:
    """Mean curve of ``metric`` per method (± sample std band), one panel per (model, variant)."""
    rows = curves[curves["metric"] == metric]
    panels = sorted(
        {(m, v) for m, v in zip(rows["model_id"], rows["variant"], strict=True)},
        key=lambda mv: (natural_key(mv[0]), mv[1]),
    )
    n_rows, n_cols = grid(len(panels))
    figure = new_figure(5.0 * n_cols, 3.6 * n_rows)
    methods = sorted(rows["method"].unique())
    if not panels:
        no_data(figure.add_subplot(1, 1, 1), f"{metric}: no curve points")
    for k, (model, variant) in enumerate(panels):
        axes = figure.add_subplot(n_rows, n_cols, k + 1)
        panel = rows[(rows["model_id"] == model) & (rows["variant"] == variant)]
        if panel["mean"].isna().all():
            no_data(axes)
            axes.set_title(f"{metric} {variant} ({model})".replace("  ", " "), fontsize=9)
            continue
        for j, method in enumerate(methods):
            part = panel[panel["method"] == method].sort_values("x")
            if part.empty:
                continue
            x = part["x"].to_numpy(dtype=float)
            mean = part["mean"].to_numpy(dtype=float)
            std = np.nan_to_num(part["std_sample"].to_numpy(dtype=float))
            colour = COLORS[j % len(COLORS)]
            axes.plot(x, mean, marker=".", label=str(method), color=colour)
            axes.fill_between(x, mean - std, mean + std, color=colour, alpha=0.12)
        axes.set_title(f"{metric} {variant} ({model})".replace("  ", " "), fontsize=9)
        axes.set_xlabel(_CURVE_X.get(metric, "x"), fontsize=8)
        axes.set_ylabel("mean y ± std", fontsize=8)
        axes.grid(alpha=0.3)
        if k == 0:
            axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def roar_plot(summary: pd.DataFrame) -> Figure:
    """ROAR: accuracy vs fraction removed, mean ± sample std over seeds; ``random`` dashed black."""
    figure = new_figure(6.0, 4.0)
    axes = figure.add_subplot(1, 1, 1)
    if summary.empty or summary["mean"].isna().all():
        no_data(axes, "ROAR: no data")
        return figure
    methods = sorted(summary["method"].unique(), key=lambda m: (m == RANDOM_METHOD, m))
    for j, method in enumerate(methods):
        part = summary[summary["method"] == method].sort_values("fraction")
        x = part["fraction"].to_numpy(dtype=float)
        mean = part["mean"].to_numpy(dtype=float)
        std = np.nan_to_num(part["std_sample"].to_numpy(dtype=float))
        style = (
            {"color": "black", "linestyle": "--"}
            if method == RANDOM_METHOD
            else {"color": COLORS[j % len(COLORS)]}
        )
        axes.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=str(method), **style)
    axes.set_xlabel("fraction of pixels removed")
    axes.set_ylabel("test accuracy after retraining")
    axes.set_title("ROAR (mean ± std over seeds; lower than random is better)", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure
