"""The methods of a study run with the background set of its expected-gradients method
(``gradient_shap`` in Erdem 2021, ``shap`` in Gattas 2020) pointed at a folder of images that are
never evaluated (:func:`~tfxai.studies.runs.background_folder`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tfxai.studies.data import DataChoice
from tfxai.studies.runs import background_folder

__all__ = ["with_background"]


def with_background(methods: Mapping[str, Mapping[str, Any]], method: str, data: DataChoice,
                    out: Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """A copy of ``methods`` whose ``method`` (when chosen) takes its ``background`` from a folder
    beside the evaluated images of ``data`` (written under ``out`` when needed), and the
    description of that folder (None when ``method`` is not chosen)."""
    chosen = {m: dict(p) for m, p in methods.items()}
    if method not in chosen:
        return chosen, None
    folder, what = background_folder(data.images, out)
    chosen[method]["background"] = folder
    return chosen, what
