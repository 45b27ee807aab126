"""FlashAttention-2 forward pass in Triton, plus the helpers the backward pass shares.

Dimension glossary (used in every shape comment):
    B  batch                      Hq  query heads      Hkv  key/value heads (Hq % Hkv == 0)
    N  query length               S   key length       D    head dim of q and k
    Dv head dim of v and out      BLOCK_M / BLOCK_N    query / key tile sizes
    BLOCK_D / BLOCK_DV            D / Dv padded to a power of two (>= 16, what tl.dot needs)

One program computes one BLOCK_M tile of queries for one (batch, query head). It streams over
key/value tiles with the online softmax of FlashAttention-2: a running row max `m_i`, a running
row sum `l_i` and an output accumulator `acc` that is rescaled whenever the max grows.
exp(x) is computed as exp2(x * log2(e)) (exp2 is one instruction on GPUs), but only after the
row max is subtracted: folding log2(e) into the scale, as the Triton tutorial does, rounds
|logit| * log2(e) and costs fp32 a few ulps of relative error in P for large logits, while
(logit - max) is small exactly where P is large.
The kernel writes O and the natural-log log-sum-exp of each query row, which the backward pass
uses to recompute the softmax without storing the (N, S) probability matrix.

Masking semantics: every masked logit is -inf (never a finite sentinel that could leak), and
exp2(-inf - -inf) is guarded so a tile that is entirely masked for some row adds exactly zero.
Causal masking is top-left aligned like `torch.nn.functional.scaled_dot_product_attention`:
query i sees keys j <= i, also when N != S.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

# Read once, at import, because the @triton.jit decorators below are resolved right now:
# interpreted (CPU) or compiled (GPU). kernels.triton_available() reports a later mismatch.
INTERPRETED: bool = os.environ.get("TRITON_INTERPRET") == "1"

LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = exp2(x * log2(e))
LN2 = tl.constexpr(0.6931471805599453)  # ln(x) = log2(x) * ln(2)


def make_configs(shapes: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    """Autotune candidates as (BLOCK_M, BLOCK_N, num_warps, num_stages).

    Under the interpreter there is no device to time candidates on (multi-config autotune fails
    with "0 active drivers"), so exactly one configuration is used: 64x64 tiles, because the
    interpreter costs ~5-10 ms per tile and 16x16 tiles are 13x slower than 64x64.
    """
    if INTERPRETED:
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 64}, num_warps=4, num_stages=1)]
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
        for bm, bn, w, s in shapes
    ]


# Small tiles come last so that even HEAD_DIM=256 in fp32 has a candidate that fits in shared
# memory (the autotuner skips candidates that fail with OutOfResources).
FWD_CONFIGS = make_configs([
    (128, 64, 8, 3), (128, 64, 4, 3), (128, 32, 4, 3), (128, 128, 8, 2),
    (64, 64, 4, 3), (64, 64, 4, 4), (64, 32, 4, 2), (32, 32, 4, 1),
])

# Autotune key: what changes the best tile choice. Lengths are bucketed to powers of two so
# that a ragged length does not trigger a fresh tuning run; the dtype of every tensor argument
# is added to the key by triton itself.
AUTOTUNE_KEY = ["N_BUCKET", "S_BUCKET", "HEAD_DIM", "HEAD_DIM_V", "CAUSAL"]


def block_dim(d: int) -> int:
    """Head dim padded to a power of two, at least 16 (tl.dot's minimum)."""
    return max(16, triton.next_power_of_2(d))


def dot_settings(dtype: torch.dtype, fp32_precision: str) -> dict:
    """Constexpr flags for tl.dot shared by every kernel launch.

    UPCAST: bf16 tl.dot returns garbage in the Triton interpreter (upstream issue 11584), so
    there the dot operands are cast to fp32 first; on the GPU bf16 tensor cores are used.
    DOT_PRECISION: "ieee" (exact) or "tf32" (tensor cores) for fp32 x fp32 dots. Triton's
    NVIDIA backend reads it only for fp32 operands, so fp16/bf16 dots are unaffected.
    """
    return {
        "UPCAST": INTERPRETED and dtype == torch.bfloat16,
        "DOT_PRECISION": fp32_precision,
    }


@triton.autotune(configs=FWD_CONFIGS, key=AUTOTUNE_KEY)
@triton.jit
def _fwd_kernel(
    Q, K, V, O, LSE,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_ks, stride_kd,
    stride_vb, stride_vh, stride_vs, stride_vd,
    stride_ob, stride_oh, stride_on, stride_od,
    H_Q, GROUP, N_CTX, S_CTX, scale, N_BUCKET, S_BUCKET,
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    CAUSAL: tl.constexpr, UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1).to(tl.int64)  # int64: offsets of large tensors overflow int32
    off_b = off_bh // H_Q
    off_h = off_bh % H_Q
    off_hkv = off_h // GROUP  # GQA: GROUP consecutive query heads share one kv head
    q_base = Q + off_b * stride_qb + off_h * stride_qh
    k_base = K + off_b * stride_kb + off_hkv * stride_kh
    v_base = V + off_b * stride_vb + off_hkv * stride_vh
    o_base = O + off_b * stride_ob + off_h * stride_oh

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)  # query rows of this tile
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_ok = offs_m < N_CTX

    q = tl.load(  # (BLOCK_M, BLOCK_D), zero beyond N and D so padding adds nothing to dots
        q_base + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd,
        mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)
    if UPCAST:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max logit
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum of exp(logit - m_i)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)  # running unnormalised output

    # Causal: key tiles that start after the tile's last query row are fully masked; skip them.
    hi = S_CTX
    if CAUSAL:
        hi = tl.minimum(S_CTX, (start_m + 1) * BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        col_ok = cols < S_CTX
        kT = tl.load(  # (BLOCK_D, BLOCK_N): K loaded transposed
            k_base + cols[None, :] * stride_ks + offs_d[:, None] * stride_kd,
            mask=col_ok[None, :] & (offs_d[:, None] < HEAD_DIM), other=0.0)
        v = tl.load(  # (BLOCK_N, BLOCK_DV)
            v_base + cols[:, None] * stride_vs + offs_dv[None, :] * stride_vd,
            mask=col_ok[:, None] & (offs_dv[None, :] < HEAD_DIM_V), other=0.0)
        if UPCAST:
            kT = kT.to(tl.float32)
            v = v.to(tl.float32)

        qk = tl.dot(q, kT, input_precision=DOT_PRECISION) * scale  # (BLOCK_M, BLOCK_N)
        visible = col_ok[None, :]
        if CAUSAL:
            visible = visible & (cols[None, :] <= offs_m[:, None])
        qk = tl.where(visible, qk, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(qk, 1))
        # A row with every logit masked so far has m_new = -inf; subtracting 0 instead keeps
        # exp2(-inf - -inf) = NaN out: p and alpha become exactly 0.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2((qk - m_safe[:, None]) * LOG2E)  # (BLOCK_M, BLOCK_N)
        alpha = tl.exp2((m_i - m_safe) * LOG2E)  # rescales what was accumulated so far
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        m_i = m_new

    # A row that saw no key at all keeps l_i = 0: write 0 output and LSE = -inf, never NaN.
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    acc = acc / l_safe[:, None]
    lse = m_i + tl.log2(l_safe) * LN2  # (BLOCK_M,) natural log

    tl.store(
        o_base + offs_m[:, None] * stride_on + offs_dv[None, :] * stride_od,
        acc.to(O.dtype.element_ty),
        mask=row_ok[:, None] & (offs_dv[None, :] < HEAD_DIM_V))
    tl.store(LSE + off_bh * N_CTX + offs_m, lse, mask=row_ok)  # LSE is (B, Hq, N) contiguous


def flash_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float,
    fp32_precision: str = "ieee",
    out: torch.Tensor | None = None, lse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel. Returns (out (B, Hq, N, Dv), lse float32 (B, Hq, N)).

    `out` / `lse` may be supplied (any strides for `out`, contiguous `lse`) so tests can
    pre-poison them; by default they are allocated here. Inputs are validated by the caller.
    """
    B, Hq, N, D = q.shape  # (B, Hq, N, D)
    _, Hkv, S, _ = k.shape  # (B, Hkv, S, D)
    Dv = v.shape[-1]  # v: (B, Hkv, S, Dv)
    if out is None:
        out = torch.empty((B, Hq, N, Dv), dtype=q.dtype, device=q.device)
    if lse is None:
        lse = torch.empty((B, Hq, N), dtype=torch.float32, device=q.device)
    assert lse.is_contiguous() and lse.dtype == torch.float32
    if out.numel() == 0:
        return out, lse

    def grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(N, meta["BLOCK_M"]), B * Hq)

    _fwd_kernel[grid](
        q, k, v, out, lse,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        Hq, Hq // Hkv, N, S, scale,
        triton.next_power_of_2(N), triton.next_power_of_2(S),
        HEAD_DIM=D, HEAD_DIM_V=Dv, BLOCK_D=block_dim(D), BLOCK_DV=block_dim(Dv),
        CAUSAL=bool(causal), **dot_settings(q.dtype, fp32_precision),
    )
    return out, lse
