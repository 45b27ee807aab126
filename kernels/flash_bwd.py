"""FlashAttention-2 backward pass in Triton: delta preprocessing, dK/dV kernel, dQ kernel.

Glossary as in kernels/flash_fwd.py: B batch, Hq / Hkv query / kv heads, N query length,
S key length, D head dim of q and k, Dv head dim of v.

Nothing of size (N, S) is ever stored. Each kernel recomputes the probabilities of its tile
from the saved log-sum-exp, P = exp2(Q K^T * scale * log2(e) - LSE * log2(e)) (the forward's
exponent, see kernels/flash_fwd.py), and uses
    dV = P^T dO,   dP = dO V^T,   dS = P * (dP - delta),   dQ = scale * dS K,   dK = scale * dS^T Q
with delta = rowsum(O * dO) = rowsum(P * dP), computed once by a small preprocessing kernel.

Two kernels instead of one avoid atomics: the dK/dV kernel owns a tile of keys and loops over
queries, the dQ kernel owns a tile of queries and loops over keys. For GQA the dK/dV kernel also
loops over the GROUP query heads that share its kv head, so the sum over those heads happens in
registers and no per-query-head dK/dV buffer is needed.

The backward recomputes P = exp(s - LSE) from logits s it computes itself, while LSE came from
the forward's logits. Any rounding difference between the two becomes a relative error of P:
for a dominant probability (P near 1, large logits) the textbook's normalisation hides it, this
recomputation does not. So the dK/dV kernel must get bitwise the forward's logits. On the GPU
the transposed product K Q^T should (tensor cores and FMA loops sum each element's products in
the same K order whichever operand comes first; test_gpu_explicit_scale checks it there, not yet
run on a GPU). The interpreter's tl.dot is OpenBLAS sgemm, whose
summation order depends on operand orientation: k @ q^T differs from (q @ k^T)^T by up to
5.7e-6 at |logit| ~ 10, which made fp32 dK 4.9x the textbook's error at scale 2, D 40
(tests/test_kernel_flash.py::test_explicit_scale). There (LOGITS_AS_FWD) the kernel computes
q @ k^T and transposes the result.

Masks match the forward pass exactly (boundary masks always, the causal mask only when causal:
the Triton tutorial's backward applied the causal mask unconditionally, which made non-causal
gradients wrong).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from attnbench.kernels.flash_fwd import (
    AUTOTUNE_KEY,
    INTERPRETED,
    LOG2E,
    block_dim,
    dot_settings,
    make_configs,
    pruner,
)

# The dK/dV kernel's outer tile is BLOCK_N keys, the dQ kernel's is BLOCK_M queries; each
# prefers a long outer tile and a short inner one (as in the Triton tutorial: 128 x 32).
DKDV_CONFIGS = make_configs([
    (32, 128, 4, 3), (32, 128, 8, 2), (32, 64, 4, 3), (64, 64, 4, 2), (64, 128, 8, 2),
    (16, 64, 4, 2), (32, 32, 4, 1),
])
DQ_CONFIGS = make_configs([
    (128, 32, 4, 3), (128, 32, 8, 2), (64, 32, 4, 3), (64, 64, 4, 2), (128, 64, 8, 2),
    (64, 16, 4, 2), (32, 32, 4, 1),
])


@triton.jit
def _bwd_preprocess_kernel(
    O, DO, DELTA, stride_b, stride_h, stride_n, stride_d,
    H_Q, N_CTX, HEAD_DIM_V: tl.constexpr, BLOCK_DV: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """delta[b, h, i] = sum_d O[b, h, i, d] * dO[b, h, i, d]; O and dO share one layout."""
    off_bh = tl.program_id(1).to(tl.int64)
    base = (off_bh // H_Q) * stride_b + (off_bh % H_Q) * stride_h
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_dv = tl.arange(0, BLOCK_DV)
    mask = (offs_m[:, None] < N_CTX) & (offs_dv[None, :] < HEAD_DIM_V)
    ptrs = base + offs_m[:, None] * stride_n + offs_dv[None, :] * stride_d
    o = tl.load(O + ptrs, mask=mask, other=0.0).to(tl.float32)  # (BLOCK_M, BLOCK_DV)
    do = tl.load(DO + ptrs, mask=mask, other=0.0).to(tl.float32)
    tl.store(DELTA + off_bh * N_CTX + offs_m, tl.sum(o * do, 1), mask=offs_m < N_CTX)


@triton.autotune(configs=DKDV_CONFIGS, key=AUTOTUNE_KEY,
                 prune_configs_by={"early_config_prune": pruner("dkdv")})
@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_ks, stride_kd,
    stride_vb, stride_vh, stride_vs, stride_vd,
    stride_dob, stride_doh, stride_don, stride_dod,
    stride_dkb, stride_dkh, stride_dks, stride_dkd,
    stride_dvb, stride_dvh, stride_dvs, stride_dvd,
    H_KV, GROUP, N_CTX, S_CTX, scale, N_BUCKET, S_BUCKET,
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    CAUSAL: tl.constexpr, UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
    LOGITS_AS_FWD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_N keys of one (batch, kv head); loops over its query heads and rows."""
    start_n = tl.program_id(0) * BLOCK_N
    off_bh = tl.program_id(1).to(tl.int64)
    off_b = off_bh // H_KV
    off_hkv = off_bh % H_KV

    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    col_ok = offs_n < S_CTX
    k = tl.load(  # (BLOCK_N, BLOCK_D)
        K + off_b * stride_kb + off_hkv * stride_kh
        + offs_n[:, None] * stride_ks + offs_d[None, :] * stride_kd,
        mask=col_ok[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)
    v = tl.load(  # (BLOCK_N, BLOCK_DV)
        V + off_b * stride_vb + off_hkv * stride_vh
        + offs_n[:, None] * stride_vs + offs_dv[None, :] * stride_vd,
        mask=col_ok[:, None] & (offs_dv[None, :] < HEAD_DIM_V), other=0.0)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], dtype=tl.float32)
    qk_scale = scale * LOG2E

    # Causal: query rows before start_n see none of these keys; start at their query tile.
    lo = 0
    if CAUSAL:
        lo = (start_n // BLOCK_M) * BLOCK_M
    for g in range(0, GROUP):
        off_h = off_hkv * GROUP + g  # query head g of this kv head's group
        q_base = Q + off_b * stride_qb + off_h * stride_qh
        do_base = DO + off_b * stride_dob + off_h * stride_doh
        row_base = (off_b * H_KV * GROUP + off_h) * N_CTX  # LSE, DELTA: (B, Hq, N) contiguous
        for start_m in range(lo, N_CTX, BLOCK_M):
            offs_m = start_m + tl.arange(0, BLOCK_M)
            row_ok = offs_m < N_CTX
            qT = tl.load(  # (BLOCK_D, BLOCK_M): Q loaded transposed
                q_base + offs_m[None, :] * stride_qn + offs_d[:, None] * stride_qd,
                mask=row_ok[None, :] & (offs_d[:, None] < HEAD_DIM), other=0.0)
            do = tl.load(  # (BLOCK_M, BLOCK_DV)
                do_base + offs_m[:, None] * stride_don + offs_dv[None, :] * stride_dod,
                mask=row_ok[:, None] & (offs_dv[None, :] < HEAD_DIM_V), other=0.0)
            if UPCAST:
                qT = qT.to(tl.float32)
                do = do.to(tl.float32)
            lse = tl.load(LSE + row_base + offs_m, mask=row_ok, other=0.0) * LOG2E
            delta = tl.load(DELTA + row_base + offs_m, mask=row_ok, other=0.0)

            if LOGITS_AS_FWD:  # same operand order as the forward: bitwise the same logits
                qkT = tl.trans(tl.dot(tl.trans(qT), tl.trans(k), input_precision=DOT_PRECISION))
            else:
                qkT = tl.dot(k, qT, input_precision=DOT_PRECISION)  # (BLOCK_N, BLOCK_M)
            visible = row_ok[None, :] & col_ok[:, None]
            if CAUSAL:
                visible = visible & (offs_m[None, :] >= offs_n[:, None])
            # the forward's exponent, qk * qk_scale - max, with the LSE in log2 units for max
            pT = tl.where(visible, tl.exp2(qkT * qk_scale - lse[None, :]), 0.0)  # P^T; 0 masked
            dv = tl.dot(pT.to(do.dtype), do, dv, input_precision=DOT_PRECISION)
            dpT = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)  # (BLOCK_N, BLOCK_M)
            dsT = pT * (dpT - delta[None, :])
            dk = tl.dot(dsT.to(qT.dtype), tl.trans(qT), dk, input_precision=DOT_PRECISION)

    dk = dk * scale  # logits were scale * q.k
    tl.store(
        DK + off_b * stride_dkb + off_hkv * stride_dkh
        + offs_n[:, None] * stride_dks + offs_d[None, :] * stride_dkd,
        dk.to(DK.dtype.element_ty), mask=col_ok[:, None] & (offs_d[None, :] < HEAD_DIM))
    tl.store(
        DV + off_b * stride_dvb + off_hkv * stride_dvh
        + offs_n[:, None] * stride_dvs + offs_dv[None, :] * stride_dvd,
        dv.to(DV.dtype.element_ty), mask=col_ok[:, None] & (offs_dv[None, :] < HEAD_DIM_V))


