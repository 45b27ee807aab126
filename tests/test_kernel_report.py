"""The compile report (attnbench kernels): parsing, planning, one real compile for sm_90.

The full matrix (every kernel, config, dtype, head dim, causal, for sm_80 and sm_90) takes tens
of minutes on 2 cores; it runs as a slow test. The fast tests compile one config.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from attnbench.kernel_report import ptxas_usage, run_report, sass_loops
from attnbench.reports.sections.kernels import build_from

SASS = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_0:
        /*0010*/                   SYNCS.PHASECHK.TRANS64 P0, [UR4], R0 ;
        /*0020*/              @!P0 BRA `(.L_x_0) ;
.L_x_1:
        /*0030*/                   HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4], RZ ;
        /*0040*/                   FFMA R3, R4, R5, -R6 ;
        /*0050*/                   MUFU.EX2 R3, R3 ;
        /*0060*/              @P1 BRA `(.L_x_1) ;
.L_x_2:
        /*0070*/                   BRA `(.L_x_2);
"""


def test_sass_loops_are_innermost_backward_branches() -> None:
    assert sass_loops(SASS) == [2, 4]  # the barrier wait, the main loop; the trap is left out


def test_ptxas_usage_parses_the_log() -> None:
    log = ("ptxas info    : Function properties for _fwd_kernel\n"
           "    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
           "ptxas info    : Used 255 registers, used 1 barriers\n")
    assert ptxas_usage(log) == {"registers": 255, "stack": 8, "spill_stores": 4,
                                "spill_loads": 12}
    with pytest.raises(ValueError, match="ptxas"):
        ptxas_usage("nothing")


def test_unknown_arch_is_refused() -> None:
    with pytest.raises(ValueError, match="--arch"):
        run_report(["sm_70"])


def test_one_forward_config_compiles_for_sm90() -> None:
    """A real compile, in a fresh process (this one runs the interpreter): the bf16 forward
    at D=128 must use TMA and tensor cores on sm_90, without spills, within shared memory."""
    report = run_report(["sm_90"], dtypes=("bfloat16",), head_dims=(128,), kernels=("fwd",),
                        workers=1, limit=1)
    (row,) = report["rows"]
    assert row["status"] == "ok", row.get("message")
    assert row["tma"] and row["tensor_core"] > 0 and row["main_loop"] > 0
    assert row["shared"] <= row["shared_limit"]
    assert row["spill_stores"] == 0, row
    section = build_from(report)
    assert section.items and section.items[0].rows


@pytest.mark.slow
def test_full_matrix_compiles_without_errors(tmp_path: Path) -> None:
    """Every config of every kernel, both targets, both dtypes, head dims 64/128/256."""
    report = run_report(["sm_80", "sm_90"], workers=2, timeout=5400)
    (tmp_path / "kernels.json").write_text(json.dumps(report))
    bad = [r for r in report["rows"] if r["status"] != "ok"]
    assert not bad, bad[:3]
    spilling = [(r["kernel"], r["head_dim"], r["config"]) for r in report["rows"]
                if r["arch"] == 90 and r["head_dim"] <= 128 and r["spill_stores"]]
    assert not spilling, spilling
