"""Correctness of our Triton FlashAttention-2 kernels (kernels/), forward and backward.

Oracle: the FlashAttention rule (docs: reference section 3). `ref` is textbook attention in
float64 cast to the output dtype, `pt` the same textbook math run in the test dtype; a result
passes when max|out - ref| <= C * max|pt - ref| + floor, C = 2 for outputs, 3 for gradients,
floor = 2 * max|(ref + 0.3) - 0.3 - ref| in the output dtype (its rounding noise near the data).

Without CUDA the kernels run in the Triton interpreter (~5-10 ms per 64x64 tile, one fixed
64x64 configuration), so the lengths here straddle 64 and cases stay at B*H <= 4, N, S <= 129.
Measured error ratios are kept in RATIOS and printed at the end of the module (pytest -s).
"""

import os

import torch

if not torch.cuda.is_available():  # must precede the first import of triton-jitted kernels
    os.environ.setdefault("TRITON_INTERPRET", "1")

import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402

import pytest  # noqa: E402
from attnbench.kernels import interpreter_active, triton_available  # noqa: E402
from attnbench.kernels.flash_attn import (  # noqa: E402
    flash_attention,
    flash_attention_backward,
    flash_attention_forward,
)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

REASON = triton_available()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"Triton kernels: {REASON}")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
RATIOS: dict = defaultdict(float)  # (dtype, quantity) -> max measured max|out-ref| / max|pt-ref|


# ---------------------------------------------------------------- reference and oracle


def textbook(q, k, v, causal: bool, scale: float):
    """softmax(scale q k^T, top-left causal mask) v in the inputs' dtype; returns (out, lse)."""
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)  # (B, Hq, S, D)
    v = v.repeat_interleave(group, dim=1)  # (B, Hq, S, Dv)
    logits = (q @ k.transpose(-1, -2)) * scale  # (B, Hq, N, S)
    if causal:
        N, S = logits.shape[-2:]
        visible = torch.ones(N, S, dtype=torch.bool, device=q.device).tril()
        logits = logits.masked_fill(~visible, float("-inf"))
    return torch.softmax(logits, dim=-1) @ v, torch.logsumexp(logits, dim=-1)


def check(name: str, out, ref64, pt, C: float, degenerate: bool = False) -> None:
    """FlashAttention rule; records the ratio max|out-ref| / max|pt-ref|.

    degenerate (N == 1 or S == 1): the textbook then does no reduction along that length and
    is nearly exact, so C * max|pt - ref| says nothing about what the dtype can achieve, while
    the kernel's exp2-domain recomputation of P costs a few ulps. There the floor is raised to
    8 ulps of the largest reference value, or 64 eps for a reference that is exactly zero (dQ
    and dK when every query sees a single key: the kernel computes them as dP - delta, the
    difference of two rounded sums). Ratios of those cases are recorded under "1-len".
    """
    assert not torch.isnan(out).any(), f"{name}: NaN in kernel result"
    ref = ref64.to(out.dtype)
    err = (out.double() - ref.double()).abs().max().item()
    pt_err = (pt.double() - ref.double()).abs().max().item()
    floor = 2 * ((ref + 0.3) - 0.3 - ref).abs().max().item()
    if degenerate:
        eps, top = torch.finfo(out.dtype).eps, ref64.abs().max().item()
        floor = max(floor, 8 * eps * top) if top > 0 else 64 * eps
    if pt_err > 0:
        key = (str(pt.dtype).replace("torch.", ""), name + (" 1-len" if degenerate else ""))
        RATIOS[key] = max(RATIOS[key], err / pt_err)
    assert err <= C * pt_err + floor, (
        f"{name}: max|out-ref| = {err:.3g} > {C} * max|pt-ref| ({pt_err:.3g}) + {floor:.3g}")


