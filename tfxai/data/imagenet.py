"""ImageNet-1k class index: WordNet synsets ↔ class indices ↔ names.

The table ships as ``imagenet_class_index.json`` (``{"index": [synset, name]}``, the content of Keras'
class index, whose class order is the sorted synset order), so nothing is downloaded.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

__all__ = ["class_index", "synset_to_index", "index_to_synset", "class_name", "parse_label"]


@lru_cache(maxsize=1)
def class_index() -> dict[int, tuple[str, str]]:
    """``{index: (synset, name)}`` for the 1000 ImageNet classes."""
    text = resources.files("tfxai.data").joinpath("imagenet_class_index.json").read_text()
    return {int(k): (v[0], v[1]) for k, v in json.loads(text).items()}


@lru_cache(maxsize=1)
def _synset_map() -> dict[str, int]:
    return {syn: idx for idx, (syn, _) in class_index().items()}


def synset_to_index(synset: str) -> int | None:
    """Class index of a WordNet synset id such as ``n01751748``; ``None`` if not an ImageNet-1k class."""
    return _synset_map().get(synset.strip())


def index_to_synset(index: int) -> str:
    return class_index()[int(index)][0]


def class_name(index: int) -> str:
    """Human-readable name of an ImageNet class index, or ``class_<i>`` outside 0..999."""
    entry = class_index().get(int(index))
    return entry[1] if entry else f"class_{int(index)}"


def parse_label(value: str | int) -> int | None:
    """A label given as a class index (``"65"``) or a synset (``"n01751748"``) → class index.

    Returns ``None`` for an unknown synset. Raises ``ValueError`` for anything else.
    """
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if text.startswith("n") and text[1:].isdigit():
        return synset_to_index(text)
    raise ValueError(f"label {value!r} is neither a class index nor a WordNet synset id")
