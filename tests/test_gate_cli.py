"""``attnbench gate`` end to end: exit codes, bad input, stored results, and one real two-tree
run on a throw-away repository whose head commit breaks a probe variant."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from attnbench.cli import main
from attnbench.results import ResultsWriter

REPO = Path(__file__).resolve().parents[1]
PROBE_FILE = "variants/gate_probe_variant.py"
PROBE = "from attnbench.testing.gate_common import register_probe\n\nregister_probe({})\n"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                   check=True, capture_output=True)


def gate(*args: str) -> int:
    return main(["gate", *args])


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three commits: no variants; the registry, naive (the verifier's textbook) and a faithful
    probe; the probe made wrong (softmax scale 5 % off) and memory-hungry (a 1 MiB buffer)."""
    root = tmp_path / "repo"
    (root / "variants").mkdir(parents=True)
    git(root, "init", "-q")
    (root / "README").write_text("x\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "no variants yet")
    for name in ("__init__.py", "registry.py", "memory.py", "common.py", "plugins.py",
                 "naive.py", "patterns.py", "pattern_families.py"):
        shutil.copy(REPO / "variants" / name, root / "variants" / name)
    (root / PROBE_FILE).write_text(PROBE.format(""))
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "faithful probe")
    (root / PROBE_FILE).write_text(PROBE.format("scale_error=0.05, extra_memory=True"))
    git(root, "commit", "-q", "-am", "break the probe")
    monkeypatch.chdir(root)
    return root


def read_verdict(out: Path) -> dict:
    return json.loads((out / "gate.json").read_text())


# ---- usage ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    ([], "exactly one of"),
    (["--base", "HEAD", "--self-check"], "exactly one of"),
    (["--head", "HEAD"], "exactly one of"),
    (["--baseline", "a"], "go together"),
    (["--base", "HEAD", "--rounds", "1"], "--rounds"),
    (["--base", "HEAD", "--threshold", "-1"], "threshold"),
    (["--base", "HEAD", "--kinds", "speed"], "--kinds"),
])
def test_usage_errors_exit_2(args, message, capsys, tmp_path):
    assert gate(*args, "--out", str(tmp_path)) == 2
    assert message in capsys.readouterr().err


# ---- revisions and trees ----------------------------------------------------------------------

def test_unknown_revision_exits_2_or_0_with_a_note_when_allowed(repo, capsys, tmp_path):
    assert gate("--base", "HEAD~9", "--out", str(tmp_path)) == 2
    assert "unknown revision 'HEAD~9'" in capsys.readouterr().err
    assert gate("--base", "HEAD~9", "--allow-missing-base", "--out", str(tmp_path)) == 0
    data = read_verdict(tmp_path)
    assert data["verdict"] == "skipped" and "HEAD~9" in data["notes"][0]


def test_base_without_variants_package(repo, capsys, tmp_path):
    assert gate("--base", "HEAD~2", "--out", str(tmp_path)) == 2
    assert "no variants package" in capsys.readouterr().err
    assert gate("--base", "HEAD~2", "--allow-missing-base", "--out", str(tmp_path)) == 0
    assert read_verdict(tmp_path)["verdict"] == "skipped"


def test_dirty_working_tree_is_refused_unless_allowed(repo, capsys, tmp_path):
    (repo / "README").write_text("edited\n")
    assert gate("--base", "HEAD~1", "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "uncommitted changes (README)" in err and "--allow-dirty" in err


def test_a_head_that_breaks_the_probe_fails_the_gate(repo, tmp_path):
    """Both sides measured in one job: the correctness break and the memory regression are
    both caught, the worktree is gone afterwards, and the outputs are written."""
    out = tmp_path / "out"
    code = gate("--base", "HEAD~1", "--preset", "tiny", "--variants", "gate_probe",
                "--structural", "off", "--kinds", "correctness,memory", "--out", str(out))
    data = read_verdict(out)
    assert code == 1 and data["verdict"] == "fail"
    failing = {(f["kind"], f["verdict"]) for f in data["findings"] if f["fails_gate"]}
    assert failing == {("correctness", "regressed"), ("memory", "regressed")}
    assert "faithful probe" in data["base"]["description"]
    assert data["findings"][0]["kind"] == "correctness"  # worst first
    assert "FAIL" in (out / "gate.md").read_text()
    assert worktrees(repo) == 1


def test_a_head_whose_variants_do_not_import_is_a_regression(repo, tmp_path):
    (repo / PROBE_FILE).write_text("raise ImportError('broken on purpose')\n")
    git(repo, "commit", "-q", "-am", "break the import")
    out = tmp_path / "out"
    assert gate("--base", "HEAD~1", "--preset", "tiny", "--out", str(out)) == 1
    (finding,) = read_verdict(out)["findings"]
    assert finding["case"] == "import" and "broken on purpose" in finding["detail"]


def test_a_head_variant_that_raises_is_a_correctness_regression(repo, tmp_path):
    (repo / PROBE_FILE).write_text(
        "from attnbench.variants.registry import register_attention\n\n\n"
        "@register_attention('gate_probe')\n"
        "def gate_probe(q, k, v, *, causal=False, scale=None, attn_mask=None):\n"
        "    raise RuntimeError('kernel launch failed')\n")
    git(repo, "commit", "-q", "-am", "a probe that raises")
    out = tmp_path / "out"
    assert gate("--base", "HEAD~2", "--preset", "tiny", "--variants", "gate_probe",
                "--kinds", "correctness", "--out", str(out)) == 1
    findings = read_verdict(out)["findings"]
    assert all((f["kind"], f["verdict"]) == ("correctness", "regressed") for f in findings)
    assert any(f["case"] == "attention:gate_probe:B1-H2-N64-D32-float32-cpu:fwd" and
               "raised RuntimeError: kernel launch failed" in f["detail"] for f in findings)
    assert any(f["case"].startswith("verify.out:gate_probe:B") for f in findings)  # the suite


def test_sigterm_mid_run_still_removes_the_worktree(repo):
    """What a CI timeout does: the gate is killed politely while measuring."""
    args = ["gate", "--base", "HEAD~1", "--preset", "tiny", "--allow-dirty", "--out",
            str(repo / "out")]
    script = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from attnbench.cli import main; "
              f"sys.exit(main({args!r}))")  # this repository's code, run in the test repo
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while worktrees(repo) == 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert worktrees(repo) == 2, "the gate never created its worktree"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert worktrees(repo) == 1


