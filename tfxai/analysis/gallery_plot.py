"""The gallery figure (:func:`gallery_figure`): for one model, rows = images, columns = the image and
one attribution map per method, overlaid on the image, with the annotated boxes, the true and
predicted classes, the explained target and a colour bar per method. :mod:`tfxai.analysis.display`
says how each kind of map is shown; :mod:`tfxai.analysis.gallery` gathers the data.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .canvas import bare, constrained_figure, no_data
from .display import CAM, DISPLAY_PERCENTILE, SIGNED, display_kind, display_values
from .gallery import Caption, target_name
from .stores import GalleryItem

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


def _draw_boxes(axes: Axes, boxes: np.ndarray | None) -> None:
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
    signed red/blue or magnitude opacity over a grey copy of the image; :mod:`tfxai.analysis.display`),
    and the percentile clip is written on the figure.
    """
    chosen = [i for i in items if (i.model_id or i.model) == model]
    image_ids = list(dict.fromkeys(i.image_id for i in chosen))
    methods = sorted({i.method for i in chosen})
    lookup = {(i.image_id, i.method): i for i in chosen}
    kinds = [display_kind(m, [i.load() for i in chosen if i.method == m]) for m in methods]
    boxes = boxes or {}
    captions = captions or {}
    figure, cells, bars = _layout(len(image_ids), len(methods))
    for r, image_id in enumerate(image_ids):
        image, image_boxes = images.get(image_id), boxes.get(image_id)
        row = [lookup.get((image_id, m)) for m in methods]
        known = [i for i in row if i is not None and i.target is not None]
        caption = captions.get((model, image_id), Caption())
        _image_cell(cells[r][0], image, image_id, image_boxes, caption, known)
        several = len({i.target for i in known}) > 1
        for c, (method, item, kind) in enumerate(zip(methods, row, kinds, strict=True)):
            _map_cell(cells[r][c + 1], item, kind, image, image_boxes, alpha,
                      method if r == 0 else None, several)  # fmt: skip
    for bar, kind in zip(bars[1:], kinds, strict=True):
        _colour_bar(figure, bar, kind)
    _legend(figure, model)
    return figure


def _layout(n_images: int, n_methods: int) -> tuple[Figure, list[list[Axes]], list[Axes]]:
    """The figure, its grid of image × (image, methods) axes and a thin last row for the colour
    bars, so every image row has one size (the image column has no colour bar)."""
    n_rows, n_cols = max(n_images, 1), n_methods + 1
    figure = constrained_figure(2.45 * n_cols, 3.05 * n_rows + 1.2)
    figure.get_layout_engine().set(h_pad=0.06, hspace=0.06)
    spec = figure.add_gridspec(n_rows + 1, n_cols, height_ratios=[1.0] * n_rows + [0.06])
    cells = [[figure.add_subplot(spec[r, c]) for c in range(n_cols)] for r in range(n_rows)]
    bars = [figure.add_subplot(spec[n_rows, c]) for c in range(n_cols)]
    bars[0].set_visible(False)
    return figure, cells, bars


def _image_cell(
    axes: Axes,
    image: np.ndarray | None,
    image_id: str,
    boxes: np.ndarray | None,
    caption: Caption,
    known: Sequence[GalleryItem],
) -> None:
    """The image with its boxes, its id and true class above, and below the prediction (✓/✗ with
    its probability) and the explained class when all of ``known`` (the items of the row with a
    target) explain the same one."""
    bare(axes)
    if image is not None:
        axes.imshow(image)
        _draw_boxes(axes, boxes)
    else:
        no_data(axes, "image\nnot found")
    true = _short(caption.label_name) if caption.label is not None else "unknown"
    axes.set_title(f"{_short(image_id, 28)}\ntrue: {true}", fontsize=7.5, loc="left")
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


def _map_cell(
    axes: Axes,
    item: GalleryItem | None,
    kind: str,
    image: np.ndarray | None,
    boxes: np.ndarray | None,
    alpha: float,
    title: str | None,
    name_target: bool,
) -> None:
    """One method's map of one image drawn as its ``kind`` (CAM: heat at ``alpha`` over the image),
    with the boxes; ``title`` on the first row; the explained class below when the row's maps
    explain several (``name_target``)."""
    bare(axes)
    if title is not None:
        axes.set_title(title, fontsize=9)
    if item is None:
        no_data(axes, "not stored")
        return
    values = display_values(item, kind)
    if kind == CAM:
        if image is not None and image.shape[:2] == values.shape:
            axes.imshow(image)
            axes.imshow(values, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
        else:
            axes.imshow(values, cmap="jet", vmin=0.0, vmax=1.0)
    else:
        axes.imshow(overlay(_grey(image, values.shape), values, kind))
    _draw_boxes(axes, boxes)
    if name_target and item.target is not None:
        axes.set_xlabel(f"explained: {_short(target_name(item), 18)}", fontsize=7)


def _colour_bar(figure: Figure, axes: Axes, kind: str) -> None:
    """The horizontal colour bar of a method column, labelled with how its maps are drawn."""
    cmap, norm, ticks, labels, label = _colour_scale(kind)
    bar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=axes, orientation="horizontal")
    bar.set_ticks(ticks, labels=labels, fontsize=7)
    bar.set_label(label, fontsize=7)


def _legend(figure: Figure, model: str) -> None:
    """The figure's title: how to read the maps."""
    legend = (
        f"{model}: attribution maps. Pixel maps: red = positive, blue = negative evidence, opacity = "
        f"|value| over a grey copy of the image, each map clipped at its {DISPLAY_PERCENTILE:g}th "
        "percentile of |value|; CAM maps: heat scaled to the maximum. Green: annotated boxes."
    )
    # about 15 characters of 8-point text per inch of figure width
    figure.suptitle(textwrap.fill(legend, max(40, int(15 * figure.get_figwidth()))), fontsize=8)
