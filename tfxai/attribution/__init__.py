"""Attribution methods: one module per family, each registering its classes on import.

Every module of this package is imported here, so adding a method means adding a module.
"""

import importlib
import pkgutil

from tfxai.attribution.base import (
    Attributer,
    Param,
    get_attributer,
    list_methods,
    method_info,
    register,
    register_tunnel,
    to_map,
)

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_") and _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "Attributer", "Param", "get_attributer", "list_methods", "method_info", "register",
    "register_tunnel", "to_map",
]
