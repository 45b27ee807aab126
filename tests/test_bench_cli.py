"""`attnbench bench` on bad input: one clear line, exit 2, and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from attnbench.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(["bench", *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args,message", [
    (["--variant", "no_such_variant"], "unknown variant 'no_such_variant'"),
    (["--preset", "no_such_preset"], "unknown preset 'no_such_preset'; available: full, gpu"),
    (["--dtype", "int8"], "dtype: expected one of fp32, fp16, bf16, fp64; got 'int8'"),
    (["-k", "naive and"], "-k 'naive and': expected a word"),
    (["--threads", "0"], "--threads: expected an integer >= 1, got 0"),
    (["--time-limit", "-1"], "--time-limit: expected seconds > 0"),
    (["-k", "no_case_has_this_name"], "no case of preset 'quick' matches the selection"),
    (["--force", "--resume"], "--force and --resume exclude each other"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, args, message):
    out_dir = tmp_path / "never"
    code, _, err = run_cli(capsys, "--out", str(out_dir), *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnbench bench: error: "), err
    assert message in lines[0]
    assert not out_dir.exists()  # nothing half-written


def test_resume_needs_the_run_directory(capsys):
    code, _, err = run_cli(capsys, "--resume")
    assert code == 2 and "--resume needs --out DIR" in err


def test_unknown_option_is_an_argparse_error(capsys):
    code, _, err = run_cli(capsys, "--speed", "11")
    assert code == 2 and "unrecognized arguments: --speed 11" in err


def test_unwritable_output_directory(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code, _, err = run_cli(capsys, "-k", "naive and N256 and not causal", "--mode", "fwd",
                           "--out", str(blocker / "results"))
    assert code == 2 and "directory is not writable" in err
    assert len(err.strip().splitlines()) == 1 and blocker.read_text() == "not a directory"


@pytest.mark.parametrize("damage", ["results", "provenance"])
def test_corrupted_results_refuse_to_resume(capsys, tmp_path, damage):
    out = tmp_path / "run"
    out.mkdir()
    good = '{"suite": "throughput", "case_id": "a", "variant": "naive", "status": "ok"}\n'
    if damage == "results":
        (out / "results.jsonl").write_text(good + "{not json\n" + good)
    else:
        (out / "results.jsonl").write_text(good)
        (out / "provenance.json").write_text("{truncated")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = run_cli(capsys, "--out", str(out), "--resume")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert ("line 2 is not a valid JSON record" if damage == "results"
            else "corrupted provenance record") in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_existing_results_need_resume_or_force(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.jsonl").write_text(
        '{"suite": "throughput", "case_id": "a", "variant": "naive", "status": "ok"}\n')
    code, _, err = run_cli(capsys, "--out", str(out), "-k", "naive and N256", "--mode", "fwd")
    assert code == 2 and "already holds results; pass --resume" in err


def test_list_prints_cases_and_skip_reasons_and_writes_nothing(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "--list", "--variant", "naive,sdpa_efficient",
                           "--mode", "fwd", "--out", str(tmp_path / "x"))
    assert code == 0
    lines = out.strip().splitlines()
    assert "attention:naive:B1-H2-N256-D64-float32-cpu:fwd" in lines
    assert any(line.startswith("attention:sdpa_efficient:") and "[skipped: device cpu" in line
               for line in lines)
    assert any(line.startswith("memory:naive:B1-H4-N4096") for line in lines)
    assert not Path(tmp_path / "x").exists()
