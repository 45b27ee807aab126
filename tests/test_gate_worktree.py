"""Revisions, dirty trees and worktrees, on a throw-away git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from attnbench.gate.worktree import (
    GitError,
    checked_out,
    dirty_files,
    has_variants_package,
    repo_root,
    resolve_revision,
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "README").write_text("one\n")
    git(root, "add", "README")
    git(root, "commit", "-q", "-m", "first: no variants")
    (root / "variants").mkdir()
    (root / "variants" / "__init__.py").write_text("")
    git(root, "add", "variants")
    git(root, "commit", "-q", "-m", "second: variants")
    return root


def test_revisions_resolve_and_unknown_ones_are_named(repo):
    assert resolve_revision(repo, "HEAD") == git(repo, "rev-parse", "HEAD")
    assert resolve_revision(repo, "HEAD~1") == git(repo, "rev-parse", "HEAD~1")
    with pytest.raises(GitError, match="unknown revision 'HEAD~5'"):
        resolve_revision(repo, "HEAD~5")
    with pytest.raises(GitError, match="unknown revision 'no-such-branch'"):
        resolve_revision(repo, "no-such-branch")


def test_outside_a_repository_is_an_error(tmp_path):
    with pytest.raises(GitError, match="not inside a git repository"):
        repo_root(tmp_path)


def test_dirty_files_see_modified_and_untracked_but_not_ignored(repo):
    assert dirty_files(repo) == []
    (repo / ".gitignore").write_text("results/\n")
    (repo / "results").mkdir()
    (repo / "results" / "x.json").write_text("{}")
    assert dirty_files(repo) == [".gitignore"]
    (repo / "README").write_text("changed\n")
    (repo / "variants" / "new_variant.py").write_text("")
    assert sorted(dirty_files(repo)) == [".gitignore", "README", "variants/new_variant.py"]


def test_worktree_holds_the_revision_and_is_removed_even_on_failure(repo):
    with pytest.raises(RuntimeError, match="boom"), checked_out(repo, "HEAD~1") as tree:
        assert (tree / "README").read_text() == "one\n"
        assert not has_variants_package(tree)
        kept = tree
        raise RuntimeError("boom")
    assert not kept.exists()
    assert git(repo, "worktree", "list").count("\n") == 0  # only the main worktree remains
    with checked_out(repo, "HEAD") as tree:
        assert has_variants_package(tree)
    assert not tree.exists()


def test_worktree_of_a_bad_commit_fails_cleanly(repo):
    with pytest.raises(GitError, match="worktree add"), checked_out(repo, "0" * 40):
        pass
    assert git(repo, "worktree", "list").count("\n") == 0
