"""Import layering: the library never imports its front ends or its tests.

Front ends (``attnbench.cli``, ``attnbench.cli_*``, ``python -m attnbench``, the prepared GPU
check) parse arguments and call the library; the library (everything else under ``bench/``,
``variants/``, ``kernels/``, ``reports/``) must work without them, installed from a wheel that
ships no ``tests``. Checked twice: statically over every module's imports and module-name
strings (``importlib.import_module("...")``, plugin names), and by importing the library's
entry points in a fresh interpreter. (The reports' own rule, "reads files, imports no variant
or kernel", is ``test_report_inputs.test_reports_import_no_variant_or_kernel``.)
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARY = ("bench", "variants", "kernels", "reports")
FRONT_ENDS = re.compile(r"^bench/(cli(_\w+)?|__main__|gpu_check)\.py$")
FORBIDDEN = re.compile(r"^(attnbench\.cli(_\w+)?|bench\.cli(_\w+)?|tests|plugin_examples|mutants|"
                       r"conftest)(\.|$)")


def library_files() -> list[Path]:
    files = [p for top in LIBRARY for p in sorted((REPO / top).rglob("*.py"))
             if not FRONT_ENDS.match(p.relative_to(REPO).as_posix())]
    assert len(files) > 50, files  # the walk found the library
    return files


def forbidden_names(path: Path, root: Path = REPO) -> list[str]:
    """Modules a file imports, or names as a string, that the library must not use."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        found += [f"{path.relative_to(root)}:{node.lineno}: {n}" for n in names
                  if FORBIDDEN.match(n)]
    return found


def test_the_rule_sees_what_it_forbids(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from attnbench.cli import UsageError\nimport tests.mutants\n"
                   "from attnbench import cli_verify\nMODULE = 'plugin_examples.toy'\n"
                   "import attnbench.client_side  # a name that only starts like one\n")
    found = [line.split(": ", 1)[1] for line in forbidden_names(bad, tmp_path)]
    assert found == ["attnbench.cli", "attnbench.cli.UsageError", "tests.mutants",
                     "attnbench.cli_verify", "plugin_examples.toy"]


def test_library_never_imports_the_cli_or_the_tests():
    found = [hit for path in library_files() for hit in forbidden_names(path)]
    assert found == [], "\n".join(found)


def test_library_entry_points_load_no_front_end_or_test_module():
    code = ("import sys, attnbench.variants, attnbench.verify, attnbench.verify.results, "
            "attnbench.throughput.runner, attnbench.throughput.worker, attnbench.gate.measure, "
            "attnbench.gate.selfcheck, attnbench.stability.sweep, attnbench.testing.gate_probe, "
            "attnbench.reports; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tests', 'plugin_examples') "
            "or m.startswith('attnbench.cli')]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
