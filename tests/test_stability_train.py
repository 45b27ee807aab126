"""Training runs: bitwise reproducibility (in-process and across processes), the schedule,
the rows a run writes, a NaN run, and the init diagnostics."""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator

import attnbench.variants  # noqa: F401  (registers the built-ins)
import pytest
import torch
from attnbench.stability.common import ModelSpec
from attnbench.stability.data import CorpusRef
from attnbench.stability.diagnostics import InitJob, run_init
from attnbench.stability.sweep import execute, local_pool
from attnbench.stability.train import TrainJob, lr_at, run_train
from attnbench.variants.blocks import PreLN
from attnbench.variants.registry import register_block, unregister

TINY = ModelSpec(d_model=16, n_heads=2, block_size=16, batch_size=4)


@pytest.fixture(scope="module")
def corpus() -> CorpusRef:
    return CorpusRef.of(None)


def tiny_job(corpus: CorpusRef, **changes: object) -> TrainJob:
    fields = dict(block="pre_ln", attention="sdpa", depth=2, lr=3e-3, warmup=2, seed=0,
                  steps=12, eval_every=4, eval_batches=1, model=TINY, corpus=corpus)
    return TrainJob(**{**fields, **changes})


def test_same_job_same_curves_bitwise(corpus: CorpusRef) -> None:
    first, second = run_train(tiny_job(corpus)), run_train(tiny_job(corpus))
    for metric in ("train_loss", "val_loss", "grad_norm", "max_logit"):
        assert first.samples[metric] == second.samples[metric]  # exact float equality
    assert len(first.samples["train_loss"]) == 12 and len(first.samples["val_loss"]) == 4


def test_same_curve_in_a_worker_process(corpus: CorpusRef) -> None:
    """The sweep's path: a spawned worker must reproduce the in-process curve bit for bit."""
    job = tiny_job(corpus)
    with local_pool(1) as pool:
        remote = pool.submit(execute, job).result(timeout=120)
    assert remote.samples["train_loss"] == run_train(job).samples["train_loss"]


def test_seed_changes_the_curve(corpus: CorpusRef) -> None:
    a, b = run_train(tiny_job(corpus)), run_train(tiny_job(corpus, seed=1))
    assert a.samples["train_loss"] != b.samples["train_loss"]


def test_jobs_are_plain_picklable_data(corpus: CorpusRef) -> None:
    job = tiny_job(corpus)
    assert pickle.loads(pickle.dumps(job)) == job
    assert len(pickle.dumps(job)) < 2000  # the corpus travels as a path and a hash


def test_run_restores_thread_count(corpus: CorpusRef) -> None:
    before = torch.get_num_threads()
    run_train(tiny_job(corpus, steps=4))
    assert torch.get_num_threads() == before


def test_schedule() -> None:
    assert lr_at(1, 1.0, 4, 100) == pytest.approx(0.25)
    assert lr_at(4, 1.0, 4, 100) == pytest.approx(1.0)
    assert lr_at(100, 1.0, 4, 100) == pytest.approx(0.1)
    assert lr_at(1, 1.0, 0, 100) == pytest.approx(1.0, abs=1e-3)
    assert lr_at(52, 1.0, 4, 100) == pytest.approx(0.55)  # cosine half-way


def test_rows_follow_the_vocabulary(corpus: CorpusRef) -> None:
    outcome = run_train(tiny_job(corpus))
    metrics = {r["metric"]: r for r in outcome.rows}
    assert set(metrics) == {"final_val_loss", "init_loss", "unigram_loss", "diverged", "spikes",
                            "max_logit"}
    for row in outcome.rows:
        assert row["status"] == "ok" and row["variant"] == "pre_ln"
        assert {"block", "attention", "depth", "lr", "warmup", "seed", "steps", "d_model",
                "verdict"} <= row.keys()
    assert metrics["final_val_loss"]["value"] == outcome.samples["val_loss"][-1]
    assert metrics["init_loss"]["value"] == pytest.approx(math.log(len(
        corpus.load(TINY.block_size).vocab)), abs=0.3)


@pytest.fixture
def nan_block() -> Iterator[str]:
    @register_block("test_nan_block")
    class NaNBlock(PreLN):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * math.nan

    yield "test_nan_block"
    unregister("test_nan_block")