def make_inputs(B, Hq, Hkv, N, S, D, Dv, dtype, layout="contiguous", seed=0):
    """q, k, v, dO in `dtype` with the requested memory layout (values identical across layouts).

    contiguous: plain; transposed: stored (B, N, H, D) and viewed (B, H, N, D);
    strided_d: every other element of a 2x wider head dim (stride 2 on the last axis);
    poisoned: views into NaN-filled buffers 7 rows and 5 columns larger, so any read that
    escapes the boundary masks turns the result into NaN.
    """
    g = torch.Generator().manual_seed(seed)
    shapes = [(B, Hq, N, D), (B, Hkv, S, D), (B, Hkv, S, Dv), (B, Hq, N, Dv)]
    tensors = []
    for shape in shapes:
        x = torch.randn(shape, generator=g).to(dtype=dtype, device=DEVICE)
        if layout == "transposed":
            x = x.transpose(1, 2).contiguous().transpose(1, 2)
        elif layout == "strided_d":
            wide = torch.full((*shape[:3], 2 * shape[3]), float("nan"), dtype=dtype,
                              device=DEVICE)
            wide[..., ::2] = x
            x = wide[..., ::2]
        elif layout == "poisoned":
            x = poisoned_view(shape, dtype, fill=x)
        tensors.append(x)
    return tensors


def poisoned_view(shape, dtype, fill=None):
    """A view of `shape` inside a NaN buffer padded by 7 rows and 5 columns."""
    buf = torch.full((*shape[:2], shape[2] + 7, shape[3] + 5), float("nan"), dtype=dtype,
                     device=DEVICE)
    view = buf[:, :, : shape[2], : shape[3]]
    if fill is not None:
        view.copy_(fill)
    return view


def run_case(B=1, Hq=2, Hkv=2, N=65, S=65, D=64, Dv=None, causal=False, dtype=F32,
             scale=None, layout="contiguous"):
    """Kernel forward + backward against float64 reference and the in-dtype textbook."""
    Dv = D if Dv is None else Dv
    q, k, v, do = make_inputs(B, Hq, Hkv, N, S, D, Dv, dtype, layout)
    sc = 1 / math.sqrt(D) if scale is None else scale

    out, lse = flash_attention_forward(q, k, v, causal, scale)
    dq, dk, dv = flash_attention_backward(do, q, k, v, out, lse, causal, scale)

    def grads(dt):
        leaves = [x.detach().to(dt).requires_grad_() for x in (q, k, v)]
        o, l = textbook(*leaves, causal, sc)
        return (o, l, *torch.autograd.grad(o, leaves, do.to(dt)))

    ref, pt = grads(torch.float64), grads(dtype)
    for name, res, r, p, C in zip(("out", "lse", "dq", "dk", "dv"), (out, lse, dq, dk, dv),
                                  ref, pt, (2, 2, 3, 3, 3), strict=True):
        assert res.shape == r.shape, f"{name}: shape {tuple(res.shape)} != {tuple(r.shape)}"
        check(name, res, r, p, C, degenerate=min(N, S) == 1)


@pytest.fixture(scope="module", autouse=True)
def _print_ratios():
    yield
    if RATIOS:
        print("\nmax error ratio max|out-ref| / max|pt-ref| (pass: <= 2 outputs, 3 grads):")
        for (dtype, name), ratio in sorted(RATIOS.items()):
            print(f"  {dtype:9s} {name:10s} {ratio:.3f}")


# ---------------------------------------------------------------- sweeps

# Lengths straddle the interpreter's 64-wide tiles; N != S both ways; N or S of 1.
LENGTHS = [(1, 1), (1, 65), (65, 1), (15, 15), (16, 16), (17, 17), (15, 100), (63, 63),
           (64, 64), (65, 65), (100, 100), (129, 129), (65, 17), (129, 64), (63, 129), (100, 37),
           (256, 256), (193, 256)]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("N,S", LENGTHS, ids=[f"N{n}-S{s}" for n, s in LENGTHS])
def test_lengths(N, S, causal):
    run_case(N=N, S=S, causal=causal)


# fp32 at D = 256: max|out - ref| measured 1.2-2.9x max|pt - ref| over 6 seeds (grads up to 3.6x)
# under the interpreter, whose tl.dot is np.matmul: over K = 256 it sums 2.3x less accurately
# than torch's sgemm that the textbook uses, so C = 2 is a coin flip there. Not a kernel bug;
# fp16/bf16 at D = 256 must pass.
FP32_D256 = pytest.mark.xfail(interpreter_active(), strict=False,
                              reason="interpreter np.matmul less accurate than sgemm at K=256")
