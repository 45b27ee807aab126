"""The mutation session's configuration stays consistent: every listed module and test exists,
every equivalent mutant names a listed module and says why, and the driver maps repository
paths to the module names mutmut reports. (The session itself, `nox -s mutation`, is too slow
for the test suite; README "Mutation testing".)"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mutation_run", ROOT / "tests/mutation/run.py")
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)


def test_configured_modules_and_tests_exist():
    config = run.load_config()
    assert all((ROOT / m).is_file() for m in config["modules"]), config["modules"]
    assert all((ROOT / t).is_file() for t in config["tests"]), config["tests"]
    assert set(config["required"]) == {"bench/verify/tolerance.py", "bench/gate/stats.py",
                                       "bench/stability/verdicts.py"}
    assert all(v == 0.95 for v in config["required"].values())
    assert set(config["required"]) <= set(config["modules"])


def test_equivalent_mutants_name_a_module_and_a_reason():
    modules = {run.module_of(m) for m in run.load_config()["modules"]}
    entries = tomllib.loads(run.EQUIVALENT.read_text())["mutant"]
    for e in entries:
        assert set(e) == {"name", "was", "now", "reason"}, e
        assert e["name"].rpartition(".")[0] in modules, e["name"]
        assert e["was"] != e["now"] and len(e["reason"]) > 20
    assert len({e["name"] for e in entries}) == len(entries)


def test_paths_map_to_the_installed_layout():
    assert run.staged("bench/gate/stats.py") == "attnbench/gate/stats.py"
    assert run.staged("variants/naive.py") == "variants/naive.py"
    assert run.module_of("bench/verify/tolerance.py") == "attnbench.verify.tolerance"
    diff = ("--- a.py\n+++ a.py\n@@ -1 +1 @@\n def f():\n-    return x > 1\n"
            "+    return x >= 1\n")
    assert run.changed_lines(diff) == ("return x > 1", "return x >= 1")
    assert run.natural("m.x_f__mutmut_10") > run.natural("m.x_f__mutmut_9")
