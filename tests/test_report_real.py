"""The report on results written by the real suites (not fixtures): catches drift between the
metric vocabulary the suites write and the one the report reads. Slow: it runs small
throughput and stability sweeps first (about a minute on 2 cores)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from attnbench.reports import write_report
from test_report_render import Page, check_headings

REPO = Path(__file__).resolve().parent.parent
TINY_STABILITY = {
    "description": "report test", "attention": "sdpa",
    "model": {"d_model": 32, "n_heads": 2, "block_size": 32, "batch_size": 8},
    "train": {"steps": 20, "eval_every": 10, "eval_batches": 1, "grids": [
        {"blocks": ["post_ln", "pre_ln"], "depths": [2], "lrs": [0.001, 0.1], "warmups": [0],
         "seeds": [0]}]},
    "init": {"blocks": ["post_ln", "pre_ln"], "depths": [2, 4], "seeds": [0],
             "perturbation": 0.01, "draws": 2, "step_lr": 0.001},
}


def attnbench(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "attnbench", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.slow
def test_report_on_real_suite_output(tmp_path: Path) -> None:
    attnbench("bench", "--variant", "naive,sdpa", "--mode", "fwd", "-k",
              "not N4096 and not deepnorm and not sandwich and not pre_rmsnorm and not qk_norm",
              "--out", str(tmp_path / "throughput"))
    preset = tmp_path / "stability.json"
    preset.write_text(json.dumps(TINY_STABILITY))
    attnbench("stability", "--preset", str(preset), "--workers", "0",
              "--out", str(tmp_path / "stability"))
    write_report([tmp_path], tmp_path / "report")
    page = Page((tmp_path / "report" / "index.html").read_text(encoding="utf-8"))
    check_headings(page.headings)
    for section in ("throughput", "roofline", "memory", "blocks", "stability"):
        assert page.images[section], f"no figure in {section} from real results"
    assert re.search(r"all \d+ problems|\d+ of \d+: float32 fwd", page.text["summary"])
    assert "healthy" in page.text["summary"]