HEAD_DIMS = [16, 32, 40, 59, 64, 80, 111, 128, pytest.param(256, marks=FP32_D256)]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("D", HEAD_DIMS)
def test_head_dims(D, causal):
    run_case(N=65, S=97, D=D, causal=causal)


@pytest.mark.parametrize("D,Dv", [(40, 64), (64, 16), (128, 80)])
def test_value_head_dim_differs(D, Dv):
    run_case(N=65, S=80, D=D, Dv=Dv, causal=True)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("B,Hq,Hkv", [(1, 4, 2), (1, 4, 1), (2, 2, 1)])
def test_gqa(B, Hq, Hkv, causal):
    run_case(B=B, Hq=Hq, Hkv=Hkv, N=65, S=100, causal=causal)


CASES_16BIT = [(65, 65, 64, 2, 2), (100, 129, 40, 4, 2), (129, 37, 80, 2, 1), (17, 63, 128, 2, 2),
               (65, 97, 256, 2, 1)]


@pytest.mark.parametrize("dtype", [F16, BF16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("N,S,D,Hq,Hkv", CASES_16BIT)
def test_half_precision(N, S, D, Hq, Hkv, causal, dtype):
    run_case(Hq=Hq, Hkv=Hkv, N=N, S=S, D=D, causal=causal, dtype=dtype)


@pytest.mark.parametrize("scale,causal", [(0.3, True), (2.0, False), (1e-3, True)])
def test_explicit_scale(scale, causal):
    run_case(N=65, S=100, D=40, causal=causal, scale=scale)


@pytest.mark.parametrize("dtype", [F32, F16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("layout", ["transposed", "strided_d", "poisoned"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_layouts(layout, causal, dtype):
    run_case(Hq=2, Hkv=1, N=65, S=100, D=40, causal=causal, dtype=dtype, layout=layout)


@settings(deadline=None)
@given(
    N=st.integers(1, 160), S=st.integers(1, 160), D=st.sampled_from([16, 24, 40, 59, 64, 96]),
    Dv=st.sampled_from([None, 16, 48]), heads=st.sampled_from([(1, 1), (2, 1), (4, 2), (3, 3)]),
    causal=st.booleans(), dtype=st.sampled_from([F32, F16, BF16]),
)
def test_random_shapes(N, S, D, Dv, heads, causal, dtype):
    """Hypothesis search over shapes, GQA groups and dtypes under the same oracle."""
    run_case(Hq=heads[0], Hkv=heads[1], N=N, S=S, D=D, Dv=Dv, causal=causal, dtype=dtype)


# ---------------------------------------------------------------- poisoned outputs


@pytest.mark.parametrize("dtype", [F32, BF16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_outputs_written_exactly_in_bounds(causal, dtype):
    """NaN-poisoned output buffers: every in-bounds element written (no NaN left), every
    element outside the view untouched (still NaN), and results equal to fresh allocations."""
    from attnbench.kernels.flash_bwd import flash_bwd
    from attnbench.kernels.flash_fwd import flash_fwd

    B, Hq, Hkv, N, S, D, Dv = 1, 2, 1, 65, 100, 40, 24
    q, k, v, do = make_inputs(B, Hq, Hkv, N, S, D, Dv, dtype, layout="poisoned")
    sc = D ** -0.5
    out = poisoned_view((B, Hq, N, Dv), dtype)
    lse = torch.full((B, Hq, N), float("nan"), device=DEVICE)
    grads = [poisoned_view(x.shape, dtype) for x in (q, k, v)]
    flash_fwd(q, k, v, causal, sc, out=out, lse=lse)
    flash_bwd(do, q, k, v, out, lse, causal, sc, dq=grads[0], dk=grads[1], dv=grads[2])

    fresh_out, fresh_lse = flash_fwd(q, k, v, causal, sc)
    fresh_grads = flash_bwd(do, q, k, v, fresh_out, fresh_lse, causal, sc)
    for name, view, fresh in zip(("out", "lse", "dq", "dk", "dv"), (out, lse, *grads),
                                 (fresh_out, fresh_lse, *fresh_grads), strict=True):
        assert not torch.isnan(view).any(), f"{name}: in-bounds element left unwritten"
        assert torch.equal(view, fresh), f"{name}: result depends on the output layout"
        if view.dim() == 4:
            padded = torch.as_strided(
                view, (view.shape[0], view.shape[1], view.shape[2] + 7, view.shape[3] + 5),
                view.stride())
            outside = padded.isnan()
            outside[:, :, : view.shape[2], : view.shape[3]] = False
            n_out = padded.numel() - view.numel()
            assert int(outside.sum()) == n_out, f"{name}: wrote outside its view"


@pytest.mark.skipif(not interpreter_active(), reason="forces the sm_90 path in the interpreter")
@pytest.mark.parametrize("N,S,D,causal,dtype", [
    (65, 100, 40, True, F32), (100, 37, 64, False, F32), (129, 129, 64, True, F16),
    (17, 200, 128, False, BF16)])
def test_tma_path_matches_pointer_path(N, S, D, causal, dtype):
    """The sm_90 forward (Q, K, V through tensor descriptors; the interpreter emulates them,
    zero-filling out-of-bounds rows and columns) equals the pointer path bitwise, ragged tiles
    and padded head dims included."""
    from attnbench.kernels.flash_fwd import _fwd_kernel, fwd_launch

    q, k, v, _ = make_inputs(1, 2, 1, N, S, D, D, dtype)
    results = []
    for arch in (80, 90):
        out = torch.full((1, 2, N, D), float("nan"), dtype=dtype, device=DEVICE)
        lse = torch.full((1, 2, N), float("nan"), device=DEVICE)
        grid, args, kwargs = fwd_launch(q, k, v, out, lse, causal, D ** -0.5, arch=arch)
        assert kwargs["USE_TMA"] == (arch == 90)
        _fwd_kernel[grid](*args, **kwargs)
        results.append((out, lse))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


# ---------------------------------------------------------------- autograd and properties


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_autograd_matches_direct_calls(causal):
    """flash_attention (autograd path, default scale 1/sqrt(D)) equals the explicit launchers."""
    q, k, v, do = make_inputs(1, 4, 2, 65, 80, 32, 32, F32)
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    out = flash_attention(*leaves, causal=causal)
    out.backward(do)
    ref_out, lse = flash_attention_forward(q, k, v, causal, 32 ** -0.5)
    ref_grads = flash_attention_backward(do, q, k, v, ref_out, lse, causal, 32 ** -0.5)
    assert torch.equal(out.detach(), ref_out)
    for leaf, g in zip(leaves, ref_grads, strict=True):
        assert torch.equal(leaf.grad, g)


def test_single_key_returns_value():
    """With S = 1 every softmax weight is exactly 1: output equals v, bitwise."""
    q, k, v, _ = make_inputs(1, 2, 2, 70, 1, 32, 32, F32)
    out, lse = flash_attention_forward(q, k, v, False, None)
    assert torch.equal(out, v.expand_as(out))
    torch.testing.assert_close(lse, (q @ k.transpose(-1, -2)).squeeze(-1) / math.sqrt(32))


def test_causal_prefix_invariance():
    """Under causal masking, changing keys/values after position i leaves rows <= i unchanged
    bitwise: masked probabilities are exactly 0 (-inf logits, not a finite sentinel)."""
    q, k, v, _ = make_inputs(1, 2, 2, 100, 100, 32, 32, F32)
    i = 40
    k2, v2 = k.clone(), v.clone()
    k2[:, :, i + 1:] *= 30.0  # huge logits after i would leak through a finite sentinel
    v2[:, :, i + 1:] = 1e4
    out1, lse1 = flash_attention_forward(q, k, v, True, None)
    out2, lse2 = flash_attention_forward(q, k2, v2, True, None)
    assert torch.equal(out1[:, :, : i + 1], out2[:, :, : i + 1])
    assert torch.equal(lse1[:, :, : i + 1], lse2[:, :, : i + 1])


@pytest.mark.parametrize("dtype", [F32, F16], ids=["fp32", "fp16"])
def test_masked_keys_never_win(dtype):
    """Every visible logit is about -5.7e6 (fp32) or -1.2e4 (fp16); a finite mask sentinel
    such as -1e6 (or -1e4) would beat them and pull in future values. With -inf, row i is the
    mean of v[:i + 1] (all visible logits are equal)."""
    big = 1e3 if dtype == F32 else 47.0  # fp16: logits 47^2 * 32 / sqrt(32) ~ 1.2e4
    N, D = 80, 32
    q = torch.full((1, 1, N, D), big, dtype=dtype, device=DEVICE)
    k = torch.full((1, 1, N, D), -big, dtype=dtype, device=DEVICE)
    v = torch.randn(1, 1, N, D, generator=torch.Generator().manual_seed(1)).to(DEVICE, dtype)
    out, _ = flash_attention_forward(q, k, v, True, None)
    counts = torch.arange(1, N + 1, device=DEVICE, dtype=torch.float64)[:, None]
    expect = v.double().cumsum(dim=2) / counts  # (1, 1, N, D)
    assert (out.double() - expect).abs().max().item() < 20 * torch.finfo(dtype).eps


def test_import_without_triton():
    """`import kernels` and `kernels.flash_attn` must not fail where triton is missing."""
    code = ("import sys; sys.modules['triton'] = None; import kernels, kernels.flash_attn; "
            "print(kernels.triton_available())")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "triton not installed"


def test_rejects_what_the_kernel_cannot_do():
    q = torch.randn(1, 2, 8, 16, device=DEVICE)
    with pytest.raises(ValueError, match="head dims"):
        big = torch.randn(1, 2, 8, 300, device=DEVICE)
        flash_attention_forward(big, big, big)
    with pytest.raises(ValueError, match="multiple"):
        flash_attention_forward(q, q[:, :1].repeat(1, 3, 1, 1), q[:, :1].repeat(1, 3, 1, 1))
    with pytest.raises(ValueError, match="dtype"):
        flash_attention_forward(q.double(), q.double(), q.double())
    with pytest.raises(ValueError, match="dtype"):
        flash_attention_forward(q, q.half(), q)


# ---------------------------------------------------------------- GPU only

GPU_CASES = [  # (N, S, D, dtype, causal, Hq, Hkv)
    (1024, 1024, 64, F16, True, 4, 4), (1024, 1024, 128, BF16, False, 4, 2),
    (1000, 1023, 64, F32, True, 4, 1), (113, 203, 40, F16, False, 2, 2),
    (203, 113, 80, BF16, True, 2, 1), (2048, 2048, 128, F16, True, 2, 2),
    (97, 97, 256, F16, True, 2, 2), (97, 300, 256, BF16, False, 2, 1),
    (513, 511, 256, F32, True, 2, 2), (1, 4096, 64, F16, False, 2, 2),
    (4096, 1, 64, BF16, True, 2, 2), (777, 777, 59, F16, True, 2, 2),
]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or interpreter_active(),
                    reason="needs a CUDA device with compiled (not interpreted) Triton")
@pytest.mark.parametrize("N,S,D,dtype,causal,Hq,Hkv", GPU_CASES)
def test_gpu_compiled(N, S, D, dtype, causal, Hq, Hkv):
    """Compiled kernels with autotuning: same oracle, larger and odder shapes."""
    run_case(B=2, Hq=Hq, Hkv=Hkv, N=N, S=S, D=D, causal=causal, dtype=dtype)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or interpreter_active(),
                    reason="needs a CUDA device with compiled (not interpreted) Triton")
def test_gpu_deterministic():
    """No atomics anywhere: two runs give bitwise identical outputs and gradients."""
    q, k, v, do = make_inputs(2, 4, 2, 1000, 1000, 64, 64, F16)
    runs = []
    for _ in range(2):
        out, lse = flash_attention_forward(q, k, v, True, None)
        runs.append((out, lse, *flash_attention_backward(do, q, k, v, out, lse, True, None)))
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or interpreter_active(),
                    reason="needs a CUDA device with compiled (not interpreted) Triton")
@pytest.mark.parametrize("dtype", [F32, BF16], ids=["fp32", "bf16"])
def test_gpu_explicit_scale(dtype):
    """Large logits (scale 2): dK is right only if the dK/dV kernel recomputes bitwise the
    forward's logits (kernels/flash_bwd.py docstring); the compiled K Q^T must do so."""
    run_case(B=2, Hq=2, Hkv=2, N=300, S=700, D=40, scale=2.0, dtype=dtype)
