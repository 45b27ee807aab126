"""The report's sections, one module each, registered with an order key.

A section is a function ``build(bundle) -> Section`` decorated with
``@register_section(order)``; the report shows the registered sections sorted by that key.
Numbers ("5. Throughput"), anchors and figure file names ("05-throughput-fwd.png") are
assigned when the report is assembled (``document.number``), never written in a builder, so
adding a section is one new module in this folder: ``builders()`` finds it without a list
to edit. Keys leave gaps (10, 20, ...) so a section can go between two others.

The summary (``reports/summary.py``) registers the same way; it lives beside the renderers
because it is the page's front matter.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from attnbench.reports.document import Section
    from attnbench.reports.load import Bundle

Builder = Callable[["Bundle"], "Section"]
OUTSIDE = ("attnbench.reports.summary",)  # registering modules that live outside this folder


@dataclass(frozen=True)
class Registered:
    order: float
    name: str  # module.function, for error messages
    build: Builder


_REGISTRY: dict[str, Registered] = {}


def register_section(order: float) -> Callable[[Builder], Builder]:
    """Register ``build`` as a report section at position ``order`` (lower comes first)."""
    def register(build: Builder) -> Builder:
        name = f"{build.__module__}.{build.__qualname__}"
        taken = [r.name for r in _REGISTRY.values() if r.order == order and r.name != name]
        if taken:
            raise ValueError(f"report section {name}: order {order} is already taken by "
                             f"{taken[0]}; choose a free key")
        _REGISTRY[name] = Registered(order, name, build)
        return build
    return register


def builders() -> list[Builder]:
    """Every registered section builder, in reading order (imports this folder's modules)."""
    for module in pkgutil.iter_modules(__path__):  # noqa: F821 (package path)
        importlib.import_module(f"{__name__}.{module.name}")
    for name in OUTSIDE:
        importlib.import_module(name)
    return [r.build for r in sorted(_REGISTRY.values(), key=lambda r: r.order)]
