"""The report section of a published study (``tfxai study``): the published table next to ours, and
which of the study's findings hold.

``tfxai study NAME`` writes ``study.csv`` (one row per cell of the study's published tables and per
finding, for each of our models) and ``study.json`` (the protocol, the data chosen, what was run).
This module only renders them; it computes nothing, so the report and ``study.csv`` always agree.

``study.csv`` columns: ``study, table, row, column, ours, ours_ci_low, ours_ci_high, n, published,
model, note``:

- a **cell** row: ``ours`` is our value of the published cell (``table``, ``row``, ``column``) on
  ``model``, with its bootstrap interval and the number of images (or seeds) it rests on; ``published``
  the study's number (or, where the study gives only a finding, its statement); ``note`` how the cell
  was paired (e.g. published on VGG16, ours on EfficientNet-Lite0);
- a **finding** row (``table == "findings"``): ``row`` names the finding, ``published`` states it,
  ``ours`` is 1 when it holds on ``model``, 0 when it does not, empty when it cannot be tested, and
  ``note`` gives the evidence.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import pandas as pd

from .report import Section, notes_block, paragraph, table_block
from .summary import format_number

FINDINGS = "findings"
HOLDS, FAILS, UNTESTED = "✓ holds", "✗ does not hold", "– not testable"


def _number(value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return out


def ours_text(row: Mapping[str, object]) -> str:
    """``0.251 [0.21, 0.29] (n=5)``; ``n/a`` when undefined."""
    value = _number(row.get("ours"))
    if math.isnan(value):
        return "n/a"
    low, high = _number(row.get("ours_ci_low")), _number(row.get("ours_ci_high"))
    n = _number(row.get("n"))
    text = format_number(value)
    if not (math.isnan(low) or math.isnan(high)):
        text += f" [{format_number(low)}, {format_number(high)}]"
    if not math.isnan(n):
        text += f" (n={int(n)})"
    return text


def published_text(value: object) -> str:
    """A published number with 3 significant digits, or the statement as given."""
    number = _number(value)
    if not math.isnan(number):
        return format_number(number)
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def verdict(value: object) -> str:
    """The finding column: holds (1), does not hold (0), not testable (empty)."""
    number = _number(value)
    if math.isnan(number):
        return UNTESTED
    return HOLDS if number >= 0.5 else FAILS


def side_by_side(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per published cell: ``row``, ``column``, ``published`` and one ``ours: <model>``
    column per model (cells a model was not paired with are blank)."""
    if cells.empty:
        return pd.DataFrame(columns=["row", "column", "published"])
    data = cells.copy()
    data["model"] = data["model"].fillna("").astype(str)
    data["ours_text"] = [ours_text(r) for r in data.to_dict("records")]
    data["published_text"] = [published_text(v) for v in data["published"]]
    order = list(dict.fromkeys(zip(data["row"], data["column"], data["published_text"],
                                   strict=True)))
    models = [m for m in dict.fromkeys(data["model"]) if m]
    rows = []
    for row, column, published in order:
        part = data[(data["row"] == row) & (data["column"] == column)
                    & (data["published_text"] == published)]
        entry = {"row": row, "column": column, "published": published}
        for model in models:
            found = part.loc[part["model"] == model, "ours_text"]
            entry[f"ours: {model}"] = found.iloc[0] if len(found) else ""
        if not models:
            entry["ours"] = "n/a (no model paired)"
        rows.append(entry)
    return pd.DataFrame(rows)


def findings_table(findings: pd.DataFrame) -> pd.DataFrame:
    """``finding, published, model, verdict, evidence`` per finding × model."""
    if findings.empty:
        return pd.DataFrame(columns=["finding", "published", "model", "verdict", "evidence"])
    return pd.DataFrame({
        "finding": findings["row"].astype(str),
        "published": [published_text(v) for v in findings["published"]],
        "model": findings["model"].fillna("").astype(str),
        "verdict": [verdict(v) for v in findings["ours"]],
        "evidence": findings["note"].fillna("").astype(str) if "note" in findings.columns else "",
    })


def _notes(cells: pd.DataFrame) -> list[str]:
    if "note" not in cells.columns:
        return []
    return [n for n in dict.fromkeys(cells["note"].fillna("").astype(str)) if n]


def _protocol_blocks(record: Mapping[str, object]) -> list[str]:
    blocks = []
    source = record.get("source")
    if source:
        blocks.append(paragraph(f"Source: {source}"))
    for key, label in (("protocol", "Protocol"), ("data", "Data"), ("run", "What was run")):
        value = record.get(key)
        if isinstance(value, Sequence) and not isinstance(value, str) and value:
            items = "".join(f"<li>{html.escape(str(v))}</li>" for v in value)
            blocks.append(f"<p><b>{label}</b></p><ul>{items}</ul>")
        elif value:
            blocks.append(paragraph(f"{label}: {value}"))
    if record.get("quick"):
        blocks.append(notes_block([
            "Quick setting (--quick): fewer images and models than the study; the numbers show "
            "that the pipeline runs, not what the study would give."]))
    return blocks


def study_sections(study: pd.DataFrame | None, records: Sequence[Mapping[str, object]] = ()
                   ) -> list[Section]:
    """One report section per study found in ``study.csv``."""
    if study is None or study.empty:
        return []
    by_name = {str(r.get("study")): r for r in records if r.get("study")}
    sections = []
    for name, rows in study.groupby("study", sort=False):
        record = by_name.get(str(name), {})
        blocks = [paragraph(
            "The study's published values next to ours. Ours: mean [95% bootstrap interval] "
            "(n images, or seeds for ROAR) on each of our models; a published value comes from "
            "the study's own models and data, so a cell compares orders of magnitude and "
            "orderings, not equality. The published numbers and their sources are in the "
            "package file tfxai/studies/published.json.")]
        blocks.extend(_protocol_blocks(record))
        findings = rows[rows["table"] == FINDINGS]
        if not findings.empty:
            blocks.append(table_block(findings_table(findings),
                                             "Findings: do they hold on our models?"))
        for table, cells in rows[rows["table"] != FINDINGS].groupby("table", sort=False):
            blocks.append(table_block(side_by_side(cells), f"{table}: published and ours"))
            notes = _notes(cells)
            if notes:
                blocks.append("".join(f'<p class="small">{html.escape(n)}</p>' for n in notes))
        title = str(record.get("title") or name)
        sections.append(Section(f"Study: {title}", blocks))
    return sections
