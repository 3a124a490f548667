"""Plain-text tables of the listing commands (``tfxai models``, ``methods``, ``metrics``).

A table fits in :data:`WIDTH` columns: every column is at least as wide as its longest unbreakable
item (a name stays whole), the columns of long free text share what is left, and their cells wrap
over several lines at spaces and after commas (a parameter list ``steps=50, baseline='black'`` or a
variant list ``rotate_-30,rotate_15`` breaks between its items). ``--wide`` (:func:`wide_option`)
prints every cell on one line instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import click

__all__ = ["WIDTH", "format_table", "wide_option", "wrap_text"]

#: the width a table fits in unless ``--wide`` is given
WIDTH = 100
#: no column gets narrower than this (unless its content is narrower)
MIN_COLUMN = 10
#: a column whose cells are all at most this wide never wraps
SHORT = 13
SEP = "  "

_TOKEN = re.compile(r"([^\s,]*,?)(\s*)")
#: where an item longer than a line is cut, when it holds one of them
_SOFT = "=_@-/"


def wrap_text(text: Any, width: int) -> list[str]:
    """Greedy wrap of ``text`` to lines of at most ``width`` characters, breaking at spaces and
    after commas; a single item longer than ``width`` is cut, after its last ``= _ @ - /`` that
    fits when it has one. Newlines in ``text`` are kept."""
    width = max(1, int(width))
    out: list[str] = []
    for para in str(text).split("\n"):
        line = ""
        for m in _TOKEN.finditer(para):
            word, space = m.group(1), m.group(2)
            if not word and not space:
                continue
            if len(line) + len(word) <= width or not line.strip():
                line = (line if line.strip() else "") + word
            else:
                out.append(line.rstrip())
                line = word
            while len(line) > width:  # an item longer than a line: cut after = _ @ - / if any
                cut = max(line.rfind(c, 0, width) for c in _SOFT) + 1 or width
                out.append(line[:cut])
                line = line[cut:]
            line += space
        out.append(line.rstrip())
    return out or [""]


def _longest_item(text: str) -> int:
    """The longest piece of ``text`` that wrapping does not break (a word, with its comma)."""
    return max((len(m.group(1)) for m in _TOKEN.finditer(text)), default=0)


def _fill(want: list[int], budget: int) -> list[int]:
    """Water-filling: wants within the fair share are met; the larger ones share the rest."""
    out = [0] * len(want)
    left = budget
    order = sorted(range(len(want)), key=lambda i: want[i])
    for k, i in enumerate(order):
        out[i] = min(want[i], left // (len(order) - k))
        left -= out[i]
    return out


def _widths(natural: list[int], items: list[int], budget: int) -> list[int]:
    """Column widths summing to at most ``budget``.

    A column whose cells are all short (at most :data:`SHORT` wide) keeps its width; any other
    starts at the width of its longest unbreakable item, so names stay whole and lists break
    between their items. When that does not fit, the columns that wrap anyway give up width, the
    widest first, down to :data:`MIN_COLUMN` (then to fewer characters, cutting long items). What
    is left goes to the columns that still want more (:func:`_fill`).
    """
    if sum(natural) <= budget:
        return list(natural)
    for floor in (MIN_COLUMN, MIN_COLUMN - 2, MIN_COLUMN - 4):
        base = [n if n <= SHORT else min(n, max(t, 1))
                for n, t in zip(natural, items, strict=True)]
        deficit = sum(base) - budget
        wrapping = [i for i in range(len(base)) if natural[i] > base[i]]
        for i in sorted(wrapping, key=lambda i: -natural[i]):
            if deficit <= 0:
                break
            give = min(deficit, max(0, base[i] - floor))
            base[i] -= give
            deficit -= give
        if deficit <= 0:
            break
    else:  # too many columns for the width: share it evenly
        return _fill(natural, budget)
    extra = _fill([n - b for n, b in zip(natural, base, strict=True)], budget - sum(base))
    return [b + e for b, e in zip(base, extra, strict=True)]


def format_table(rows: Sequence[Sequence[Any]], header: Sequence[str], width: int | None = WIDTH,
                 ) -> str:
    """``header`` and ``rows`` as aligned columns with a dashed rule under the header, at most
    ``width`` characters wide (``None``: no limit, one line per row; see :func:`_widths`)."""
    cells = [[str(c) for c in header], *[[str(c) for c in r] for r in rows]]
    ncols = len(header)
    natural = [max(max(len(x) for x in row[i].split("\n")) for row in cells) for i in range(ncols)]
    if width is None:
        widths = natural
    else:
        items = [max(_longest_item(row[i]) for row in cells) for i in range(ncols)]
        widths = _widths(natural, items, max(ncols, width - len(SEP) * (ncols - 1)))

    def render(row: list[str]) -> list[str]:
        wrapped = [wrap_text(c, w) for c, w in zip(row, widths, strict=True)]
        height = max(len(w) for w in wrapped)
        lines = []
        for k in range(height):
            parts = [(w[k] if k < len(w) else "").ljust(cw) for w, cw in zip(wrapped, widths,
                                                                              strict=True)]
            lines.append(SEP.join(parts).rstrip())
        return lines

    out = render(cells[0])
    out.append(SEP.join("-" * w for w in widths))
    for row in cells[1:]:
        out.extend(render(row))
    return "\n".join(out)


def wide_option(fn: Callable) -> Callable:
    """``--wide``: one line per row, however long (for grep, or a wide terminal)."""
    return click.option("--wide", is_flag=True,
                        help=f"One line per row instead of wrapping at {WIDTH} columns.")(fn)
