"""The two trees the gate compares: resolving revisions and checking one out beside the working
tree with ``git worktree add --detach``, removed afterwards even when the run fails.

A detached worktree shares the repository's objects, so checking out the base costs a second
and touches neither the working tree nor any branch.

Dirty trees: when head is the working tree (no ``--head``), uncommitted changes, tracked or
untracked, make the verdict unreproducible from any commit, so the gate refuses them unless
``--allow-dirty`` says measuring the tree as it is was meant (the local "before I commit"
use). With ``--head REV`` both sides are commits and the working tree does not matter.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class GitError(RuntimeError):
    """A revision, repository or worktree problem, in words; the CLI turns it into exit 2."""


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                                timeout=120)
    except FileNotFoundError:
        raise GitError("git is not installed (needed to check out the base revision)") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args)} timed out after 120 s in {cwd}") from None
    if check and result.returncode:
        raise GitError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip()}")
    return result


def repo_root(path: str | Path) -> Path:
    """The top of the git repository holding ``path``."""
    result = _git(Path(path), "rev-parse", "--show-toplevel", check=False)
    if result.returncode:
        raise GitError(f"{path}: not inside a git repository (the gate compares revisions)")
    return Path(result.stdout.strip())


def resolve_revision(root: Path, rev: str) -> str:
    """The full commit id of ``rev``, or a GitError naming the argument."""
    result = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if result.returncode or not result.stdout.strip():
        raise GitError(f"unknown revision {rev!r}: not a commit in {root}")
    return result.stdout.strip()


def describe(root: Path, commit: str) -> str:
    """Short id and subject, for the summary's header."""
    return _git(root, "log", "-1", "--format=%h %s", commit).stdout.strip()


def dirty_files(root: Path) -> list[str]:
    """Modified tracked files and untracked, non-ignored files (a new file in variants/ is a
    new variant, so it changes what is measured)."""
    out = _git(root, "status", "--porcelain", "--untracked-files=all").stdout
    return [line[3:] for line in out.splitlines() if line.strip()]


def has_variants_package(tree: Path) -> bool:
    return (tree / "variants" / "__init__.py").is_file()


@contextlib.contextmanager
def checked_out(root: Path, commit: str) -> Iterator[Path]:
    """A detached worktree of ``commit`` in a temporary directory, for the ``with`` block only.

    Removal runs on any exit (exception, Ctrl-C); ``git worktree prune`` then forgets the
    entry even if the directory was already gone.
    """
    parent = Path(tempfile.mkdtemp(prefix="attnbench-gate-"))
    tree = parent / "tree"
    try:
        _git(root, "worktree", "add", "--detach", "--quiet", str(tree), commit)
        yield tree
    finally:
        _git(root, "worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(parent, ignore_errors=True)
        _git(root, "worktree", "prune", check=False)
