"""Loading variants from outside this package: `--plugin MODULE`, ATTNBENCH_PLUGINS, entry points.

A plugin is any importable module whose import registers variants with the decorators in
``attnbench.variants.registry`` (``from attnbench import register_attention``). Loading is
idempotent per module, so a module named twice (flag and environment) registers once.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

from attnbench.errors import AttnbenchError

ENTRY_POINT_GROUP = "attnbench.variants"
ENV_VAR = "ATTNBENCH_PLUGINS"

_loaded: set[str] = set()


class PluginError(AttnbenchError, RuntimeError):
    """A plugin module could not be imported; the message names it and the cause."""


def load_plugin(module: str) -> None:
    if module in _loaded:
        return
    try:
        importlib.import_module(module)
    except Exception as exc:  # a broken plugin must say which one broke
        raise PluginError(f"plugin {module!r} failed to load: {type(exc).__name__}: {exc}") from exc
    _loaded.add(module)


def load_plugins(modules: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Load the named modules, those in ATTNBENCH_PLUGINS and the entry-point group.

    Returns the module names loaded, in order, for the provenance record.
    """
    names = [m.strip() for m in os.environ.get(ENV_VAR, "").split(",") if m.strip()]
    names += list(modules)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        names.append(ep.value.split(":")[0])
    for name in names:
        load_plugin(name)
    return names


def load_variants(plugins: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Import the built-in variants, then the plugins (``load_plugins``); returns the plugin
    modules loaded. Every entry point (CLI, benchmark workers, sweep jobs) starts here."""
    importlib.import_module("attnbench.variants")  # registers the built-ins
    return load_plugins(plugins)
