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


# Candidates as in the Triton tutorial's forward (BLOCK_M 64/128, BLOCK_N 32-128, 2-4 stages,
# 4/8 warps), cut to what the compile report (`attnbench kernels`) shows compiling without
# spills; keep_config() then drops per launch what a device cannot use.
FWD_CONFIGS = make_configs([
    (128, 128, 8, 2), (128, 128, 8, 3), (128, 64, 4, 3), (128, 64, 4, 4), (128, 64, 8, 3),
    (64, 64, 4, 3), (64, 64, 4, 4), (64, 32, 4, 3), (32, 32, 4, 2),
])

# Autotune key: what changes the best tile choice. Lengths are bucketed to powers of two so
# that a ragged length does not trigger a fresh tuning run; the dtype of every tensor argument
# is added to the key by triton itself.
AUTOTUNE_KEY = ["N_BUCKET", "S_BUCKET", "HEAD_DIM", "HEAD_DIM_V", "CAUSAL"]

# Shared memory a block may use (bytes, with the opt-in): A100 (sm_80) 163 KB, H100/H200
# (sm_90) 227 KB; CUDA C Programming Guide, "Features and Technical Specifications".
SHARED_LIMIT = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}


def shared_estimate(kernel: str, bm: int, bn: int, stages: int, block_d: int, block_dv: int,
                    elem: int) -> int:
    """Bytes of shared memory a config needs: the pipelined tiles (stages copies of the tiles
    streamed by the inner loop) plus the tiles held for the whole program. An upper-bound
    model checked against the compiler's own figure by the compile report."""
    if kernel == "fwd":  # Q held; K and V streamed
        return (bm * block_d + stages * bn * (block_d + block_dv)) * elem
    if kernel == "dkdv":  # K, V held; Q and dO streamed
        return (bn * (block_d + block_dv) + stages * bm * (block_d + block_dv)) * elem
    return (bm * (block_d + block_dv) + stages * bn * (block_d + block_dv)) * elem  # dq


def keep_config(kernel: str, config: triton.Config, *, arch: int, causal: bool, block_d: int,
                block_dv: int, elem: int) -> bool:
    """Whether the autotuner may try `config` for this launch (pruned as in the Triton
    tutorial, and nothing that cannot fit in shared memory).

    - forward on sm_90: 8 warps only for tiles of at least 128 x 128 (smaller tiles leave two
      warpgroups too little work each);
    - causal: BLOCK_M >= BLOCK_N for the forward and dQ (the diagonal band is then at most
      two key tiles), BLOCK_N >= BLOCK_M for dK/dV (its outer tile is the keys);
    - the shared-memory estimate within the device's limit.
    """
    bm, bn = config.kwargs["BLOCK_M"], config.kwargs["BLOCK_N"]
    if kernel == "fwd" and arch >= 90 and config.num_warps == 8 and bm * bn < 128 * 128:
        return False
    if causal and (bn > bm if kernel != "dkdv" else bm > bn):
        return False
    limit = SHARED_LIMIT.get(arch, 99 * 1024)
    return shared_estimate(kernel, bm, bn, config.num_stages, block_d, block_dv, elem) <= limit


def device_arch(t: torch.Tensor) -> int:
    """Compute capability as 80, 90, ...; 0 for a CPU tensor (the interpreter)."""
    if t.device.type != "cuda":
        return 0
    major, minor = torch.cuda.get_device_capability(t.device)
    return 10 * major + minor


SMALL_TILE = 64 * 64  # tiles with fewer elements are tried only when no larger one fits


def kept_configs(kernel: str, configs: list, **launch) -> list:
    """The configs the autotuner tries for one launch (keyword arguments of keep_config):
    those keep_config() allows, without tiles under SMALL_TILE elements when a larger one
    fits (they exist for fp32 at head dim 256). Never empty: the last (smallest) config
    remains when nothing fits, and the compile report flags it."""
    fit = [c for c in configs if keep_config(kernel, c, **launch)]
    large = [c for c in fit if c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] >= SMALL_TILE]
    return large or fit or configs[-1:]


def pruner(kernel: str):
    """An autotune `early_config_prune` hook applying kept_configs() to a real launch."""
    def prune(configs: list, named_args: dict, **kwargs) -> list:
        if INTERPRETED:
            return configs
        q = named_args["Q"]
        return kept_configs(kernel, configs, arch=device_arch(q), causal=bool(kwargs["CAUSAL"]),
                            block_d=kwargs["BLOCK_D"], block_dv=kwargs["BLOCK_DV"],
                            elem=q.element_size())
    return prune


prune_configs = pruner("fwd")

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