def test_nan_run_stops_and_is_judged_nan(corpus: CorpusRef, nan_block: str) -> None:
    outcome = run_train(tiny_job(corpus, block=nan_block))
    rows = {r["metric"]: r for r in outcome.rows}
    assert rows["diverged"]["value"] == 1 and rows["diverged"]["verdict"] == "nan"
    assert math.isnan(rows["final_val_loss"]["value"])
    assert "stopped at step 1" in rows["final_val_loss"]["reason"]
    assert len(outcome.samples["train_loss"]) == 1


def test_init_diagnostics_rows(corpus: CorpusRef) -> None:
    job = InitJob("post_ln", "sdpa", 3, 0, 1e-2, 2, 1e-3, TINY, corpus)
    outcome = run_init(job)
    by_metric: dict[str, list[dict]] = {}
    for row in outcome.rows:
        by_metric.setdefault(row["metric"], []).append(row)
    assert [r["layer"] for r in by_metric["grad_norm"]] == [1, 2, 3]
    assert [r["layer"] for r in by_metric["hidden_norm"]] == [0, 1, 2, 3]
    for metric in ("last_ffn_grad_norm", "output_change", "one_step_change"):
        assert len(by_metric[metric]) == 1 and by_metric[metric][0]["value"] > 0
    # Post-LN ends every block with a LayerNorm of unit gain: per-token norm sqrt(d_model).
    assert by_metric["hidden_norm"][-1]["value"] == pytest.approx(math.sqrt(16), rel=1e-3)
    assert run_init(job).rows == outcome.rows  # deterministic too


def test_beta2_and_init_reach_the_run(corpus: CorpusRef) -> None:
    base = run_train(tiny_job(corpus))
    other_beta2 = run_train(tiny_job(corpus, beta2=0.999))
    unscaled = run_train(tiny_job(corpus, init="unscaled"))
    assert other_beta2.samples["train_loss"] != base.samples["train_loss"]
    assert unscaled.samples["val_loss"][0] != base.samples["val_loss"][0]  # other weights
    row = other_beta2.rows[0]
    assert (row["beta2"], row["init"], row["warmup"], row["warmup_frac"]) == (0.999, "scaled",
                                                                            2, 2 / 12)
    assert ":b20.999:scaled:" in other_beta2.case_id


def test_init_schemes() -> None:
    from attnbench.variants.gpt import GPT, GPTConfig

    def proj_std(init: str) -> float:
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=50, d_model=64, n_layers=8, block="pre_ln", init=init))
        return torch.cat([b.ffn.linear2.weight.flatten() for b in model.blocks]).std().item()

    assert proj_std("scaled") == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert proj_std("unscaled") == pytest.approx(0.02, rel=0.05)
    with pytest.raises(ValueError, match="init: expected one of"):
        GPT(GPTConfig(vocab_size=50, init="xavier"))


def test_admin_output_change_perturbs_sublayer_weights_only(corpus: CorpusRef) -> None:
    """Admin's measure tells DeepNorm (small beta-scaled branches, alpha-weighted stream) from
    Post-LN; perturbing every parameter relative to its rms, norm gains included, gives both
    the same number, which is how the earlier measure read DeepNorm == Post-LN."""
    from attnbench.stability.diagnostics import output_change, sublayer_weights

    spec = ModelSpec(d_model=32, n_heads=2, block_size=16, batch_size=4)
    data = corpus.load(spec.block_size)
    x, _ = data.val_batches(1, spec.batch_size, spec.block_size)[0]
    changes = {}
    for block in ("post_ln", "deepnorm"):
        model = spec.build(len(data.vocab), block, "sdpa", 6, 0, "unscaled")
        assert len(sublayer_weights(model)) == 4 * 6  # qkv, proj, two FFN linears per block
        admin = output_change(model, x, 0.01, 2, torch.Generator().manual_seed(0))
        every = output_change(model, x, 0.01, 2, torch.Generator().manual_seed(0),
                              every_parameter=True)
        changes[block] = admin, every
    assert changes["deepnorm"][0] < changes["post_ln"][0] / 3
    assert changes["deepnorm"][1] == pytest.approx(changes["post_ln"][1], rel=0.1)
