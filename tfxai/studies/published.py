"""The published numbers and findings of the studies: ``published.json``, one file in the package.

Read without TensorFlow. Each study has a ``source`` (the work, the table number where known, where
in tfxai's reference the values come from), the ``models`` the study used, ``tables`` (rows ×
columns of published values) and ``findings`` (statements, for what the reference gives only in
words).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["published", "published_value", "source_text", "studies"]


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    text = resources.files("tfxai.studies").joinpath("published.json").read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def studies() -> list[str]:
    """The study names with published data."""
    return sorted(_data())


def published(study: str) -> dict[str, Any]:
    """The published record of ``study`` (KeyError naming the known studies when unknown)."""
    data = _data()
    if study not in data:
        raise KeyError(f"no published data for {study!r}; known: {', '.join(sorted(data))}")
    return data[study]


def published_value(study: str, table: str, row: str, column: str) -> float:
    """One published number."""
    return float(published(study)["tables"][table]["values"][row][column])


def source_text(study: str) -> str:
    """One line: the work, the table (or that it is not numbered) and where the values come from."""
    src = published(study)["source"]
    table = f"table {src['table']}" if src.get("table") else ""
    parts = [src["work"], table, src.get("where", "")]
    if src.get("note"):
        parts.append(src["note"])
    return "; ".join(p for p in parts if p)
