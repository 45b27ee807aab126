"""The compile report of our Triton kernels (``attnbench kernels --json``).

Reads ``kernels.json`` (schema attnbench-kernels/1) from any results directory of the report.
It is measured without a GPU: every kernel and autotune config compiled for sm_80 / sm_90 with
the specialisation of a real launch, read off ptxas and the disassembly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from attnbench.reports.document import Cell, Note, Section, fmt, not_measured, table
from attnbench.reports.load import Bundle
from attnbench.reports.sections import register_section

FILE = "kernels.json"
COLUMNS = ["arch", "kernel", "dtype", "D", "causal", "config", "registers", "spill st/ld (B)",
           "shared (KiB)", "tensor-core ops", "main loop (SASS)"]


def find_report(bundle: Bundle) -> dict[str, Any] | None:
    """The first kernels.json in (or beside) the bundle's results directories."""
    for run in bundle.runs:
        for folder in (Path(run.path), Path(run.path).parent):
            path = folder / FILE
            if path.exists():
                return json.loads(path.read_text())
    return None


def build_from(report: dict[str, Any] | None) -> Section:
    section = Section("kernels", "Triton kernels compiled for the GPU", (
        "One row per kernel and autotune config the autotuner may try on that GPU. Registers "
        "per thread (255 is the ceiling); spill bytes above 0 mean local-memory traffic in the "
        "loop; the main loop is the unmasked key loop's SASS instruction count (fewer is "
        "leaner). Errors (no compile, shared memory over the device limit) come first."))
    if report is None:
        section.items.append(not_measured("kernel compile report",
                                          f"no {FILE}; run attnbench kernels --json "
                                          f"RESULTS/{FILE}"))
        return section
    rows = sorted(report["rows"], key=lambda r: (r["status"] == "ok", r["arch"], r["kernel"],
                                                 r["dtype"], r["head_dim"], r["causal"]))
    body = []
    for r in rows:
        if r["status"] != "ok":
            body.append([f"sm_{r['arch']}", r["kernel"], r["dtype"], r["head_dim"],
                         r["causal"], r["config"], Cell(r.get("message", "error"), "bad"),
                         "", "", "", ""])
            continue
        spills = f"{r['spill_stores']} / {r['spill_loads']}"
        body.append([f"sm_{r['arch']}", r["kernel"], r["dtype"], r["head_dim"], r["causal"],
                     r["config"], r["registers"],
                     Cell(spills, "bad" if r["spill_stores"] else "good"),
                     fmt(r["shared"] / 1024), r["tensor_core"], r["main_loop"]])
    section.items.append(table(COLUMNS, body, caption=(
        f"triton {report['triton']}, shape {report['shape']}, {len(rows)} configs")))
    errors = sum(r["status"] != "ok" for r in rows)
    if errors:
        section.items.append(Note(f"{errors} configs failed to compile or exceed shared "
                                  "memory.", "bad"))
    return section


@register_section(order=110)
def build(bundle: Bundle) -> Section:
    return build_from(find_report(bundle))
