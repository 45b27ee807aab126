"""Process-wide set-up that must happen before any Triton kernel is defined.

``TRITON_INTERPRET=1`` is read when a ``@triton.jit`` decorator runs, so it has to be in the
environment before ``kernels`` is imported. The CLI and the test configuration both call
``configure_triton()`` first thing, and nothing else sets it.
"""

from __future__ import annotations

import os

import torch


def configure_triton() -> str:
    """Use the Triton interpreter when there is no CUDA device. Returns the mode in words."""
    if "TRITON_INTERPRET" in os.environ:
        return "interpreter" if os.environ["TRITON_INTERPRET"] == "1" else "compiled"
    if torch.cuda.is_available():
        return "compiled"
    os.environ["TRITON_INTERPRET"] = "1"
    return "interpreter"
