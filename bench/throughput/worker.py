"""Measurements run in a worker subprocess, so every case has a hard time limit.

Why a process and not a thread or a signal: a call that never returns (a hung kernel, a
deadlocked plugin, an infinite loop in C++) cannot be stopped from inside the process: signal
handlers run only between Python bytecodes and a thread cannot be killed. Killing a process
always works, and it also contains a segfault or the kernel's OOM killer. One long-lived
worker serves case after case (torch import and CUDA initialisation are paid once); when a case
runs past its limit or the worker dies, the worker is killed and a fresh one starts for the
next case. The worker ignores Ctrl-C (the parent owns the interruption and kills it) and asks
Linux to kill it if the parent dies, so no orphan keeps running after a ``kill``.

The worker's memory policy (``MALLOC_ENV``) makes every worker allocate the same way, whatever
it ran before. With glibc's default *dynamic* mmap threshold, whether a 16 MiB score matrix
comes from the heap or from a fresh mmap (page faults on every call) depends on the process's
history: the same naive case measured 18 ms in one process and 41 ms in another. So the
threshold is fixed (32 MiB, glibc's maximum) and the heap is never trimmed. That still left
tensors of 32 MiB and more (naive's scores at B1 H2 N2048) to history: glibc serves them from
the heap only if its top has room, else from a fresh mmap, so the worker that had run the
memory sweep timed naive N2048 at 42 ms and the two others at 60-97 ms, in every run. Two more
settings close that: ``MALLOC_TOP_PAD_`` (1 GiB) makes the heap grow in 1 GiB steps, so large
tensors come from the heap and their pages are faulted in once, and PyTorch's
``THP_MEM_ALLOC_ENABLE`` aligns tensors of 2 MiB and more to 2 MiB and asks for transparent
huge pages (``madvise``), so every process gets the same page layout. Six fresh processes
timing naive N2048 D64: 101-102 ms with the threshold alone, 43-60 ms with the top pad,
41-47 ms with both. The top pad is address space, not resident memory: pages are touched only
when a case uses them.

Variants must be importable in the worker: the built-ins, ``--plugin`` modules, entry points.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
              "MALLOC_TRIM_THRESHOLD_": str(16 * 2**30),
              "MALLOC_TOP_PAD_": str(2**30),
              "THP_MEM_ALLOC_ENABLE": "1"}  # a user's own setting wins
START_TIMEOUT_S = 300.0  # importing torch and plugins, initialising CUDA
REASON_CHARS = 300


def describe(exc: BaseException) -> str:
    """A one-line reason for an error row: type and first line of the message."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".strip().rstrip(":")
    if "out of memory" in text.lower() or "can't allocate memory" in text.lower():
        text = f"out of memory ({text})"
    return text[:REASON_CHARS]


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):  # PR_SET_PDEATHSIG = 1
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _serve(conn: Any, plugins: list[str], threads: int,
           cpus: tuple[int, ...] | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if cpus:  # before torch starts its threads, so they inherit the mask
        os.sched_setaffinity(0, cpus)
    import torch

    torch.set_num_threads(threads)
    from attnbench.variants.plugins import load_variants

    load_variants(plugins)
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        fn, args = message
        try:
            reply = ("ok", fn(*args))
        except Exception as exc:  # every failure of a case becomes its error row
            reply = ("error", describe(exc))
            traceback.clear_frames(exc.__traceback__)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        conn.send(reply)


class Worker:
    """A restartable measurement process: ``call(fn, args, timeout)`` runs ``fn(*args)`` there.

    ``fn`` must be a module-level function (it is pickled by name). Returns ("ok", result) or
    ("error", reason); a timeout or a dead worker is an "error" too, and the next call gets a
    fresh worker.
    """

    def __init__(self, plugins: list[str], threads: int,
                 cpus: tuple[int, ...] | None = None) -> None:
        self.plugins, self.threads, self.cpus = list(plugins), threads, cpus
        self._process: Any = None
        self._conn: Any = None
        self.starts = 0

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that may hold CUDA or threads
        parent, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child, self.plugins, self.threads,
                                                          self.cpus),
                                    daemon=True, name="attnbench-worker")
        saved = {k: os.environ.get(k) for k in MALLOC_ENV}
        os.environ.update({k: v for k, v in MALLOC_ENV.items() if saved[k] is None})
        try:  # the child inherits the environment at start; the parent's is restored
            self._process.start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
        child.close()
        self._conn, self.starts = parent, self.starts + 1
        status, detail = self._receive(START_TIMEOUT_S, "starting")
        if status != "ready":
            self.close()
            raise RuntimeError(f"benchmark worker failed to start: {detail}")

    def _receive(self, timeout: float, what: str) -> tuple[str, Any]:
        if not self._conn.poll(timeout):
            self.close()
            return "error", f"exceeded the time limit of {timeout:g} s while {what} " \
                            "(worker process killed)"
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            self._process.join(5)
            code = self._process.exitcode
            self.close()
            cause = f"killed by signal {-code}" if code is not None and code < 0 else \
                f"exit code {code}"
            hint = " (SIGKILL: often the kernel's out-of-memory killer)" if code == -9 else ""
            return "error", f"worker process died while {what}: {cause}{hint}"

    def call(self, fn: Callable[..., Any], args: tuple, timeout: float) -> tuple[str, Any]:
        if self._process is None or not self._process.is_alive():
            try:
                self._start()
            except RuntimeError as exc:  # recorded as this case's error; the next case retries
                return "error", str(exc)
        try:
            self._conn.send((fn, args))
        except (BrokenPipeError, OSError) as exc:
            self.close()
            return "error", f"worker process unreachable: {exc}"
        return self._receive(timeout, "measuring")

    def close(self) -> None:
        """Stop the worker now (it may be stuck in C code, so it is killed, not asked)."""
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(10)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None