def worktrees(repo: Path) -> int:
    return subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True,
                          text=True).stdout.count("\n")


# ---- stored results ---------------------------------------------------------------------------

def write_results(path: Path, peak: float, passed: int, torch_version: str | None = None
                  ) -> Path:
    writer = ResultsWriter(path, "throughput")
    common = {"variant": "sdpa", "status": "ok", "mode": "fwd"}
    writer.add_case("attention:sdpa:B1-H4-N256-D64:fwd", [
        {**common, "metric": "mem_peak_bytes", "value": peak, "unit": "B"},
        {**common, "metric": "sampled_error_ratio", "value": 1.0 if passed else 9.0},
        {**common, "metric": "time_median_s", "value": 1e-3, "unit": "s"}])
    writer.finish()
    if torch_version:
        prov = json.loads((path / "provenance.json").read_text())
        prov["packages"]["torch"] = torch_version
        (path / "provenance.json").write_text(json.dumps(prov))
    return path


@pytest.mark.parametrize("peak,passed,code,failing", [
    (2**20, 1, 0, set()),
    (2**20 + 512 * 1024, 1, 1, {"memory"}),  # +50 % and +512 KiB
    (2**20, 0, 1, {"correctness"}),  # error ratio 9 crosses the bound 2
])
def test_stored_results_hard_gates(tmp_path, peak, passed, code, failing):
    base = write_results(tmp_path / "base", 2**20, 1)
    head = write_results(tmp_path / "head", peak, passed)
    out = tmp_path / "out"
    assert gate("--baseline", str(base), "--results", str(head), "--out", str(out)) == code
    data = read_verdict(out)
    assert {f["kind"] for f in data["findings"] if f["fails_gate"]} == failing
    assert any("timing not compared" in n for n in data["notes"])


def test_stored_results_with_other_library_versions_skip_memory(tmp_path):
    base = write_results(tmp_path / "base", 2**20, 1, torch_version="2.11.0")
    head = write_results(tmp_path / "head", 4 * 2**20, 1)
    out = tmp_path / "out"
    assert gate("--baseline", str(base), "--results", str(head), "--out", str(out)) == 0
    data = read_verdict(out)
    assert not [f for f in data["findings"] if f["kind"] == "memory"]
    assert any("library versions differ" in n and "--base" in n for n in data["notes"])


def test_missing_and_corrupted_results_exit_2(tmp_path, capsys):
    good = write_results(tmp_path / "good", 2**20, 1)
    assert gate("--baseline", str(tmp_path / "nope"), "--results", str(good)) == 2
    assert "no such results directory" in capsys.readouterr().err
    bad = write_results(tmp_path / "bad", 2**20, 1)
    with open(bad / "results.jsonl", "r+") as fh:
        lines = fh.readlines()
        fh.seek(0)
        fh.write("{not json\n" + "".join(lines))
    assert gate("--baseline", str(good), "--results", str(bad)) == 2
    assert "line 1 is not a valid JSON record" in capsys.readouterr().err
    (bad / "provenance.json").write_text("{")
    (bad / "results.jsonl").write_text("".join(lines))
    assert gate("--baseline", str(good), "--results", str(bad)) == 2
    assert "corrupted provenance" in capsys.readouterr().err
