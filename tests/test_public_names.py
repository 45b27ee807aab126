"""One public name, one meaning: no two classes of the package share a public name.

Three stacks (verify, throughput, gate, stability) once reused ``Preset``, ``Worker``,
``CheckResult``, ``Finding`` and ``Outcome`` for different things, so an import or a docstring
naming one could mean any of them. The rule is read from the source (no module is imported, so
plugin modules that register variants do not collide): a class is *defined* once; importing it
elsewhere (a deliberate re-export, e.g. ``attnbench.verify.CheckResult``) is not a definition.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from test_layering import REPO, library_files

FRONT_ENDS = ("cli.py", "cli_", "gpu_check.py", "__main__.py")


def public_classes(path: Path) -> list[str]:
    """Public classes defined at the top level of one module."""
    tree = ast.parse(path.read_text(), str(path))
    return [node.name for node in tree.body
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_")]


def clashes(paths: list[Path], root: Path = REPO) -> dict[str, list[str]]:
    defined: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        for name in public_classes(path):
            defined[name].append(path.relative_to(root).as_posix())
    return {name: where for name, where in defined.items() if len(where) > 1}


def package_files() -> list[Path]:
    """The library plus its front ends (a CLI class is public too)."""
    extra = [p for p in sorted((REPO / "bench").glob("*.py")) if p.name.startswith(FRONT_ENDS)]
    return library_files() + extra


def test_the_rule_sees_a_clash_and_allows_a_re_export(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("class Preset:\n    pass\n\nclass _Private:\n    pass\n")
    (tmp_path / "b.py").write_text("class Preset:\n    x = 1\n\nclass _Private:\n    pass\n")
    (tmp_path / "c.py").write_text("from a import Preset\n__all__ = ['Preset']\n")
    paths = sorted(tmp_path.glob("*.py"))
    assert clashes(paths, tmp_path) == {"Preset": ["a.py", "b.py"]}
    assert clashes([tmp_path / "a.py", tmp_path / "c.py"], tmp_path) == {}


def test_no_two_classes_share_a_public_name() -> None:
    files = package_files()
    assert any(p.name == "cli.py" for p in files)  # the walk includes the front ends
    found = clashes(files)
    assert found == {}, "\n".join(f"{name}: defined in {', '.join(where)}"
                                  for name, where in sorted(found.items()))
