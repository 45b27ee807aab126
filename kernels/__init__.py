"""Our own Triton kernels (FlashAttention-2 forward and backward).

This package must import on any machine, with or without triton or a GPU: nothing here imports
triton. The kernels live in `kernels.flash_fwd` / `kernels.flash_bwd` (which do import triton)
and the public entry points in `kernels.flash_attn`, which imports them lazily.

Whether Triton runs compiled (GPU) or interpreted (CPU, `TRITON_INTERPRET=1`) is decided when the
`@triton.jit` decorators execute, i.e. when `kernels.flash_fwd` is first imported. Set the
environment variable before that import.
"""

from __future__ import annotations

import importlib.util
import os
import sys

__all__ = ["interpreter_active", "triton_available"]


def interpreter_active() -> bool:
    """True when Triton kernels run in the CPU interpreter (`TRITON_INTERPRET=1`)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def triton_available() -> str | None:
    """None when our Triton kernels can run here; otherwise a human-readable reason why not."""
    if importlib.util.find_spec("triton") is None:
        return "triton not installed"
    fwd = sys.modules.get("attnbench.kernels.flash_fwd")
    if fwd is not None and fwd.INTERPRETED != interpreter_active():
        # The jit decorators already ran in the other mode; they cannot be switched afterwards.
        return (
            "kernels were imported with TRITON_INTERPRET="
            f"{'1' if fwd.INTERPRETED else 'unset'}; the mode cannot change after import"
        )
    if interpreter_active():
        return None
    try:
        import torch
    except ImportError:
        return "torch not installed"
    if not torch.cuda.is_available():
        return "no CUDA device and TRITON_INTERPRET is not 1"
    return None
