"""The verification library and ``attnbench verify``: the rule, agreement on drawn cases, CLI.

Agreement tests are parametrized over the registry (every attention variant, including
``triton_flash`` when registered) and each dtype; hypothesis draws shapes and a seed within the
variant's declared capabilities, and unsupported combinations skip with the registry's reason.
Variants that run in the Triton CPU interpreter get a fifth of the examples (N <= 128 and
B * Hq <= 4 always), so the suite stays inside its budget on 2 cores.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import attnbench.variants  # noqa: F401
import mutants
import pytest
import torch
from attnbench.cli import main
from attnbench.results import load_provenance, load_results
from attnbench.variants.registry import (
    Case,
    dtype_name,
    get,
    list_variants,
    not_supported_reasons,
    register_attention,
    unregister,
)
from attnbench.verify import CHECK_NAMES, reference_gradcheck, verify_attention
from attnbench.verify.agreement import check_case
from attnbench.verify.strategies import cases, fit_case, seeds
from attnbench.verify.tolerance import Budget, compare, rounding_floor
from hypothesis import example, given, settings

ATTENTION = [v.name for v in list_variants("attention")]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def interpreted(name: str) -> bool:
    """Declared untimeable here: runs in an interpreter (Triton's: ~1000x slower than compiled)."""
    return get(name).untimeable_reason() is not None


def examples(name: str) -> int:
    n = settings.default.max_examples
    return max(3, n // 5) if interpreted(name) else n


def skip_unless_runs(name: str, case: Case) -> None:
    reasons = not_supported_reasons(get(name), case)
    if reasons:
        pytest.skip("; ".join(reasons))


# ---------------------------------------------------------------- the rule itself


def test_floor_is_rounding_noise_near_the_data():
    ref = torch.tensor([1.0, 0.1, -3.0], dtype=torch.float64)
    assert rounding_floor(ref, torch.float64) < 1e-15
    assert 0 < rounding_floor(ref, torch.float16) <= 2 * 2 * 2**-10 * 4


def test_budget_ratio_and_bound():
    b = Budget(pt_error=1e-3, floor=1e-4, C=2)
    assert b.allowed == pytest.approx(2.1e-3)
    assert b.ratio(1.5e-3) == pytest.approx(1.5)
    assert b.ratio_bound == pytest.approx(2.1)
    assert Budget(0.0, 1e-4, 2).ratio(0.0) == 0 and Budget(0.0, 1e-4, 2).ratio(1e-5) == math.inf
    total = b + Budget(2e-3, 1e-4, 2)
    assert total.allowed == pytest.approx(2 * 3e-3 + 2e-4)


def test_compare_passes_the_textbook_and_fails_a_shifted_result():
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(64, generator=gen, dtype=torch.float64)
    pt = ref.half()
    assert compare("out", pt, ref, [pt], 2).passed
    bad = compare("out", (ref + 0.05).half(), ref, [pt], 2)
    assert not bad.passed and bad.ratio > 10


def test_compare_nan_fails_and_where_excludes_rows():
    ref = torch.ones(2, 3, dtype=torch.float64)
    out = torch.tensor([[1.0, 1.0, 1.0], [math.nan] * 3])
    assert compare("out", out, ref, [ref.float()], 2).error == math.inf
    keep = torch.tensor([[True], [False]])
    assert compare("out", out, ref, [ref.float()], 2, where=keep).passed


def test_missing_gradient_counts_as_zero():
    ref = torch.ones(4, dtype=torch.float64)
    assert not compare("dv", None, ref, [ref.float()], 3).passed


def test_reference_passes_float64_gradcheck():
    assert reference_gradcheck().passed


# ---------------------------------------------------------------- every variant, drawn cases

EDGE_CASES = [Case(N=1, S=1), Case(N=1, S=97, causal=True), Case(N=97, S=1, causal=True),
              Case(B=1, Hq=4, Hkv=1, N=65, S=127, D=40, Dv=24, causal=True, mask=True),
              Case(B=2, Hq=2, N=64, S=64, D=64, causal=True)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
@pytest.mark.parametrize("name", ATTENTION)
def test_agrees_with_float64_reference(name, dtype):
    """Output, gradients and (where exposed) log-sum-exp pass the tolerance rule."""
    skip_unless_runs(name, Case(dtype=dtype))
    variant = get(name)

    @settings(max_examples=examples(name))
    @given(case=cases(variant, dtype), seed=seeds())
    @example(case=EDGE_CASES[0], seed=0)
    @example(case=EDGE_CASES[1], seed=1)
    @example(case=EDGE_CASES[2], seed=2)
    @example(case=EDGE_CASES[3], seed=3)
    @example(case=EDGE_CASES[4], seed=4)
    def agrees(case: Case, seed: int) -> None:
        case = fit_case(variant, replace(case, dtype=dtype, backward=variant.caps.backward))
        for result in check_case(variant, case, seed):
            assert not result.failed, f"{case.label()} seed={seed}: {result.message}"

    agrees()


@pytest.mark.parametrize("name", ATTENTION)
def test_every_real_variant_passes_the_whole_plan_in_float32(name):
    skip_unless_runs(name, Case())
    results = verify_attention(get(name), torch.float32, checks=CHECK_NAMES)  # no defaults
    assert [r.check for r in results if r.check] and {r.check for r in results} == set(
        CHECK_NAMES)
    failed = [f"{r.check} [{r.case}]: {r.message}" for r in results if r.failed]
    assert not failed, "\n".join(failed)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
@pytest.mark.parametrize("name", [n for n in ATTENTION if not interpreted(n)])
def test_agrees_on_larger_cases(name, dtype):
    """Nightly-style sweep: longer sequences (up to 512) and more heads than the fast test."""
    skip_unless_runs(name, Case(dtype=dtype))
    variant = get(name)

    @settings(max_examples=settings.default.max_examples * 2)
    @given(case=cases(variant, dtype, max_len=512, max_heads_total=8), seed=seeds())
    def agrees(case: Case, seed: int) -> None:
        for result in check_case(variant, case, seed):
            assert not result.failed, f"{case.label()} seed={seed}: {result.message}"

    agrees()


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
@pytest.mark.parametrize("name", ATTENTION)
def test_whole_plan_on_cuda(name, dtype):
    """The GPU machine: compiled Triton, FlashAttention-2, memory-efficient and cuDNN SDPA."""
    skip_unless_runs(name, Case(dtype=dtype, device="cuda"))
    results = verify_attention(get(name), dtype, "cuda")
    failed = [f"{r.check} [{r.case}]: {r.message}" for r in results if r.failed]
    assert not failed, "\n".join(failed)


# ---------------------------------------------------------------- declared semantics


@pytest.fixture
def declared():
    """Register ``fn`` under a test-only name with the given capabilities, removed after."""
    names = []

    def register(name, fn, **caps):
        register_attention(name, **caps)(fn)
        names.append(name)
        return get(name)

    yield register
    for name in names:
        unregister(name)


def _bottom_right(q, k, v, *, causal=False, scale=None, attn_mask=None):
    """Textbook attention with FlashAttention >= 2.1's bottom-right causal alignment."""
    return mutants.broken(q, k, v, causal=causal, scale=scale, attn_mask=attn_mask,
                          alignment="bottom_right")


def test_a_declared_bottom_right_variant_is_judged_bottom_right(declared):
    variant = declared("test_bottom_right", _bottom_right, causal_alignment="bottom_right")
    results = verify_attention(variant, torch.float32, checks=["causal", "masked_rows"])
    assert all(r.passed for r in results), [r.message for r in results if not r.passed]
    n_gt_s = next(r for r in results if "N90xS30" in r.case)
    assert "fully masked rows are NaN as declared" in n_gt_s.message


def _raises_on_empty_rows(q, k, v, *, causal=False, scale=None, attn_mask=None):
    """naive, but refuses a row that can see no key."""
    if attn_mask is not None and not attn_mask.any(dim=-1).all():
        raise ValueError("attn_mask leaves a query row with no key")
    return get("naive").fn(q, k, v, causal=causal, scale=scale, attn_mask=attn_mask)


@pytest.mark.parametrize("fn, passes", [(_raises_on_empty_rows, True),
                                        (get("naive").fn, False)])
def test_fully_masked_rows_declared_error_must_raise(declared, fn, passes):
    variant = declared("test_error_rows", fn, fully_masked_rows="error")
    result = verify_attention(variant, torch.float32, checks=["masked_rows"])[0]
    assert result.passed is passes, result.message


# ---------------------------------------------------------------- the command


RAISES = "test_verify_raises"


@pytest.fixture
def raising_variant():
    def fn(q, k, v, *, causal=False, scale=None, attn_mask=None):
        """Fails like a kernel launch would."""
        raise RuntimeError("simulated launch failure")

    register_attention(RAISES)(fn)
    yield RAISES
    unregister(RAISES)


def test_cli_writes_json_and_a_results_directory(tmp_path, capsys):
    report, out_dir = tmp_path / "v.json", tmp_path / "results"
    rc = main(["verify", "--variant", "naive", "tiled", "--dtype", "fp32", "--check", "out",
               "grad", "masked_rows", "--json", str(report), "--out", str(out_dir)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "attention, float32" in printed and "tiled" in printed
    data = json.loads(report.read_text())
    assert data["passed"] and data["failed"] == 0 and data["dtypes"] == ["float32"]
    assert {r["check"] for r in data["results"]} == {"gradcheck", "out", "grad", "masked_rows"}
    table = load_results(out_dir)
    assert set(table["suite"]) == {"verify"}
    assert {"check", "dtype", "case", "direction", "bound"} <= set(table.columns)
    assert set(table["metric"]) == {"passed", "error_ratio"}
    grad = table[(table.variant == "tiled") & (table.check == "grad")]
    assert set(grad["direction"]) == {"grad"} and (grad[grad.metric == "passed"].value == 1).all()
    ratios = table[table.metric == "error_ratio"]
    assert (ratios.value <= ratios.bound).all()
    assert "naive" in load_provenance(out_dir)["variants"]


def test_cli_refuses_a_used_results_directory_before_running(tmp_path, capsys):
    argv = ["verify", "--variant", "naive", "--dtype", "fp32", "--check", "out", "--out",
            str(tmp_path)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "already holds results" in captured.err and "attention, float32" not in captured.out


def test_cli_records_a_raising_variant_as_a_failure(raising_variant, tmp_path, capsys):
    report = tmp_path / "v.json"
    rc = main(["verify", "--variant", RAISES, "--dtype", "fp32", "--check", "out", "grad",
               "--json", str(report)])
    printed = capsys.readouterr().out
    assert rc == 1
    assert "ERROR" in printed and "simulated launch failure" in printed
    errors = [r for r in json.loads(report.read_text())["results"] if r["status"] == "error"]
    assert {r["check"] for r in errors} == {"out", "grad"}


@pytest.mark.parametrize("argv, words", [
    (["--variant", "no_such_variant"], "unknown variant(s) no_such_variant; registered:"),
    (["--check", "no_such_check"], "unknown check(s) no_such_check; known: contract, out"),
    (["--dtype", "fp8"], "dtype: expected one of fp32, fp16, bf16, fp64; got 'fp8'"),
])
def test_cli_bad_arguments_are_one_line_and_exit_2(argv, words, capsys):
    assert main(["verify", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and words in err


def test_cli_skips_say_why(capsys):
    rc = main(["verify", "--variant", "sdpa_flash", "sdpa_cudnn", "--dtype", "fp32", "--check",
               "out", "value_dim", "lse"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "value head dim Dv=48 != D=32 not supported: sdpa_flash (value_dim)" in printed
    assert "does not expose its log-sum-exp: sdpa_flash (lse)" in printed
    if not torch.cuda.is_available():
        assert "sdpa_cudnn: nothing ran: device cpu not supported (supports cuda)" in printed


@pytest.mark.slow
def test_default_verify_passes_on_every_registered_variant(tmp_path, capsys):
    """`attnbench verify` with no arguments: all variants, blocks, default dtypes."""
    rc = main(["verify", "--json", str(tmp_path / "v.json")])
    assert rc == 0, capsys.readouterr().out
