"""Plots of the analysis, drawn with matplotlib's Agg canvas (no pyplot, no global backend change).

- :func:`bar_chart`: per metric, the mean per method with its bootstrap 95 % interval as error bar, one
  bar per model, one panel per variant; the y axis is the metric's range (:mod:`tfxai.metadata`), a
  metric not comparable across methods says so in red, and an empty panel reads "no data";
- :func:`accuracy_lines`: per metric, mean score against model accuracy, one line per method, one panel per
  architecture (Erdem's figures);
- :func:`roar_plot`: ROAR accuracy against removed fraction, mean ± std over seeds, random dashed;
- :func:`gallery_figure`: image × method maps overlaid on the images, with the annotated boxes, the true
  and predicted classes, the explained target and a colour bar per method
  (:mod:`tfxai.analysis.gallery` says how each kind of map is shown).

Every function returns a :class:`matplotlib.figure.Figure`; :func:`save` writes it as PNG without
time-dependent metadata, so the same inputs give the same bytes.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from tfxai import metadata

from .gallery import (
    CAM,
    DISPLAY_PERCENTILE,
    SIGNED,
    Caption,
    GalleryItem,
    display_kind,
    display_values,
    target_name,
)
from .modelinfo import natural_key
from .roar import RANDOM_METHOD
from .settings import base_name

DPI = 100
_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "x"


def new_figure(width: float, height: float) -> Figure:
    """A figure attached to an Agg canvas."""
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as PNG at ``path`` (parents created) with no software/time metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    """Rows and columns for ``n`` panels."""
    cols = min(max(n, 1), max_cols)
    return math.ceil(max(n, 1) / cols), cols


def _better(direction: str | Mapping[str, str], variant: str, template: str) -> str:
    """Title suffix naming the better direction of ``variant`` ("" when unknown)."""
    found = direction.get(variant, "") if isinstance(direction, Mapping) else direction
    return template.format(found) if found else ""


def no_data(axes, text: str = "no data") -> None:
    """Write ``text`` in the middle of ``axes`` instead of leaving it empty."""
    axes.text(0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center", fontsize=10,
              color="#666666")  # fmt: skip
    axes.set_xticks([])
    axes.set_yticks([])


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
    n_rows, n_cols = _grid(len(variants))
    figure = Figure(
        figsize=(max(4.5, 0.9 * len(methods) * max(1, len(models)) ** 0.5) * n_cols,
                 3.9 * n_rows + (0.3 if len(models) > 1 else 0.0)),
        dpi=DPI, layout="constrained",
    )  # fmt: skip
    FigureCanvasAgg(figure)
    width = 0.8 / max(len(models), 1)
    comparable = comparable or {}
    handles: list[object] = []
    for k, variant in enumerate(variants):
        axes = figure.add_subplot(n_rows, n_cols, k + 1)
        panel = rows[rows["variant"] == variant]
        label = f"{metric} {variant}".strip()
        title = label + _better(direction, variant, " ({} is better)")
        if panel.empty or panel["mean"].isna().all():
            no_data(axes, "no data" if panel.empty else
                    f"no data: all {int(panel['nan_count'].sum())} values undefined")
            axes.set_title(title, fontsize=9)
            continue
        lows, highs = [], []
        for j, model in enumerate(models):
            part = panel[panel["model_id"] == model].set_index("method").reindex(methods)
            x = np.arange(len(methods)) + (j - (len(models) - 1) / 2) * width
            mean = part["mean"].to_numpy(dtype=float)
            low = part["ci_low"].to_numpy(dtype=float)
            high = part["ci_high"].to_numpy(dtype=float)
            has = np.isfinite(low) & np.isfinite(high)
            bars = axes.bar(x, np.nan_to_num(mean), width, label=model,
                            color=_COLORS[j % len(_COLORS)])  # fmt: skip
            if len(handles) < len(models):
                handles.append(bars)
            if has.any():
                axes.errorbar(
                    x[has], mean[has], yerr=[mean[has] - low[has], high[has] - mean[has]],
                    fmt="none", ecolor="black", capsize=3, linewidth=1,
                )  # fmt: skip
            lows.append(np.where(has, low, mean))
            highs.append(np.where(has, high, mean))
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
        limits = _range_limits(metric, np.concatenate(lows), np.concatenate(highs))
        if limits is not None:
            axes.set_ylim(*limits)
        outside = int(panel["out_of_range"].sum()) if "out_of_range" in panel.columns else 0
        span = metadata.value_range(base_name(metric))
        if outside:
            title += f"\n{outside} value(s) outside [{span[0]:g}, {span[1]:g}] (not clipped)"
        if variant in comparable:
            reason = textwrap.fill(comparable[variant], 60)
            axes.set_title(f"{title}\nNOT COMPARABLE ACROSS METHODS (not ranked):\n{reason}",
                           fontsize=8, color="#cf222e")  # fmt: skip
        else:
            axes.set_title(title, fontsize=9)
        axes.set_ylabel(f"mean, {level:.0%} bootstrap CI", fontsize=8)
        axes.grid(axis="y", alpha=0.3)
    if len(models) > 1 and handles:
        # below the panels, so it never covers a bar
        figure.legend(handles, models, loc="outside lower center", ncol=min(len(models), 4),
                      fontsize=7)  # fmt: skip
    return figure


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
    n_rows, n_cols = _grid(len(panels))
    figure = new_figure(5.0 * n_cols, 3.6 * n_rows)
    if not panels:
        no_data(figure.add_subplot(1, 1, 1), f"{metric}: no model with a known accuracy")
    for k, (variant, arch, means) in enumerate(panels):
        axes = figure.add_subplot(n_rows, n_cols, k + 1)
        accuracy = info.loc[means.index, "accuracy"].astype(float).sort_values(kind="stable")
        for j, method in enumerate(means.columns):
            axes.plot(
                accuracy.to_numpy(), means.loc[accuracy.index, method].to_numpy(dtype=float),
                marker="o", label=str(method), color=_COLORS[j % len(_COLORS)],
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
    n_rows, n_cols = _grid(len(panels))
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
            colour = _COLORS[j % len(_COLORS)]
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
            else {"color": _COLORS[j % len(_COLORS)]}
        )
        axes.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=str(method), **style)
    axes.set_xlabel("fraction of pixels removed")
    axes.set_ylabel("test accuracy after retraining")
    axes.set_title("ROAR (mean ± std over seeds; lower than random is better)", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


#: Colour of the annotated boxes (pure green does not occur in the map colours).
BOX_COLOUR = "#00ff00"
_RED = np.array([0.84, 0.09, 0.11])
_BLUE = np.array([0.13, 0.35, 0.85])
_GREY = 0.6
_MAX_ALPHA = 0.9
RIGHT_COLOUR, WRONG_COLOUR = "#1a7f37", "#cf222e"


def _grey(image: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """A dimmed grey copy of ``image`` as RGB floats in [0, 1] (light grey when there is none)."""
    if image is None or image.shape[:2] != shape:
        return np.full((*shape, 3), 0.85)
    rgb = np.asarray(image, dtype=np.float64)[..., :3] / 255.0
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    return np.repeat((0.2 + 0.6 * luma)[..., None], 3, axis=-1)


def overlay(grey: np.ndarray, values: np.ndarray, kind: str) -> np.ndarray:
    """Evidence as colour over ``grey``: red for positive, blue for negative (``signed``), red for a
    magnitude; opacity = |value| (at most 0.9)."""
    alpha = (np.abs(values) * _MAX_ALPHA)[..., None]
    colour = np.where((values >= 0)[..., None], _RED, _BLUE) if kind == SIGNED else _RED
    return np.clip((1.0 - alpha) * grey + alpha * colour, 0.0, 1.0)


def _colour_scale(kind: str) -> tuple[object, Normalize, list[float], list[str], str]:
    """Colour map, norm, ticks, tick labels and label of the colour bar of ``kind``."""
    pct = f"{DISPLAY_PERCENTILE:g}th pct of |value|"
    if kind == CAM:
        return "jet", Normalize(0.0, 1.0), [0.0, 1.0], ["0", "max"], "heat, scaled to max"
    grey = np.full(3, _GREY)
    if kind == SIGNED:
        stops = [(1 - _MAX_ALPHA) * grey + _MAX_ALPHA * _BLUE, grey,
                 (1 - _MAX_ALPHA) * grey + _MAX_ALPHA * _RED]  # fmt: skip
        cmap = LinearSegmentedColormap.from_list("tfxai_signed", stops)
        return cmap, Normalize(-1.0, 1.0), [-1.0, 0.0, 1.0], ["−p", "0", "+p"], f"signed; p = {pct}"
    cmap = LinearSegmentedColormap.from_list("tfxai_mag", [grey, (1 - _MAX_ALPHA) * grey + _MAX_ALPHA * _RED])
    return cmap, Normalize(0.0, 1.0), [0.0, 1.0], ["0", "p"], f"|value|; p = {pct}"


def _draw_boxes(axes, boxes: np.ndarray | None) -> None:
    """Outline the half-open pixel boxes (xmin, ymin, xmax, ymax) on an image axes."""
    if boxes is None:
        return
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=float).reshape(-1, 4):
        # pixel i spans [i − 0.5, i + 0.5]: the box's outer edges are x0 − 0.5 and x1 − 0.5
        axes.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                 edgecolor=BOX_COLOUR, linewidth=1.4, clip_on=True))  # fmt: skip


def _short(text: str, limit: int = 24) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bare(axes) -> None:
    """No ticks and no frame, but keep the axis labels (used as captions)."""
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)


def gallery_figure(
    items: Sequence[GalleryItem],
    images: Mapping[str, np.ndarray | None],
    model: str,
    alpha: float = 0.5,
    boxes: Mapping[str, np.ndarray | None] | None = None,
    captions: Mapping[tuple[str, str], Caption] | None = None,
) -> Figure:
    """Rows = images, columns = the image and one map per method, for one ``model`` (its model_id).

    The image column shows the annotated boxes (green), the image id, the true class and, in green
    with ✓ or red with ✗, the predicted class with its probability, and the class that was explained.
    Each method column has one colour bar; how a map is drawn depends on its kind (CAM heat overlay,
    signed red/blue or magnitude opacity over a grey copy of the image; :mod:`tfxai.analysis.gallery`),
    and the percentile clip is written on the figure.
    """
    chosen = [i for i in items if (i.model_id or i.model) == model]
    image_ids = list(dict.fromkeys(i.image_id for i in chosen))
    methods = sorted({i.method for i in chosen})
    lookup = {(i.image_id, i.method): i for i in chosen}
    kinds = {m: display_kind(m, [i.load() for i in chosen if i.method == m]) for m in methods}
    boxes = boxes or {}
    captions = captions or {}
    n_rows, n_cols = max(len(image_ids), 1), len(methods) + 1
    figure = Figure(figsize=(2.45 * n_cols, 3.05 * n_rows + 1.2), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    figure.get_layout_engine().set(h_pad=0.06, hspace=0.06)
    # one row per image, and a thin last row for the colour bars so every image row has one size
    spec = figure.add_gridspec(n_rows + 1, n_cols, height_ratios=[1.0] * n_rows + [0.06])
    grid = [[figure.add_subplot(spec[r, c]) for c in range(n_cols)] for r in range(n_rows)]
    bars = [figure.add_subplot(spec[n_rows, c]) for c in range(n_cols)]
    bars[0].set_visible(False)
    for r, image_id in enumerate(image_ids):
        image = images.get(image_id)
        axes = grid[r][0]
        _bare(axes)
        if image is not None:
            axes.imshow(image)
            _draw_boxes(axes, boxes.get(image_id))
        else:
            no_data(axes, "image\nnot found")
        caption = captions.get((model, image_id), Caption())
        true = _short(caption.label_name) if caption.label is not None else "unknown"
        axes.set_title(f"{_short(image_id, 28)}\ntrue: {true}", fontsize=7.5, loc="left")
        known = [lookup[(image_id, m)] for m in methods
                 if (image_id, m) in lookup and lookup[(image_id, m)].target is not None]  # fmt: skip
        targets = {i.target for i in known}
        explained = f"\nexplained: {_short(target_name(known[0]))}" if len(targets) == 1 else ""
        if caption.predicted is not None:
            mark = {True: " ✓", False: " ✗", None: ""}[caption.correct]
            prob = f" p={caption.confidence:.2f}" if caption.confidence is not None else ""
            colour = {True: RIGHT_COLOUR, False: WRONG_COLOUR, None: "black"}[caption.correct]
            axes.set_xlabel(f"pred: {_short(caption.predicted_name)}{mark}{prob}{explained}",
                            fontsize=7.5, color=colour, loc="left")  # fmt: skip
        elif explained:
            axes.set_xlabel(explained.strip(), fontsize=7.5, loc="left")
        for c, method in enumerate(methods):
            axes = grid[r][c + 1]
            _bare(axes)
            if r == 0:
                axes.set_title(method, fontsize=9)
            item = lookup.get((image_id, method))
            if item is None:
                no_data(axes, "not stored")
                continue
            values = display_values(item, kinds[method])
            if kinds[method] == CAM:
                if image is not None and image.shape[:2] == values.shape:
                    axes.imshow(image)
                    axes.imshow(values, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
                else:
                    axes.imshow(values, cmap="jet", vmin=0.0, vmax=1.0)
            else:
                axes.imshow(overlay(_grey(image, values.shape), values, kinds[method]))
            _draw_boxes(axes, boxes.get(image_id))
            if len(targets) > 1 and item.target is not None:
                axes.set_xlabel(f"explained: {_short(target_name(item), 18)}", fontsize=7)
    for c, method in enumerate(methods):
        cmap, norm, ticks, labels, label = _colour_scale(kinds[method])
        bar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=bars[c + 1],
                              orientation="horizontal")  # fmt: skip
        bar.set_ticks(ticks, labels=labels, fontsize=7)
        bar.set_label(label, fontsize=7)
    legend = (
        f"{model}: attribution maps. Pixel maps: red = positive, blue = negative evidence, opacity = "
        f"|value| over a grey copy of the image, each map clipped at its {DISPLAY_PERCENTILE:g}th "
        "percentile of |value|; CAM maps: heat scaled to the maximum. Green: annotated boxes."
    )
    # about 15 characters of 8-point text per inch of figure width
    figure.suptitle(textwrap.fill(legend, max(40, int(15 * figure.get_figwidth()))), fontsize=8)
    return figure
