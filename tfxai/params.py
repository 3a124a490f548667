"""Parameters of methods and metrics: declared with :class:`Param`, validated at construction
with errors that name the owner and the parameter, recorded as canonical JSON.

TensorFlow-free: the CLI, the studies and the analysis read parameter specs without importing it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfxai.vocabulary import aliases_for, canonical_names

__all__ = ["Param", "above", "at_least", "canonical_params", "json_default", "validate_params",
           "SEED_PARAM", "CHUNK_PARAM"]

@dataclass(frozen=True)
class Param:
    """A method parameter: default, type, allowed values or check, and a one-line doc.

    ``hashed=False`` marks execution parameters (chunk sizes) that do not change the result and
    are therefore not part of the recorded ``method_params``.
    """

    default: Any
    kind: type | tuple[type, ...] = object
    doc: str = ""
    choices: Sequence[Any] | None = None
    check: Callable[[Any], bool] | None = None
    check_doc: str = ""
    hashed: bool = True
    nullable: bool = False

    def validate(self, method: str, name: str, value: Any) -> Any:
        if value is None and (self.nullable or self.default is None):
            return None
        value = _coerce(value, self.kind)
        if not _isinstance(value, self.kind):
            raise ValueError(
                f"{method}: parameter {name!r} must be {_kind_name(self.kind)}, got {value!r}"
            )
        if self.choices is not None and value not in self.choices:
            raise ValueError(
                f"{method}: parameter {name!r} must be one of {list(self.choices)}, got {value!r}"
            )
        if self.check is not None and not self.check(value):
            raise ValueError(
                f"{method}: parameter {name!r} {self.check_doc or 'is invalid'}, got {value!r}"
            )
        return value


def above(bound: float) -> dict[str, Any]:
    """``check``/``check_doc`` keyword arguments of a :class:`Param` that must be > ``bound``."""
    return {"check": lambda v: v > bound, "check_doc": f"must be > {bound}"}


def at_least(bound: float) -> dict[str, Any]:
    """``check``/``check_doc`` keyword arguments of a :class:`Param` that must be >= ``bound``."""
    return {"check": lambda v: v >= bound, "check_doc": f"must be >= {bound}"}


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _isinstance(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds and object not in kinds:
        return False
    return isinstance(value, kinds)


def _coerce(value: Any, kind: type | tuple[type, ...]) -> Any:
    """Accept ints for floats and numpy scalars; strings from the CLI are parsed before this."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, np.generic):
        value = value.item()
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def canonical_params(params: dict[str, Any]) -> str:
    """Canonical JSON of a parameter dict (sorted keys, no spaces): the recorded ``*_params``."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=json_default)


def json_default(obj: Any) -> Any:
    """JSON for numpy scalars and arrays (and ``str`` of anything else)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def validate_params(
    owner: str, spec: dict[str, Param], given: dict[str, Any]
) -> dict[str, Any]:
    """Defaults merged with ``given``; unknown names and bad values raise ``ValueError``.

    ``owner``'s aliases (:mod:`tfxai.vocabulary`: shap's ``nsamples``, lime's ``hide_color``...)
    are renamed to the canonical names first."""
    given = canonical_names(owner, given)
    unknown = sorted(set(given) - set(spec))
    if unknown:
        known = ", ".join(sorted(spec)) or "none"
        aliases = ", ".join(f"{a} → {c}" for a, c in sorted(aliases_for(owner).items()))
        also = f" (also accepted: {aliases})" if aliases else ""
        raise ValueError(f"{owner}: unknown parameter(s) {unknown}; known parameters: {known}"
                         f"{also}")
    return {k: p.validate(owner, k, given.get(k, p.default)) for k, p in spec.items()}


SEED_PARAM = Param(0, int, "base random seed", **at_least(0))

#: the chunk size of methods that batch their own work (not recorded: it changes no value)
CHUNK_PARAM = Param(16, int, "images per internal forward/backward chunk", **above(0), hashed=False)
