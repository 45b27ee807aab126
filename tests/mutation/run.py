"""Mutation testing of the project's own rules: do the tests notice a broken verifier?

``nox -s mutation`` runs this file. It reads the module list, the tests and the required
scores from ``[tool.attnbench.mutation]`` in pyproject.toml (one place: a function added to a
listed module is mutated on the next run), runs mutmut 3 on those modules, and prints per
module killed / total (equivalent mutants excluded) and every surviving mutant's diff. Exit 1
when a module with a required score falls below it.

Why a staging folder: mutmut names a mutant after its file path (``bench/gate/stats.py`` ->
``bench.gate.stats``) and activates it only when that name equals the function's
``__module__`` (``attnbench.gate.stats``): on this repository's package-dir layout every
mutant would survive untested. So the run happens in ``.mutation/``, a copy of the tree in
the installed layout (``bench/`` copied as ``attnbench/``, ``variants/`` etc. beside it, as a
checkout has them), with a generated ``[tool.mutmut]`` section.

Equivalent mutants (no test can tell them apart from the original) are listed with the
reason in ``tests/mutation/equivalent.toml``; an entry counts only while the mutant's diff
still shows the recorded line, so an edited function does not silently keep an exemption.

    python tests/mutation/run.py                     # every configured module
    python tests/mutation/run.py bench/gate/stats.py # some of them
    python tests/mutation/run.py --changed HEAD~1    # those a change touches (CI)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGE = ROOT / ".mutation"
EQUIVALENT = Path(__file__).with_name("equivalent.toml")
# Repository folder -> its place in the installed layout (pyproject package-dir).
LAYOUT = {"bench": "attnbench", "variants": "variants", "kernels": "kernels",
          "reports": "reports", "tests": "tests"}


def load_config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["attnbench"]["mutation"]


def staged(path: str) -> str:
    """Repository path -> path in the staging folder (bench/x.py -> attnbench/x.py)."""
    top, _, rest = path.partition("/")
    return f"{LAYOUT.get(top, top)}/{rest}"


def module_of(path: str) -> str:
    """Repository path -> the module name mutmut gives its mutants."""
    return staged(path).removesuffix(".py").replace("/", ".")


def changed_modules(base: str, modules: list[str], tests: list[str]) -> list[str]:
    """The configured modules that ``git diff base`` (working tree included) touches; all of
    them when a configured test, this folder or pyproject changed (a weaker test lowers every
    score) or when ``base`` is unknown (a shallow clone: better slow than unchecked)."""
    diff = subprocess.run(["git", "diff", "--name-only", base], cwd=ROOT, capture_output=True,
                          text=True)
    if diff.returncode != 0:
        print(f"mutation: cannot diff against {base} ({diff.stderr.strip()}); all modules")
        return modules
    changed = diff.stdout.split()
    if any(f in tests or f.startswith("tests/mutation/") or f == "pyproject.toml"
           for f in changed):
        return modules
    return [m for m in modules if m in changed]


def stage(modules: list[str], tests: list[str], pytest_args: list[str]) -> None:
    """A fresh copy of the tree in the installed layout, with mutmut's configuration."""
    shutil.rmtree(STAGE, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    for src, dst in LAYOUT.items():
        shutil.copytree(ROOT / src, STAGE / dst, ignore=ignore)
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")

    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(f'"{x}"' for x in items) + "]"

    text += ("\n[tool.mutmut]\n"
             f"source_paths = {toml_list([LAYOUT[k] for k in LAYOUT if k != 'tests'])}\n"
             f"only_mutate = {toml_list([staged(m) for m in modules])}\n"
             f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
             f"pytest_add_cli_args = {toml_list(pytest_args)}\n"
             # A surviving mutant runs every test that reaches it; on a loaded machine mutmut's
             # default limit (15 x the clean run) turned such survivors into "timeouts" (counted
             # as caught). 100 x leaves only real hangs.
             "timeout_multiplier = 100.0\n")
    (STAGE / "pyproject.toml").write_text(text, encoding="utf-8")


def mutmut(*args: str, log=None) -> str:
    result = subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=STAGE, text=True,
                            stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = (STAGE / "mutmut.log").read_text()[-3000:] if log else result.stdout[-3000:]
        raise SystemExit(f"mutation: `mutmut {' '.join(args)}` failed "
                         f"(exit {result.returncode}):\n{tail}")
    return result.stdout or ""


def changed_lines(diff: str) -> tuple[str, str]:
    """The first removed and added line of a mutant's diff, stripped."""
    was = next((x[1:].strip() for x in diff.splitlines()
                if x.startswith("-") and not x.startswith("---")), "")
    now = next((x[1:].strip() for x in diff.splitlines()
                if x.startswith("+") and not x.startswith("+++")), "")
    return was, now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="repository paths (default: configured)")
    parser.add_argument("--changed", metavar="BASE",
                        help="only the configured modules that differ from git revision BASE")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    config = load_config()
    configured = list(config["modules"])
    unknown = [m for m in args.modules if m not in configured]
    if unknown:
        parser.error(f"modules: expected some of {configured}, got {unknown}")
    modules = args.modules or configured
    if args.changed:
        modules = changed_modules(args.changed, modules, list(config["tests"]))
        if not modules:
            print(f"mutation: no configured module differs from {args.changed}; nothing to do")
            return 0
    start = time.monotonic()
    stage(modules, list(config["tests"]), list(config.get("pytest_args", [])))
    with open(STAGE / "mutmut.log", "w") as log:
        mutmut("run", "--max-children", str(args.max_children), log=log)
    statuses = dict(re.findall(r"^\s*(\S+): (.+)$", mutmut("results", "--all", "true"), re.M))
    listed = tomllib.loads(EQUIVALENT.read_text()).get("mutant", [])
    equivalent = {e["name"]: e for e in listed}
    failed = report(modules, config.get("required", {}), statuses, equivalent)
    print(f"mutation: {len(statuses)} mutants in {time.monotonic() - start:.0f} s "
          f"(log: {STAGE / 'mutmut.log'})")
    return 1 if failed else 0


