"""The method registry: every method module of :mod:`tfxai.attribution` registers its classes
(:func:`~tfxai.attribution.base.register`) when imported; this module imports them all and builds
methods by id. Method modules import :mod:`~tfxai.attribution.base` only, never this module, so
the dependency goes one way."""

from __future__ import annotations

from typing import Any

from tfxai.attribution.base import METHODS, TUNNELS, Attributer
from tfxai.registries import import_package_modules
from tfxai.vocabulary import aliases_for

__all__ = ["get_attributer", "list_methods", "method_info"]

#: modules of the package that hold no method
_NOT_METHODS = ("base", "registry")


def _ensure_loaded() -> None:
    """Import every method module of the package once (each registers its classes)."""
    import_package_modules(__name__, __file__, _NOT_METHODS)


def list_methods() -> list[str]:
    """Registered method ids; wrap any of them with ``+smoothgrad`` etc."""
    _ensure_loaded()
    return sorted(METHODS)


def method_info() -> list[dict[str, Any]]:
    """One dict per method and tunnel: name, summary, parameters with defaults."""
    _ensure_loaded()
    rows = []
    for name, cls in sorted({**METHODS, **{f"+{k}": v for k, v in TUNNELS.items()}}.items()):
        spec = getattr(cls, "params_spec", {})
        rows.append({
            "name": name,
            "summary": getattr(cls, "summary", ""),
            "params": {k: p.default for k, p in spec.items()},
            "docs": {k: p.doc for k, p in spec.items()},
        })
    return rows


def get_attributer(name: str, backbone: Any, **params: Any) -> Attributer:
    """Build a method by id; ``"<method>+<tunnel>"`` wraps it in a noise tunnel.

    For a wrapped method, parameters named in the tunnel's ``params_spec`` go to the tunnel and the
    rest to the inner method. ``inner={...}`` gives the inner method's parameters explicitly, for
    the names both declare (``gradient_shap+smoothgrad``: the tunnel's ``n_samples`` and
    ``sigma`` are keywords, gradient SHAP's go in ``inner``), as the recorded parameters nest
    them.
    """
    _ensure_loaded()
    base, _, tunnel = name.partition("+")
    if base not in METHODS:
        raise ValueError(f"unknown method {base!r}; known methods: {', '.join(sorted(METHODS))}")
    if not tunnel:
        return METHODS[base](backbone, **params)
    if tunnel not in TUNNELS:
        raise ValueError(
            f"unknown noise tunnel {tunnel!r} in {name!r}; known: {', '.join(sorted(TUNNELS)) or 'none'}"
        )
    tcls = TUNNELS[tunnel]
    tspec = set(getattr(tcls, "params_spec", {})) | set(aliases_for(tunnel))
    inner_params = {**dict(params.pop("inner", None) or {}),
                    **{k: v for k, v in params.items() if k not in tspec}}
    inner = METHODS[base](backbone, **inner_params)
    return tcls(inner, **{k: v for k, v in params.items() if k in tspec})
