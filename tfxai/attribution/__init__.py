"""Attribution methods: one module per family, each registering its classes on import.

Every module of this package is imported here (:mod:`tfxai.attribution.registry`), so adding
a method means adding a module.
"""

from tfxai.attribution.base import Attributer, Param, register, register_tunnel, to_map
from tfxai.attribution.registry import _ensure_loaded, get_attributer, list_methods, method_info

_ensure_loaded()

__all__ = [
    "Attributer", "Param", "get_attributer", "list_methods", "method_info", "register",
    "register_tunnel", "to_map",
]
