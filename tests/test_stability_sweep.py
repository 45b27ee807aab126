"""The sweep driver: results in the shared vocabulary, crashing runs as error rows, a crashed
worker isolated, interruption + --resume, a foreign executor, presets and the CLI."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attnbench.variants  # noqa: F401  (registers the built-ins)
import pytest
import torch
from attnbench.cli import main
from attnbench.results import ResultsWriter, load_provenance, load_results, load_samples
from attnbench.stability.data import CorpusRef
from attnbench.stability.presets import PRESETS, PresetError, StabilityPreset
from attnbench.stability.sweep import run_jobs, run_stability
from attnbench.variants.blocks import PreLN
from attnbench.variants.registry import list_variants, register_block, unregister

TINY = {
    "model": {"d_model": 16, "n_heads": 2, "block_size": 16, "batch_size": 4},
    "attention": "sdpa",
    "train": {"steps": 8, "eval_every": 4, "eval_batches": 1, "grids": [
        {"blocks": ["post_ln", "pre_ln"], "depths": [2], "lrs": [1e-3, 1e-1],
         "warmups": [0, 0.25], "beta2s": [0.999], "seeds": [0]},
        {"blocks": ["qk_norm"], "depths": [2], "lrs": [1e-3, 1e-1], "warmups": [0],
         "seeds": [0]}]},
    "init": {"blocks": ["post_ln", "pre_ln"], "depths": [1, 2, 3], "seeds": [0],
             "inits": ["scaled", "unscaled"], "perturbation": 0.01, "draws": 1,
             "step_lr": 1e-3},
}
N_JOBS = 12 + 8 + 2  # init (2 schemes) + post/pre grid + qk_norm grid


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(textwrap.dedent(PreLN.__doc__ or "") * 20 + "the quick brown fox " * 200,
                    encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, corpus: str) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "res"
    run_stability(StabilityPreset("tiny", TINY).validated(), out, corpus=corpus, workers=0,
                  log=lambda _: None)
    return out


def test_results_use_the_vocabulary(finished: Path) -> None:
    frame = load_results(finished)
    assert (frame["suite"] == "stability").all() and (frame["status"] != "error").all()
    metrics = set(frame["metric"])
    assert {"final_val_loss", "init_loss", "unigram_loss", "diverged", "spikes", "max_logit",
            "lr_sensitivity", "lowest_diverging_lr", "grad_norm", "last_ffn_grad_norm",
            "hidden_norm", "output_change", "one_step_change", "reproduced"} <= metrics
    train = frame[frame["case_id"].str.startswith("train:")]
    assert train["case_id"].nunique() == 10
    assert set(train["verdict"]) <= {"healthy", "nan", "blowup", "unigram_collapse"}
    post = train[train["block"] == "post_ln"]  # every row records its regime
    assert set(post["beta2"]) == {0.999} and set(post["init"]) == {"scaled"}
    assert set(post["warmup"]) == {0, 2} and set(post["warmup_frac"]) == {0.0, 0.25}
    assert set(train[train["block"] == "qk_norm"]["beta2"]) == {0.95}  # the default
    init = frame[frame["case_id"].str.startswith("init:")]
    assert set(init["init"]) == {"scaled", "unscaled"}
    assert {"output_change", "output_change_all"} <= set(init["metric"])
    findings = frame[frame["metric"] == "reproduced"]
    assert set(findings["verdict"]) <= {"reproduced", "not reproduced", "inconclusive",
                                        "not measured"}
    assert set(findings["case_id"]) == {"finding:postln-needs-warmup",
                                        "finding:output-change-depth",
                                        "finding:qk-norm-bounds-logits",
                                        "finding:last-ffn-grad-depth"}
    assert findings["reason"].str.len().min() > 40  # the evidence, in words
    lrsens = frame[frame["metric"] == "lr_sensitivity"]
    assert set(lrsens["case_id"].str.split(":").str[0]) == {"lrsens"}
    assert len(lrsens) == 5  # post/pre x 2 warm-ups + qk_norm


def test_curves_and_provenance(finished: Path) -> None:
    samples = load_samples(finished)
    case = "train:pre_ln:sdpa:L2:lr0.001:wu0:b20.999:scaled:seed0"
    assert len(samples[(case, "train_loss")]) == 8 and len(samples[(case, "val_loss")]) == 3
    assert len(samples[(case, "grad_norm")]) == 8 and len(samples[(case, "max_logit")]) == 3
    prov = load_provenance(finished)
    assert prov["suite"] == "stability" and "qk_norm" in prov["variants"]
    assert prov["corpus"]["source"].endswith("text.txt") and prov["jobs_cpu_s"] > 0


@pytest.fixture
def broken_block() -> Iterator[str]:
    @register_block("test_broken_block")
    class Broken(PreLN):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("deliberately broken")

    yield "test_broken_block"
    unregister("test_broken_block")


def test_crashing_run_is_an_error_row(tmp_path: Path, corpus: str, broken_block: str) -> None:
    preset = StabilityPreset("tiny", TINY).validated().with_overrides([broken_block, "pre_ln"])
    run_stability(preset, tmp_path, corpus=corpus, workers=0, log=lambda _: None)
    frame = load_results(tmp_path)
    errors = frame[frame["status"] == "error"]
    assert set(errors["block"]) == {broken_block} and (errors["metric"] == "run").all()
    assert errors["reason"].str.contains("deliberately broken").all()
    pre = frame[frame["block"] == "pre_ln"]
    # its runs are too short to train healthy, so its lr sensitivity is skipped as undefined
    assert (pre[pre["metric"] != "lr_sensitivity"]["status"] == "ok").all()
    assert (pre["status"] != "error").all()


def test_interrupted_sweep_resumes(tmp_path: Path, corpus: str) -> None:
    preset = StabilityPreset("tiny", TINY).validated()
    seen: list[str] = []

    def interrupt_after_three(line: str) -> None:
        seen.append(line)
        if len(seen) == 4:  # the start line, then three finished jobs
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_stability(preset, tmp_path, corpus=corpus, workers=0, log=interrupt_after_three)
    assert load_results(tmp_path)["case_id"].nunique() == 3
    with pytest.raises(Exception, match="--resume"):
        run_stability(preset, tmp_path, corpus=corpus, workers=0, log=lambda _: None)
    lines: list[str] = []
    run_stability(preset, tmp_path, corpus=corpus, workers=0, resume=True, log=lines.append)
    assert f"{N_JOBS} jobs, {N_JOBS - 3} to run" in lines[0]
    frame = load_results(tmp_path)
    assert not frame.fillna({"layer": -1}).duplicated(["case_id", "metric", "layer"]).any()
    runs = frame[frame["case_id"].str.startswith(("train:", "init:"))]
    assert runs["case_id"].nunique() == N_JOBS
    # A resume of the finished sweep runs nothing and rewrites the derived rows in place.
    lines.clear()
    run_stability(preset, tmp_path, corpus=corpus, workers=0, resume=True, log=lines.append)
    assert f"{N_JOBS} jobs, 0 to run" in lines[0]
    again = load_results(tmp_path)
    assert len(again) == len(frame)
    assert not again.fillna({"layer": -1}).duplicated(["case_id", "metric", "layer"]).any()


def test_force_replaces_a_previous_run(tmp_path: Path, corpus: str) -> None:
    preset = StabilityPreset("tiny", TINY).validated().with_overrides(["pre_ln"])
    (tmp_path / "notes.txt").write_text("kept")
    for _ in range(2):
        run_stability(preset, tmp_path, corpus=corpus, workers=0, force=True, log=lambda _: None)
    assert not load_results(tmp_path).duplicated(["case_id", "metric", "layer"]).any()
    assert (tmp_path / "notes.txt").read_text() == "kept"
    with pytest.raises(ValueError, match="exclude each other"):
        run_stability(preset, tmp_path, corpus=corpus, workers=0, force=True, resume=True)


def test_any_executor_runs_the_sweep(tmp_path: Path, corpus: str) -> None:
    """The driver only needs submit() and futures: a thread pool stands in for a cluster."""
    preset = StabilityPreset("tiny", TINY).validated().with_overrides(["pre_ln"])
    with ThreadPoolExecutor(2) as pool:
        run_stability(preset, tmp_path, corpus=corpus, executor=pool, log=lambda _: None)
    assert load_provenance(tmp_path)["executor"] == "ThreadPoolExecutor"
    frame = load_results(tmp_path)
    runs = frame[frame["case_id"].str.startswith("train:")]
    assert len(runs) and (runs["status"] == "ok").all()


@pytest.mark.slow  # three spawned pools: about 10 s idle, 30 s on a loaded machine
def test_dead_worker_is_isolated(tmp_path: Path, corpus: str,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A job that kills its worker process breaks the pool; the innocent jobs are rerun and
    only the killer becomes an error row."""
    plugin = tmp_path / "stability_killer_plugin.py"
    plugin.write_text(textwrap.dedent("""
        import os
        from attnbench.variants.blocks import PreLN
        from attnbench.variants.registry import register_block

        @register_block("test_killer_block")
        class Killer(PreLN):
            def forward(self, x):
                os._exit(3)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit sys.path
    preset = StabilityPreset("tiny", {**TINY, "init": {**TINY["init"], "depths": [1],
                                                       "inits": ["scaled"]}}).validated()
    preset = preset.with_overrides(["pre_ln", "test_killer_block"])
    jobs = preset.init_jobs(CorpusRef.of(corpus))
    writer = ResultsWriter(tmp_path / "res", "stability")
    counts = run_jobs(jobs, writer, workers=1, plugins=("stability_killer_plugin",),
                      log=lambda _: None)
    assert counts["ok"] == 1 and counts["error"] == 1
    frame = load_results(tmp_path / "res")
    error = frame[frame["status"] == "error"]
    assert list(error["block"]) == ["test_killer_block"]
    assert "worker process died" in error["reason"].iloc[0]


def test_presets_are_valid_data() -> None:
    ref = CorpusRef(None, "0" * 64)
    sizes = {name: len(StabilityPreset.load(name).train_jobs(ref)) for name in PRESETS}
    blocks = len(list_variants("block"))
    assert sizes == {"quick": 2 * 1 * 2 * 3 + 2 * 2 * 3,
                     "standard": (2 * 2 * 3 * 2 * 2 * 3 + 2 * 1 * 3 * 2 * 1 * 3
                                  + 2 * 1 * 1 * 1 * 1 * 3 + 2 * 1 * 2 * 1 * 1 * 3),
                     "full": blocks * 6 * 7 * 2 * 2 * 3}
    quick = StabilityPreset.load("quick")
    assert {g for grid in quick.data["train"]["grids"] for g in grid["blocks"]} == \
        {"post_ln", "pre_ln", "qk_norm"}
    assert all(len(grid["seeds"]) >= 3 for grid in quick.data["train"]["grids"])
    standard = StabilityPreset.load("standard").train_jobs(ref)
    assert {j.beta2 for j in standard} == {0.95, 0.999} and {j.depth for j in standard} == \
        {2, 6, 12}
    assert {j.warmup for j in standard} == {0, 30, 99}  # 10 % and 33 % of 300 steps
    full = StabilityPreset.load("full").data["train"]["grids"][0]
    assert full["lrs"] == [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
    assert min(full["depths"]) == 2 and max(full["depths"]) == 12 and len(full["seeds"]) == 3


def test_all_blocks_come_from_the_registry(broken_block: str) -> None:
    """'all' is expanded when the jobs are made, so a plugin block is swept too."""
    ref = CorpusRef(None, "0" * 64)
    blocks = {j.block for j in StabilityPreset.load("quick").init_jobs(ref)}
    assert blocks == {v.name for v in list_variants("block")} and broken_block in blocks


def test_preset_errors(tmp_path: Path) -> None:
    with pytest.raises(PresetError, match="expected one of"):
        StabilityPreset.load("nonexistent")
    bad = json.loads(json.dumps(TINY))
    bad["train"]["steps"] = 10
    with pytest.raises(PresetError, match="multiple of"):
        StabilityPreset("bad", bad).validated()
    bad = json.loads(json.dumps(TINY))
    bad["train"]["grids"][0]["lrs"] = []
    with pytest.raises(PresetError, match=r"grids\[0\]\.lrs"):
        StabilityPreset("bad", bad).validated()
    for key, value, message in (("warmups", [1.5], "fractions of the steps"),
                                ("warmups", [8], "warm-up steps"),
                                ("beta2s", [1.0], r"beta2s: each must be in \(0, 1\)"),
                                ("inits", ["xavier"], "inits: expected a non-empty list of")):
        bad = json.loads(json.dumps(TINY))
        bad["train"]["grids"][0][key] = value
        with pytest.raises(PresetError, match=message):
            StabilityPreset("bad", bad).validated()
    path = tmp_path / "p.json"
    path.write_text("{not json")
    with pytest.raises(PresetError, match="not a readable JSON"):
        StabilityPreset.load(str(path))


def test_cli_runs_and_prints_findings(tmp_path: Path, corpus: str,
                                      capsys: pytest.CaptureFixture) -> None:
    preset = tmp_path / "tiny.json"
    preset.write_text(json.dumps(TINY))
    code = main(["stability", "--preset", str(preset), "--corpus", corpus, "--out",
                 str(tmp_path / "out"), "--workers", "0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "postln-needs-warmup:" in out and "qk-norm-bounds-logits:" in out


@pytest.mark.parametrize("args, message", [
    (["--corpus", "/nonexistent/c.txt"], "no such file"),
    (["--variant", "nonexistent_block"], "unknown variant"),
    (["--variant", "sdpa"], "expected a block variant"),
    (["--attention", "post_ln"], "expected an attention variant"),
    (["--workers", "-1"], "--workers"),
    (["--preset", "nonexistent"], "expected one of"),
])
def test_cli_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str],
                          message: str) -> None:
    assert main(["stability", "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err


def test_resume_refuses_another_configuration(finished: Path, corpus: str) -> None:
    other = StabilityPreset("tiny", TINY).validated().with_overrides(["pre_ln"])
    with pytest.raises(Exception, match="another configuration"):
        run_stability(other, finished, corpus=corpus, workers=0, resume=True)
    with pytest.raises(Exception, match="another corpus"):
        run_stability(StabilityPreset("tiny", TINY).validated(), finished, workers=0, resume=True)
