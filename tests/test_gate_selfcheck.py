"""The gate's self-check, end to end (slow: about a minute and a half on 2 busy cores).

Timing outcomes (false-alarm rate, slowdown power) are measured and written, never asserted:
they are machine facts, stated by ``attnbench gate --self-check``. What must hold anywhere is
asserted: the injected memory and correctness faults fail the gate, and A/A runs raise no
hard-gate alarm.
"""

from __future__ import annotations

import json

import pytest
from attnbench.gate.measure import PRESETS, GateSettings
from attnbench.gate.selfcheck import run_self_check, upper_bound, write_self_check
from attnbench.gate.sides import DRIVER_ROOT


def test_upper_bound_of_a_rate():
    assert upper_bound(0, 20) == pytest.approx(1 - 0.05 ** (1 / 20), abs=1e-6)
    assert upper_bound(0, 0) == 1.0
    assert 0.05 < upper_bound(1, 20) < 0.25


@pytest.mark.slow
def test_self_check_catches_injected_faults(tmp_path):
    result = run_self_check(DRIVER_ROOT, PRESETS["tiny"], GateSettings(), aa_runs=1,
                            power_runs=1)
    assert result["memory"]["caught"] and result["correctness"]["caught"]
    assert result["aa"]["hard_false_alarms"] == []
    assert result["aa"]["comparisons"] >= 4  # every timeable CPU variant, once
    assert result["slowdown"]["trials"] == 1
    path = write_self_check(result, tmp_path)
    assert json.loads(path.read_text())["targets"].keys() == result["targets"].keys()
    assert "false alarm" in result["summary"]