@triton.autotune(configs=DQ_CONFIGS, key=AUTOTUNE_KEY,
                 prune_configs_by={"early_config_prune": pruner("dq")})
@triton.jit
def _bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_ks, stride_kd,
    stride_vb, stride_vh, stride_vs, stride_vd,
    stride_dob, stride_doh, stride_don, stride_dod,
    stride_dqb, stride_dqh, stride_dqn, stride_dqd,
    H_Q, GROUP, N_CTX, S_CTX, scale, N_BUCKET, S_BUCKET,
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    CAUSAL: tl.constexpr, UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One program: BLOCK_M query rows of one (batch, query head); loops over key tiles."""
    start_m = tl.program_id(0) * BLOCK_M
    off_bh = tl.program_id(1).to(tl.int64)
    off_b = off_bh // H_Q
    off_h = off_bh % H_Q
    off_hkv = off_h // GROUP
    k_base = K + off_b * stride_kb + off_hkv * stride_kh
    v_base = V + off_b * stride_vb + off_hkv * stride_vh

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < N_CTX
    q = tl.load(  # (BLOCK_M, BLOCK_D)
        Q + off_b * stride_qb + off_h * stride_qh
        + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd,
        mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)
    do = tl.load(  # (BLOCK_M, BLOCK_DV)
        DO + off_b * stride_dob + off_h * stride_doh
        + offs_m[:, None] * stride_don + offs_dv[None, :] * stride_dod,
        mask=row_ok[:, None] & (offs_dv[None, :] < HEAD_DIM_V), other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    lse = tl.load(LSE + off_bh * N_CTX + offs_m, mask=row_ok, other=0.0) * LOG2E  # log2 units
    delta = tl.load(DELTA + off_bh * N_CTX + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    qk_scale = scale * LOG2E

    hi = S_CTX
    if CAUSAL:  # key tiles after this tile's last row are fully masked
        hi = tl.minimum(S_CTX, start_m + BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        col_ok = cols < S_CTX
        kT = tl.load(  # (BLOCK_D, BLOCK_N)
            k_base + cols[None, :] * stride_ks + offs_d[:, None] * stride_kd,
            mask=col_ok[None, :] & (offs_d[:, None] < HEAD_DIM), other=0.0)
        vT = tl.load(  # (BLOCK_DV, BLOCK_N)
            v_base + cols[None, :] * stride_vs + offs_dv[:, None] * stride_vd,
            mask=col_ok[None, :] & (offs_dv[:, None] < HEAD_DIM_V), other=0.0)
        if UPCAST:
            kT = kT.to(tl.float32)
            vT = vT.to(tl.float32)

        qk = tl.dot(q, kT, input_precision=DOT_PRECISION)  # (BLOCK_M, BLOCK_N)
        visible = row_ok[:, None] & col_ok[None, :]
        if CAUSAL:
            visible = visible & (cols[None, :] <= offs_m[:, None])
        p = tl.where(visible, tl.exp2(qk * qk_scale - lse[:, None]), 0.0)
        dp = tl.dot(do, vT, input_precision=DOT_PRECISION)  # (BLOCK_M, BLOCK_N)
        ds = p * (dp - delta[:, None])
        dq = tl.dot(ds.to(kT.dtype), tl.trans(kT), dq, input_precision=DOT_PRECISION)

    dq = dq * scale
    tl.store(
        DQ + off_b * stride_dqb + off_h * stride_dqh
        + offs_m[:, None] * stride_dqn + offs_d[None, :] * stride_dqd,
        dq.to(DQ.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM))


PRE_BLOCK = 64  # query rows per program of the delta preprocessing


def bwd_launches(
    do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
    lse: torch.Tensor, delta: torch.Tensor, dq: torch.Tensor, dk: torch.Tensor,
    dv: torch.Tensor, causal: bool, scale: float, fp32_precision: str = "ieee",
) -> dict[str, tuple]:
    """(grid, args, kwargs) of each backward kernel, in launch order: what flash_bwd launches
    and what the compile report binds. `out` must share dO's strides."""
    B, Hq, N, D = q.shape  # (B, Hq, N, D)
    _, Hkv, S, _ = k.shape  # (B, Hkv, S, D)
    Dv = v.shape[-1]  # v, out, do: (B, Hkv, S, Dv), (B, Hq, N, Dv), (B, Hq, N, Dv)
    common = dict(
        HEAD_DIM=D, HEAD_DIM_V=Dv, BLOCK_D=block_dim(D), BLOCK_DV=block_dim(Dv),
        CAUSAL=bool(causal), **dot_settings(q.dtype, fp32_precision))
    sizes = (N, S, scale, triton.next_power_of_2(N), triton.next_power_of_2(S))

    def grid_dkdv(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(S, meta["BLOCK_N"]), B * Hkv)

    def grid_dq(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(N, meta["BLOCK_M"]), B * Hq)

    return {
        "preprocess": (
            (triton.cdiv(N, PRE_BLOCK), B * Hq),
            (out, do, delta, *do.stride(), Hq, N),
            dict(HEAD_DIM_V=Dv, BLOCK_DV=block_dim(Dv), BLOCK_M=PRE_BLOCK)),
        "dkdv": (
            grid_dkdv,
            (q, k, v, do, lse, delta, dk, dv, *q.stride(), *k.stride(), *v.stride(),
             *do.stride(), *dk.stride(), *dv.stride(), Hkv, Hq // Hkv, *sizes),
            dict(LOGITS_AS_FWD=INTERPRETED, **common)),
        "dq": (
            grid_dq,
            (q, k, v, do, lse, delta, dq, *q.stride(), *k.stride(), *v.stride(), *do.stride(),
             *dq.stride(), Hq, Hq // Hkv, *sizes),
            common),
    }


KERNELS = {"preprocess": _bwd_preprocess_kernel, "dkdv": _bwd_dkdv_kernel, "dq": _bwd_dq_kernel}


def flash_bwd(
    do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    out: torch.Tensor, lse: torch.Tensor, causal: bool, scale: float,
    fp32_precision: str = "ieee",
    dq: torch.Tensor | None = None, dk: torch.Tensor | None = None,
    dv: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the three backward kernels. Returns (dq, dk, dv) shaped and typed like q, k, v.

    `out` and `lse` are what flash_fwd returned for the same inputs. `dq`, `dk`, `dv` may be
    supplied (any strides) so tests can pre-poison them; by default they are allocated here.
    """
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device) if dq is None else dq
    dk = torch.empty(k.shape, dtype=k.dtype, device=k.device) if dk is None else dk
    dv = torch.empty(v.shape, dtype=v.dtype, device=v.device) if dv is None else dv
    if q.numel() == 0 or k.numel() == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    do = do.contiguous()
    out = out if out.stride() == do.stride() else out.contiguous()  # preprocess shares strides
    lse = lse.contiguous()
    delta = torch.empty_like(lse)  # (B, Hq, N) float32
    launches = bwd_launches(do, q, k, v, out, lse, delta, dq, dk, dv, causal, scale,
                            fp32_precision)
    for name, (grid, args, kwargs) in launches.items():
        KERNELS[name][grid](*args, **kwargs)
    return dq, dk, dv
