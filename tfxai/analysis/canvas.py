"""What every plot of the analysis shares: figures on matplotlib's Agg canvas (no pyplot, no global
backend change), the colour cycle, empty panels that say "no data", and PNG files written without
time-dependent metadata (:func:`save`), so the same inputs give the same bytes.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
#: one colour per model (bars) or method (lines), in this order
COLORS = (
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


def constrained_figure(width: float, height: float) -> Figure:
    """A figure with matplotlib's constrained layout, attached to an Agg canvas."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as PNG at ``path`` (parents created) with no software/time metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    """Rows and columns for ``n`` panels."""
    cols = min(max(n, 1), max_cols)
    return math.ceil(max(n, 1) / cols), cols


def no_data(axes, text: str = "no data") -> None:
    """Write ``text`` in the middle of ``axes`` instead of leaving it empty."""
    axes.text(0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center", fontsize=10,
              color="#666666")  # fmt: skip
    axes.set_xticks([])
    axes.set_yticks([])


def bare(axes) -> None:
    """No ticks and no frame, but keep the axis labels (used as captions)."""
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)
