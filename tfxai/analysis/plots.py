"""Plots of the analysis, drawn with matplotlib's Agg canvas (no pyplot, no global backend change).

- :func:`bar_chart`: per metric, mean ± sample std per method, one bar per model, one panel per variant;
- :func:`accuracy_lines`: per metric, mean score against model accuracy, one line per method, one panel per
  architecture (Erdem's figures);
- :func:`roar_plot`: ROAR accuracy against removed fraction, mean ± std over seeds, random dashed;
- :func:`gallery_figure`: image × method maps overlaid on the images.

Every function returns a :class:`matplotlib.figure.Figure`; :func:`save` writes it as PNG without
time-dependent metadata, so the same inputs give the same bytes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .gallery import GalleryItem, display_map
from .modelinfo import natural_key
from .roar import RANDOM_METHOD

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


def bar_chart(
    summary: pd.DataFrame, metric: str, direction: str | Mapping[str, str] = ""
) -> Figure:
    """Bars of mean ± sample std for ``metric``: methods on x, one bar per model, one panel per variant.

    ``summary`` needs columns metric, variant, model_id, method, mean, std_sample. ``direction`` is one
    direction for every panel or a mapping variant → direction.
    """
    rows = summary[summary["metric"] == metric]
    variants = sorted(rows["variant"].unique())
    methods = sorted(rows["method"].unique())
    models = sorted(rows["model_id"].unique(), key=natural_key)
    n_rows, n_cols = _grid(len(variants))
    figure = new_figure(
        max(4.5, 0.9 * len(methods) * max(1, len(models)) ** 0.5) * n_cols, 3.6 * n_rows
    )
    width = 0.8 / max(len(models), 1)
    for k, variant in enumerate(variants):
        axes = figure.add_subplot(n_rows, n_cols, k + 1)
        panel = rows[rows["variant"] == variant]
        for j, model in enumerate(models):
            part = panel[panel["model_id"] == model].set_index("method").reindex(methods)
            x = np.arange(len(methods)) + (j - (len(models) - 1) / 2) * width
            axes.bar(
                x, part["mean"].to_numpy(dtype=float), width,
                yerr=np.nan_to_num(part["std_sample"].to_numpy(dtype=float)),
                capsize=3, label=model, color=_COLORS[j % len(_COLORS)],
            )  # fmt: skip
        axes.set_xticks(np.arange(len(methods)), methods, rotation=30, ha="right", fontsize=8)
        axes.set_title(
            f"{metric} {variant}".strip() + _better(direction, variant, " ({} is better)"),
            fontsize=9,
        )
        axes.set_ylabel("mean ± std (sample)", fontsize=8)
        axes.grid(axis="y", alpha=0.3)
        if k == 0 and len(models) > 1:
            axes.legend(fontsize=7)
    figure.tight_layout()
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
    for k, (model, variant) in enumerate(panels):
        axes = figure.add_subplot(n_rows, n_cols, k + 1)
        panel = rows[(rows["model_id"] == model) & (rows["variant"] == variant)]
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


def gallery_figure(
    items: Sequence[GalleryItem],
    images: Mapping[str, np.ndarray | None],
    model: str,
    alpha: float = 0.5,
) -> Figure:
    """Rows = images, columns = the image and one map per method, for one ``model`` (its model_id)."""
    chosen = [i for i in items if (i.model_id or i.model) == model]
    image_ids = list(dict.fromkeys(i.image_id for i in chosen))
    methods = sorted({i.method for i in chosen})
    lookup = {(i.image_id, i.method): i for i in chosen}
    n_cols = len(methods) + 1
    figure = new_figure(2.2 * n_cols, 2.3 * max(len(image_ids), 1))
    for r, image_id in enumerate(image_ids):
        image = images.get(image_id)
        axes = figure.add_subplot(len(image_ids), n_cols, r * n_cols + 1)
        if image is not None:
            axes.imshow(image)
        else:
            axes.text(0.5, 0.5, "image\nnot found", ha="center", va="center", fontsize=8)
        axes.set_title(image_id, fontsize=7)
        axes.axis("off")
        for c, method in enumerate(methods):
            axes = figure.add_subplot(len(image_ids), n_cols, r * n_cols + c + 2)
            axes.axis("off")
            if r == 0:
                axes.set_title(method, fontsize=8)
            item = lookup.get((image_id, method))
            if item is None:
                continue
            heat = display_map(item.load())
            if image is not None and image.shape[:2] == heat.shape:
                axes.imshow(image)
                axes.imshow(heat, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
            else:
                axes.imshow(heat, cmap="jet", vmin=0.0, vmax=1.0)
    figure.suptitle(f"{model}: |attribution| scaled to [0, 1]", fontsize=9)
    figure.tight_layout()
    return figure