def report(modules: list[str], required: dict[str, float], statuses: dict[str, str],
           equivalent: dict[str, dict]) -> bool:
    """Print the score table and the survivors; True when a required score is missed."""
    rows, survivors, stale, failed = [], [], [], False
    for path in modules:
        prefix = module_of(path) + "."
        mine = {k: v for k, v in statuses.items() if k.startswith(prefix)}
        excluded = 0
        for name, status in sorted(mine.items(), key=lambda kv: natural(kv[0])):
            if status == "killed" or status == "timeout":
                continue
            diff = mutmut("show", name)
            entry = equivalent.get(name)
            if entry and changed_lines(diff) == (entry["was"], entry["now"]):
                excluded += 1
                continue
            if entry:
                stale.append(name)
            survivors.append((name, status, diff))
        total = len(mine) - excluded
        killed = sum(s in ("killed", "timeout") for s in mine.values())
        hangs = sum(s == "timeout" for s in mine.values())
        score = killed / total if total else 1.0
        need = required.get(path)
        ok = need is None or score >= need
        failed |= not ok
        rows.append(f"{path:34s} {killed:4d} / {total:4d}  {100 * score:5.1f} %  "
                    f"({excluded} equivalent, {hangs} caught by hanging)"
                    + ("" if need is None else f"  required {100 * need:.0f} %"
                       + ("" if ok else "  MISSED")))
    for name, status, diff in survivors:
        print(f"\n--- {status}: {name}\n{diff.strip()}")
    for name in stale:
        print(f"mutation: equivalent.toml entry {name} no longer matches its diff; not excluded")
    print("\nmodule                             killed / total  score")
    print("\n".join(rows))
    return failed


def natural(name: str) -> tuple:
    stem, _, number = name.rpartition("_")
    return (stem, int(number)) if number.isdigit() else (name, 0)


if __name__ == "__main__":
    sys.exit(main())
