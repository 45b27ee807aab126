"""The built-in Dask engine: a small preset on a LocalCluster of 2 worker processes gives
results and curves identical to the in-process run, through the CLI as a user would run it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from attnbench.cli import main
from attnbench.results import load_provenance, load_results, load_samples

SMALL = {
    "model": {"d_model": 16, "n_heads": 2, "block_size": 16, "batch_size": 4},
    "attention": "sdpa",
    "train": {"steps": 8, "eval_every": 4, "eval_batches": 1, "grids": [
        {"blocks": ["post_ln", "pre_ln"], "depths": [2], "lrs": [1e-3, 1e-1], "warmups": [0],
         "beta2s": [0.95, 0.999], "seeds": [0, 1]}]},
    "init": {"blocks": ["post_ln"], "depths": [1, 2, 3], "seeds": [0],
             "inits": ["scaled", "unscaled"], "perturbation": 0.01, "draws": 1,
             "step_lr": 1e-3},
}


def table(out: Path) -> pd.DataFrame:
    frame = load_results(out)
    keys = [c for c in ("case_id", "metric", "layer") if c in frame]
    return frame.sort_values(keys).reset_index(drop=True)


@pytest.mark.slow  # a LocalCluster of 2 spawned processes: about 30-60 s on 2 loaded cores
def test_local_dask_cluster_matches_the_local_run(tmp_path: Path) -> None:
    preset = tmp_path / "small.json"
    preset.write_text(json.dumps(SMALL))
    common = ["stability", "--preset", str(preset), "--corpus", str(Path(__file__))]
    assert main([*common, "--out", str(tmp_path / "local"), "--workers", "0"]) == 0
    assert main([*common, "--out", str(tmp_path / "dask"), "--executor", "dask",
                 "--workers", "2"]) == 0
    assert load_provenance(tmp_path / "dask")["executor"] == "ClientExecutor"
    local, dask = table(tmp_path / "local"), table(tmp_path / "dask")
    runs = local[local["case_id"].str.startswith(("train:", "init:"))]
    assert runs["case_id"].nunique() == 16 + 6 and (local["status"] != "error").all()
    pd.testing.assert_frame_equal(local, dask)
    assert load_samples(tmp_path / "local") == load_samples(tmp_path / "dask")


def test_scheduler_and_executor_are_exclusive(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    assert main(["stability", "--out", str(tmp_path), "--executor", "dask", "--scheduler",
                 "tcp://127.0.0.1:1"]) == 2
    assert "give one" in capsys.readouterr().err


def test_unreachable_scheduler_is_a_usage_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    assert main(["stability", "--out", str(tmp_path), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "--scheduler tcp://127.0.0.1:1: cannot connect" in capsys.readouterr().err
