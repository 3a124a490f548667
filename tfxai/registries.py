"""What the method and metric registries share: importing every module of their package, so that
each registers its classes (:mod:`tfxai.attribution.registry`, :mod:`tfxai.evaluation.registry`)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Collection
from pathlib import Path

__all__ = ["import_package_modules"]

#: packages whose modules are all imported (the registries ask on every lookup)
_LOADED: set[str] = set()


def import_package_modules(registry_module: str, registry_file: str, skip: Collection[str]) -> None:
    """Import every module of the package of ``registry_module`` (whose file is
    ``registry_file``), except private ones (``_name``) and those in ``skip``; modules already
    imported are not run again."""
    package = registry_module.rpartition(".")[0]
    if package in _LOADED:  # once per process: no directory listing on every lookup
        return
    for mod in pkgutil.iter_modules([str(Path(registry_file).parent)]):
        if not mod.name.startswith("_") and mod.name not in skip:
            importlib.import_module(f"{package}.{mod.name}")
    _LOADED.add(package)
