"""attnbench: verify and benchmark attention and Transformer-block variants.

The installed package is this folder (``bench/`` in the repository) with ``variants/``,
``kernels/`` and ``reports/`` mapped under it (pyproject's package-dir), so a wheel adds only
``attnbench`` to site-packages. In a checkout (editable install, or the root's
``attnbench.py`` without installing) the three live beside this folder, so the repository
root joins the package path.

Public API, imported on first use so that ``attnbench --help`` does not load torch::

    from attnbench import register_attention, Capabilities, Case, get, list_variants
    from attnbench import verify_attention, check_agreement, load_variants
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

if not (Path(__file__).parent / "variants").is_dir():  # a checkout: siblings at the root
    __path__.append(str(Path(__file__).resolve().parent.parent))  # noqa: F821 (package path)

# name -> module that defines it; resolved by __getattr__ (PEP 562).
_API = {
    **dict.fromkeys(["Capabilities", "Case", "Variant", "get", "list_variants",
                     "not_supported_reasons", "register_attention", "register_block",
                     "unregister", "parse_dtype", "dtype_name"], "attnbench.variants.registry"),
    **dict.fromkeys(["load_plugins", "load_variants"], "attnbench.variants.plugins"),
    **dict.fromkeys(["verify_attention", "verify_blocks", "check_agreement", "CheckResult"],
                    "attnbench.verify"),
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'attnbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
