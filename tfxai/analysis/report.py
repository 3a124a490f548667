"""A single self-contained HTML report: tables, embedded PNG plots, run parameters and versions.

The file has no external resource (no script, stylesheet, font or image link): plots are embedded as
``data:image/png;base64`` URIs and the stylesheet is inline, so it opens from disk with no server. It
carries no time stamp, so the same inputs give the same bytes.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: Distributions whose versions the report lists (read from package metadata; nothing is imported).
VERSION_PACKAGES = (
    "tfxai",
    "tensorflow",
    "numpy",
    "pandas",
    "scipy",
    "matplotlib",
    "h5py",
    "click",
)
MAX_TABLE_ROWS = 400

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; margin-top: 1.6em; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0 1em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; max-width: 40em;
         overflow-wrap: anywhere; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; }
.figures { display: flex; flex-wrap: wrap; gap: 0.6em; align-items: flex-start; }
figure { margin: 0.3em 0; max-width: 100%; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.4em 0.8em; margin: 0.5em 0; }
.reliable { color: #1a7f37; font-weight: bold; }
.order-preserving { color: #9a6700; font-weight: bold; }
.unreliable { color: #cf222e; font-weight: bold; }
.small { font-size: 0.85em; color: #555; }
td.best { font-weight: bold; background: #dafbe1; }
td.notranked { color: #9a6700; text-align: left; }
td.ranked { text-align: left; }
.loud { background: #ffebe9; border-left: 4px solid #cf222e; padding: 0.4em 0.8em; margin: 0.5em 0; }
.meaning { background: #ddf4ff; border-left: 4px solid #0969da; padding: 0.4em 0.8em; margin: 0.5em 0; }
"""


@dataclass
class Section:
    """One report section: a title and HTML blocks."""

    title: str
    blocks: list[str] = field(default_factory=list)


def versions() -> dict[str, str]:
    """Python, platform and package versions (``not installed`` where absent)."""
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in VERSION_PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def png_data_uri(path: Path) -> str:
    """``data:image/png;base64,...`` for the PNG at ``path``."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def image_block(path: Path, caption: str) -> str:
    """An embedded image with a caption."""
    alt = html.escape(caption, quote=True)
    return f'<figure><img alt="{alt}" src="{png_data_uri(path)}"><figcaption class="small">{alt}</figcaption></figure>'


def figures_block(figures: Sequence[tuple[Path, str]]) -> str:
    """Embedded images side by side, wrapping to the page width."""
    if not figures:
        return ""
    return '<div class="figures">' + "".join(image_block(p, c) for p, c in figures) + "</div>"


def _cell(value: object) -> str:
    """One escaped table cell text (floats to 4 significant digits, NaN as NaN)."""
    if isinstance(value, float):
        return "NaN" if pd.isna(value) else f"{value:.4g}"
    return html.escape(str(value))


def ranked_table_block(
    frame: pd.DataFrame, strong: set[tuple[int, str]], caption: str = "", best_column: str = "best"
) -> str:
    """An HTML table of ``frame`` with the (row position, column) cells of ``strong`` bold on green
    (the best method, or every tied one) and the ``best_column`` styled by whether it ranks."""
    head = f"<h3>{html.escape(caption)}</h3>" if caption else ""
    if frame is None or frame.empty:
        return head + '<p class="small">(no rows)</p>'
    parts = ["<table><thead><tr>"]
    parts.extend(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    parts.append("</tr></thead><tbody>")
    for position, row in enumerate(frame.head(MAX_TABLE_ROWS).itertuples(index=False)):
        parts.append("<tr>")
        for column, value in zip(frame.columns, row, strict=True):
            css = ""
            if (position, column) in strong:
                css = ' class="best"'
            elif column == best_column:
                css = ' class="notranked"' if str(value).startswith("not ranked") else ' class="ranked"'
            parts.append(f"<td{css}>{_cell(value)}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    return head + "".join(parts)


def drop_blank(frame: pd.DataFrame, columns: Sequence[str] = ("variant",)) -> pd.DataFrame:
    """``frame`` without those of ``columns`` that are empty in every row (e.g. ``variant`` for
    single-valued metrics), so tables show only what varies."""
    if frame is None or frame.empty:
        return frame
    blank = [c for c in columns if c in frame.columns
             and frame[c].fillna("").astype(str).str.strip().eq("").all()]  # fmt: skip
    return frame.drop(columns=blank)


def loud_block(lines: Sequence[str]) -> str:
    """Lines that must not be missed (undefined values), in a red box."""
    return "".join(f'<div class="loud">{html.escape(line)}</div>' for line in lines)


def meaning_block(text: str) -> str:
    """A one-line explanation of what a result means, in a blue box."""
    return f'<div class="meaning">{html.escape(text)}</div>'


def table_block(frame: pd.DataFrame, caption: str = "", max_rows: int = MAX_TABLE_ROWS) -> str:
    """An HTML table of ``frame`` (floats to 4 significant digits), truncated to ``max_rows`` rows."""
    head = f"<h3>{html.escape(caption)}</h3>" if caption else ""
    if frame is None or frame.empty:
        return head + '<p class="small">(no rows)</p>'
    shown = frame.head(max_rows)
    body = shown.to_html(
        index=False, na_rep="NaN", float_format=lambda v: f"{v:.4g}", border=0, escape=True
    )
    more = (
        f'<p class="small">{len(frame) - max_rows} more rows in the CSV file.</p>'
        if len(frame) > max_rows
        else ""
    )
    return head + body + more


def verdict_table_block(frame: pd.DataFrame) -> str:
    """The verdict table with the verdict cell coloured by class."""
    if frame is None or frame.empty:
        return '<p class="small">(no metric to test)</p>'
    block = table_block(frame)
    for name in ("order-preserving", "unreliable", "reliable", "insufficient data"):
        css = name.replace(" ", "-")
        block = block.replace(f"<td>{name}</td>", f'<td class="{css}">{name}</td>')
    return block


#: Notes starting with one of these are shown in red (:func:`loud_block`).
LOUD_PREFIXES = ("Undefined values:", "Input-independent attribution:")


def notes_block(notes: Sequence[str]) -> str:
    """Highlighted notes (assumptions, missing inputs); undefined values and out-of-range values in red."""
    return "".join(
        f'<div class="{"loud" if n.startswith(LOUD_PREFIXES) or "outside its range" in n else "note"}">'
        f"{html.escape(n)}</div>"
        for n in notes
    )


def kv_table(values: Mapping[str, object], caption: str = "") -> str:
    """A two-column key/value table."""
    frame = pd.DataFrame({"name": list(values), "value": [str(v) for v in values.values()]})
    return table_block(frame, caption)


def paragraph(text: str) -> str:
    """An escaped paragraph."""
    return f"<p>{html.escape(text)}</p>"


def render(title: str, sections: Sequence[Section], notes: Sequence[str] = ()) -> str:
    """The complete HTML document."""
    toc = "".join(
        f'<li><a href="#s{k}">{html.escape(s.title)}</a></li>' for k, s in enumerate(sections)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        notes_block(notes),
        f"<ul>{toc}</ul>",
    ]
    for k, section in enumerate(sections):
        parts.append(f'<h2 id="s{k}">{html.escape(section.title)}</h2>')
        parts.extend(section.blocks)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write(path: Path, title: str, sections: Sequence[Section], notes: Sequence[str] = ()) -> Path:
    """Write the report to ``path`` (UTF-8) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(title, sections, notes), encoding="utf-8")
    return path