@triton.jit
def _attend(
    acc, l_i, m_i, q, K, V, offs_m, offs_n, offs_d, offs_dv, lo, hi,
    stride_ks, stride_kd, stride_vs, stride_vd, S_CTX, scale, qk_scale,
    HEAD_DIM: tl.constexpr, HEAD_DIM_V: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_DV: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr, USE_TMA: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Online softmax over key tiles [lo, hi). K and V are tensor descriptors (USE_TMA) or base
    pointers. MASKED: some key of a tile may be past S or (CAUSAL) after a query row; otherwise
    every tile is full and fully visible and runs with no mask at all."""
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        cols = start_n + offs_n
        if USE_TMA:  # out-of-bounds rows and columns of a tile are read as zeros
            kT = K.load([start_n, 0]).T  # (BLOCK_D, BLOCK_N)
            v = V.load([start_n, 0])  # (BLOCK_N, BLOCK_DV)
        else:
            k_ptrs = K + cols[None, :] * stride_ks + offs_d[:, None] * stride_kd
            v_ptrs = V + cols[:, None] * stride_vs + offs_dv[None, :] * stride_vd
            if MASKED:
                kT = tl.load(k_ptrs, mask=(cols[None, :] < S_CTX) & (offs_d[:, None] < HEAD_DIM),
                             other=0.0)
                v = tl.load(v_ptrs, mask=(cols[:, None] < S_CTX)
                            & (offs_dv[None, :] < HEAD_DIM_V), other=0.0)
            elif HEAD_DIM < BLOCK_D or HEAD_DIM_V < BLOCK_DV:  # only the head-dim padding
                kT = tl.load(k_ptrs, mask=offs_d[:, None] < HEAD_DIM, other=0.0)
                v = tl.load(v_ptrs, mask=offs_dv[None, :] < HEAD_DIM_V, other=0.0)
            else:
                kT = tl.load(k_ptrs)
                v = tl.load(v_ptrs)
        if UPCAST:
            kT = kT.to(tl.float32)
            v = v.to(tl.float32)

        qk = tl.dot(q, kT, input_precision=DOT_PRECISION)  # (BLOCK_M, BLOCK_N) unscaled logits
        if MASKED:
            visible = cols[None, :] < S_CTX
            if CAUSAL:
                visible = visible & (cols[None, :] <= offs_m[:, None])
            qk = tl.where(visible, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1) * scale)  # running max of the scaled logits
        # A row with every logit masked so far has m_new = -inf; subtracting 0 instead keeps
        # exp2(-inf - -inf) = NaN out: p and alpha become exactly 0.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(qk * qk_scale - (m_safe * LOG2E)[:, None])  # one FFMA per logit on a GPU
        alpha = tl.exp2((m_i - m_safe) * LOG2E)  # rescales what was accumulated so far
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.autotune(configs=FWD_CONFIGS, key=AUTOTUNE_KEY,
                 prune_configs_by={"early_config_prune": prune_configs})
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
    USE_TMA: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
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

    if USE_TMA:  # Q lands in shared memory, where the tensor cores read it
        q = tl.make_tensor_descriptor(q_base, shape=[N_CTX, HEAD_DIM], strides=[stride_qn, 1],
                                      block_shape=[BLOCK_M, BLOCK_D]).load([start_m * BLOCK_M, 0])
    else:  # (BLOCK_M, BLOCK_D), zero beyond N and D so padding adds nothing to dots
        q = tl.load(q_base + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd,
                    mask=row_ok[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    if USE_TMA:  # (S, D) and (S, Dv) views of this (batch, kv head); stride_kd = stride_vd = 1
        K = tl.make_tensor_descriptor(k_base, shape=[S_CTX, HEAD_DIM], strides=[stride_ks, 1],
                                      block_shape=[BLOCK_N, BLOCK_D])
        V = tl.make_tensor_descriptor(v_base, shape=[S_CTX, HEAD_DIM_V],
                                      strides=[stride_vs, 1], block_shape=[BLOCK_N, BLOCK_DV])
    else:
        K = k_base
        V = v_base

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max logit
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum of exp(logit - m_i)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)  # running unnormalised output
    qk_scale = scale * LOG2E

    # Key tiles in [0, split) are full (inside S) and, when causal, end at or before the
    # tile's first query row: no mask. Tiles in [split, hi) hold the ragged end of S and the
    # diagonal band; causal tiles from the tile's last query row on are skipped.
    hi = S_CTX
    split = (S_CTX // BLOCK_N) * BLOCK_N
    if CAUSAL:
        hi = tl.minimum(S_CTX, (start_m + 1) * BLOCK_M)
        split = tl.minimum(split, (start_m * BLOCK_M // BLOCK_N) * BLOCK_N)
    acc, l_i, m_i = _attend(
        acc, l_i, m_i, q, K, V, offs_m, offs_n, offs_d, offs_dv, 0, split,
        stride_ks, stride_kd, stride_vs, stride_vd, S_CTX, scale, qk_scale,
        HEAD_DIM, HEAD_DIM_V, BLOCK_D, BLOCK_DV, False, CAUSAL, USE_TMA, UPCAST, DOT_PRECISION,
        BLOCK_N)
    acc, l_i, m_i = _attend(
        acc, l_i, m_i, q, K, V, offs_m, offs_n, offs_d, offs_dv, split, hi,
        stride_ks, stride_kd, stride_vs, stride_vd, S_CTX, scale, qk_scale,
        HEAD_DIM, HEAD_DIM_V, BLOCK_D, BLOCK_DV, True, CAUSAL, USE_TMA, UPCAST, DOT_PRECISION,
        BLOCK_N)

    # A row that saw no key at all keeps l_i = 0: write 0 output and LSE = -inf, never NaN.
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    acc = acc / l_safe[:, None]
    lse = m_i + tl.log2(l_safe) * LN2  # (BLOCK_M,) natural log

    tl.store(
        o_base + offs_m[:, None] * stride_on + offs_dv[None, :] * stride_od,
        acc.to(O.dtype.element_ty),
        mask=row_ok[:, None] & (offs_dv[None, :] < HEAD_DIM_V))
    tl.store(LSE + off_bh * N_CTX + offs_m, lse, mask=row_ok)  # LSE is (B, Hq, N) contiguous


def use_tma(arch: int, *tensors: torch.Tensor) -> bool:
    """Q, K, V through TMA tensor descriptors: sm_90 and later, a Triton with
    tl.make_tensor_descriptor, and a layout TMA accepts (last stride 1, 16-byte aligned base
    and other strides). Elsewhere (sm_80, the interpreter) the pointer path runs."""
    if arch < 90 or not hasattr(tl, "make_tensor_descriptor") or not hasattr(
            triton, "set_allocator"):
        return False
    return all(t.stride(-1) == 1 and t.data_ptr() % 16 == 0
               and all(st * t.element_size() % 16 == 0 for st in t.stride()[:-1])
               for t in tensors)


def _scratch(size: int, alignment: int, stream: int | None) -> torch.Tensor:
    """Global scratch for device-side tensor descriptors (128 bytes per descriptor)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


def fwd_launch(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
    causal: bool, scale: float, fp32_precision: str = "ieee", arch: int | None = None,
) -> tuple:
    """(grid, args, kwargs) of _fwd_kernel for these tensors: what flash_fwd launches and what
    the compile report binds (arch: the target's compute capability; default: q's device)."""
    B, Hq, N, D = q.shape  # (B, Hq, N, D)
    _, Hkv, S, _ = k.shape  # (B, Hkv, S, D)
    Dv = v.shape[-1]  # v: (B, Hkv, S, Dv)
    arch = device_arch(q) if arch is None else arch

    def grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(N, meta["BLOCK_M"]), B * Hq)

    args = (q, k, v, out, lse, *q.stride(), *k.stride(), *v.stride(), *out.stride(),
            Hq, Hq // Hkv, N, S, scale, triton.next_power_of_2(N), triton.next_power_of_2(S))
    kwargs = dict(HEAD_DIM=D, HEAD_DIM_V=Dv, BLOCK_D=block_dim(D), BLOCK_DV=block_dim(Dv),
                  CAUSAL=bool(causal), **dot_settings(q.dtype, fp32_precision),
                  USE_TMA=use_tma(arch, q, k, v))
    return grid, args, kwargs


def flash_fwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float,
    fp32_precision: str = "ieee",
    out: torch.Tensor | None = None, lse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel. Returns (out (B, Hq, N, Dv), lse float32 (B, Hq, N)).

    `out` / `lse` may be supplied (any strides for `out`, contiguous `lse`) so tests can
    pre-poison them; by default they are allocated here. Inputs are validated by the caller.
    """
    B, Hq, N, _ = q.shape  # (B, Hq, N, D)
    Dv = v.shape[-1]
    if out is None:
        out = torch.empty((B, Hq, N, Dv), dtype=q.dtype, device=q.device)
    if lse is None:
        lse = torch.empty((B, Hq, N), dtype=torch.float32, device=q.device)
    assert lse.is_contiguous() and lse.dtype == torch.float32
    if out.numel() == 0:
        return out, lse
    grid, args, kwargs = fwd_launch(q, k, v, out, lse, causal, scale, fp32_precision)
    if kwargs["USE_TMA"]:
        triton.set_allocator(_scratch)  # device-side descriptors live in global scratch
    _fwd_kernel[grid](*args, **kwargs)
    return out, lse
