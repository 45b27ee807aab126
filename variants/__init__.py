"""Interchangeable attention and block implementations behind one registry.

Every module in this package is imported on first use of the package, so adding a variant is
writing one file here that calls ``register_attention`` or ``register_block``. Variants that
live elsewhere come in as plugins (see ``variants.plugins``).
"""

from __future__ import annotations

import importlib
import pkgutil

from attnbench.variants.registry import (
    Capabilities,
    Case,
    Variant,
    get,
    list_variants,
    not_supported_reasons,
    register_attention,
    register_block,
    unregister,
)

_INFRASTRUCTURE = {"registry", "common", "plugins", "memory", "patterns", "pattern_families"}


def _import_builtin_variants() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name not in _INFRASTRUCTURE and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


_import_builtin_variants()

__all__ = ["Capabilities", "Case", "Variant", "get", "list_variants", "not_supported_reasons",
           "register_attention", "register_block", "unregister"]
