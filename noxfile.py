"""nox sessions. `nox -s tests` runs the test suite; `nox -s lint` runs ruff.

torch is installed first, pinned by ATTNBENCH_TORCH_SPEC (default torch==2.13.0: the CPU wheel
these machines keep on disk; an unpinned torch pulls a multi-GB CUDA build). On another machine
set e.g. ATTNBENCH_TORCH_SPEC="torch==2.11.0".
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint"]

TORCH_SPEC = os.environ.get("ATTNBENCH_TORCH_SPEC", "torch==2.13.0")
PYTHON = os.environ.get("ATTNBENCH_PYTHON")  # None: the interpreter running nox


def install_project(session: nox.Session, extras: str = "triton,memory,test,dask") -> None:
    session.install(TORCH_SPEC)
    session.install("-e", f".[{extras}]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Fast tests by default; pass pytest arguments after `--` (e.g. `-- -m slow`)."""
    install_project(session)
    args = session.posargs or ["-m", "not slow"]
    session.run("python", "-m", "pytest", *args)


@nox.session(python=PYTHON)
def mutation(session: nox.Session) -> None:
    """Mutation testing of the rules with mutmut (tests/mutation/run.py): the modules and
    tests are listed in pyproject's [tool.attnbench.mutation]; prints killed / total per
    module and every surviving mutant; fails below a required score. Long (README "Mutation
    testing" has the times): `-- --changed main` mutates only the modules a change touches,
    `-- bench/gate/stats.py` one module."""
    install_project(session, "triton,memory,test,mutation")
    session.run("python", "tests/mutation/run.py", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def report(session: nox.Session) -> None:
    """The comparison report: `nox -s report -- RESULTS_DIR ... [--out DIR] [--baseline V]`
    (default: every results directory under results/latest); prints the page's path."""
    install_project(session)
    session.run("python", "-m", "attnbench", "report", *(session.posargs or ["results/latest"]))


@nox.session(python=PYTHON)
def gate(session: nox.Session) -> None:
    """Regression gate: the working tree against the previous commit (HEAD~1), small preset;
    exits 0 with a note when there is no previous commit or it has no variants package. Other
    `attnbench gate` arguments after `--` (e.g. `-- --base main --allow-dirty`)."""
    install_project(session)
    args = session.posargs or ["--base", "HEAD~1", "--allow-missing-base"]
    session.run("python", "-m", "attnbench", "gate", *args)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The main job: the quick preset of every benchmark, and the patterns preset, into fixed
    directories under results/latest/ (each run replaces the previous one), then says where
    they are. The two timed parts (the bench presets) run alone, so that nothing else loads
    the cores while they time; then verify (one process) and the quick stability preset (one
    worker per core), which time nothing, run side by side."""
    install_project(session)
    attnbench = ("python", "-m", "attnbench")
    session.run(*attnbench, "bench", "--preset", "quick", "--out", "results/latest/throughput",
                "--force")
    session.run(*attnbench, "bench", "--preset", "patterns", "--out", "results/latest/patterns",
                "--force")
    # A failed check or finding (exit 1) is a finding for the report, not a reason to stop the
    # job; any other exit of either part fails the session (result() raises it). verify's
    # output is held back and printed whole when it ends, not interleaved with stability's.
    with ThreadPoolExecutor(2) as pool:
        verify = pool.submit(session.run, *attnbench, "verify", "--out", "results/latest/verify",
                             "--force", success_codes=[0, 1], silent=True)
        stability = pool.submit(session.run, *attnbench, "stability", "--preset", "quick",
                                "--out", "results/latest/stability", "--force",
                                success_codes=[0, 1])
    print(verify.result())
    stability.result()
    session.log("results: results/latest/ (verify/, throughput/, patterns/, stability/)")
    session.run(*attnbench, "report", "results/latest",  # prints the page's path
                "--out", "results/latest/report")
