"""Labels from file names: a pattern such as ``sim_{synset}_`` read against each image's file stem.

A pattern is literal text with one placeholder:

* ``{synset}``: a WordNet synset id (``n`` and 8 digits), mapped to its ImageNet-1k class index;
  a synset outside the 1000 classes gives no label;
* ``{index}``: a class index (digits);
* ``{label}``: either of the two.

The pattern is matched at the start of the stem (``sim_{synset}_`` matches
``sim_n01440764_1234``); ``*`` matches any text, and a trailing ``$`` anchors the end. A stem that
does not match gives no label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tfxai.data.imagenet import synset_to_index

__all__ = ["NameLabel", "NamePattern", "compile_name_pattern"]

_PLACEHOLDERS = {
    "synset": r"(?P<value>n\d{8})",
    "index": r"(?P<value>\d+)",
    "label": r"(?P<value>n\d{8}|\d+)",
}


@dataclass(frozen=True)
class NameLabel:
    """What a pattern read from one stem: ``matched``, the text found and the class index
    (None when the stem does not match or the synset is not an ImageNet-1k class)."""

    matched: bool
    text: str | None
    label: int | None


@dataclass(frozen=True)
class NamePattern:
    """A compiled file-name pattern (:func:`compile_name_pattern`)."""

    pattern: str
    regex: re.Pattern[str]

    def read(self, stem: str) -> NameLabel:
        found = self.regex.match(stem)
        if found is None:
            return NameLabel(False, None, None)
        text = found.group("value")
        label = synset_to_index(text) if text.startswith("n") else int(text)
        return NameLabel(True, text, label)



def compile_name_pattern(pattern: str) -> NamePattern:
    """Compile a pattern (module docstring).

    Raises:
        ValueError: no placeholder, more than one, or an unknown one (the message names them).
    """
    text = str(pattern)
    names = re.findall(r"\{([^{}]*)\}", text)
    if len(names) != 1:
        raise ValueError(
            f"label pattern {pattern!r} needs exactly one placeholder ({{synset}}, {{index}} or "
            f"{{label}}), e.g. 'sim_{{synset}}_'; found {len(names)}"
        )
    if names[0] not in _PLACEHOLDERS:
        raise ValueError(f"label pattern {pattern!r}: unknown placeholder {{{names[0]}}}; use "
                         "{synset}, {index} or {label}")
    anchored = text.endswith("$")
    body = text[:-1] if anchored else text
    head, _, tail = body.partition("{" + names[0] + "}")

    def literal(part: str) -> str:
        return ".*".join(re.escape(p) for p in part.split("*"))

    regex = literal(head) + _PLACEHOLDERS[names[0]] + literal(tail) + ("$" if anchored else "")
    return NamePattern(text, re.compile(regex))
