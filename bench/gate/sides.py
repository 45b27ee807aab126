"""The driver's end of a side: what a side is, and the handle on its worker subprocess.

A worker (``python -m attnbench.gate.worker TREE``) answers one JSON request per line; the driver
writes a request, waits for the answer (with a timeout) and turns a dead or silent worker into
a ``WorkerError`` that carries the end of the worker's stderr.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnbench.throughput.timing import pinned_cpus
from attnbench.throughput.worker import MALLOC_ENV

DRIVER_ROOT = Path(__file__).resolve().parents[2]  # the tree this code runs from


# One thread, and the benchmark workers' memory policy (``throughput.worker.MALLOC_ENV``: why).
# By default glibc adapts its mmap threshold to a process's allocation history, so whether a
# large tensor costs fresh zeroed pages on every call differs between two processes running
# the same code: same-tree (A/A) comparisons measured 0.82x-1.9x without a fixed policy and
# within 0.86x-1.07x with one.
FIXED_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **MALLOC_ENV}


class WorkerError(RuntimeError):
    """A side's worker could not start or died; the message carries the end of its stderr."""


@dataclass(frozen=True)
class SideSpec:
    """One side of the comparison: a source tree and the plugins to load into it."""

    label: str  # "base" or "head"
    root: Path
    plugins: tuple[str, ...] = ()
    description: str = ""  # e.g. "3f2c1ab fix masking", for the summary header


class SideWorker:
    """The driver's handle on one ``attnbench.gate.worker`` subprocess.

    Every side's worker runs on the same one CPU (``throughput.timing.pinned_cpus``): the
    driver asks one side at a time, so they never compete for it, and a side cannot sit on a
    faster or slower CPU than the other for its whole life. Unpinned, identical trees
    measured 1.25x apart on a small sdpa case in both the first look and the fresh pair of
    processes (a false regression in CI). The two vCPUs of the shared machines run fast or
    slow independently: timed at the same moments, a GQA sdpa call took 8.8 ms on one and
    11.2 ms on the other, and 10.7 ms against 8.4 ms eight seconds later.

    Creating it starts the process; ``wait_ready()`` waits until the side's variants are
    imported (so two workers can start at once: importing torch takes seconds).
    """

    def __init__(self, side: SideSpec, timeout_s: float = 600.0) -> None:
        self.side, self.timeout_s = side, timeout_s
        self.stderr = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (closed by close())
        env = {**os.environ, **FIXED_ENV,
               "PYTHONPATH": os.pathsep.join(
                   [str(DRIVER_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
        cmd = [sys.executable, "-m", "attnbench.gate.worker", str(side.root)]
        for plugin in side.plugins:
            cmd += ["--plugin", plugin]
        cpus = pinned_cpus(1)
        self.proc = subprocess.Popen(cmd, cwd=DRIVER_ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr,
                                     preexec_fn=(lambda: os.sched_setaffinity(0, cpus))
                                     if cpus else None)

    def wait_ready(self) -> SideWorker:
        ready = self._read()
        if not ready.get("ok"):
            self.close()
            raise WorkerError(f"{self.side.label} worker ({self.side.root}) failed to start: "
                              f"{ready.get('error')}")
        return self

    def _stderr_tail(self) -> str:
        if self.stderr.closed:
            return ""
        self.stderr.seek(0)
        lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return " | ".join(lines[-5:])

    def _read(self) -> dict[str, Any]:
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout_s)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            why = (f"gave no answer within {self.timeout_s:.0f} s" if self.proc.poll() is None
                   else f"exited with code {self.proc.returncode}")
            tail = self._stderr_tail()
            self.close()
            raise WorkerError(f"{self.side.label} worker ({self.side.root}) {why}: {tail}")
        return json.loads(line)

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        try:
            self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the pipe is already closed
            raise WorkerError(f"{self.side.label} worker is gone: {self._stderr_tail()}") from None
        answer = self._read()
        if not answer.get("ok") and "error" in answer:
            raise WorkerError(f"{self.side.label} worker, {op} {args.get('key', '')}: "
                              f"{answer['error']}")
        return answer

    def close(self) -> None:
        """End the process (politely, then by force) and drop its stderr; idempotent."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"op": "exit"}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()

    def __enter__(self) -> SideWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
