"""The normalisation block variants against their definitions: each block's forward equals a
hand-written forward from the formula (using the block's own weights), DeepNorm's constants
and init follow DeepNet, and every block runs on every plain-PyTorch attention variant."""

from __future__ import annotations

import math

import attnbench.variants  # noqa: F401  (registers the built-ins)
import pytest
import torch
from attnbench.variants.blocks import SelfAttention
from attnbench.variants.gpt import GPT, GPTConfig
from attnbench.variants.norm_blocks import DeepNorm
from attnbench.variants.registry import Case, get, list_variants, not_supported_reasons
from torch.nn import functional as F

NEW_BLOCKS = ["pre_rmsnorm", "deepnorm", "sandwich", "qk_norm"]
B, N, C, H = 2, 8, 32, 4  # batch, length, d_model, heads


def make(name: str, attention: str = "sdpa", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    block = get(name).fn(C, H, attention=attention, causal=True).double()
    with torch.no_grad():  # non-trivial norm gains and biases, so a misplaced norm shows
        for module in block.modules():
            if isinstance(module, torch.nn.LayerNorm | torch.nn.RMSNorm):
                module.weight.uniform_(0.5, 1.5)
                if getattr(module, "bias", None) is not None:
                    module.bias.uniform_(-0.5, 0.5)
    return block


def x_input(seed: int = 1) -> torch.Tensor:
    return torch.randn(B, N, C, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def ln(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def rms(x: torch.Tensor, norm: torch.nn.RMSNorm) -> torch.Tensor:
    eps = torch.finfo(x.dtype).eps if norm.eps is None else norm.eps
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * norm.weight


def attention_by_hand(attn: SelfAttention, x: torch.Tensor, qk_norm: bool = False
                      ) -> torch.Tensor:
    """Causal multi-head self-attention written out, with optional per-head LN on q and k."""
    q, k, v = (x @ attn.qkv.weight.T + attn.qkv.bias).split(C, dim=-1)
    q, k, v = (t.view(B, N, H, C // H).transpose(1, 2) for t in (q, k, v))  # (B, H, N, D)
    if qk_norm:
        q, k = ln(q, attn.q_norm), ln(k, attn.k_norm)
    scores = q @ k.transpose(-2, -1) / math.sqrt(C // H)  # (B, H, N, N)
    scores = scores.masked_fill(~torch.ones(N, N, dtype=torch.bool).tril(), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, N, C)
    return y @ attn.proj.weight.T + attn.proj.bias


def ffn_by_hand(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    f = block.ffn
    return F.gelu(x @ f.linear1.weight.T + f.linear1.bias) @ f.linear2.weight.T + f.linear2.bias


@pytest.mark.parametrize("name", NEW_BLOCKS)
def test_registered_as_block(name: str) -> None:
    assert get(name).kind == "block"
    assert get(name).doc


def test_pre_rmsnorm_matches_formula() -> None:
    block, x = make("pre_rmsnorm"), x_input()
    assert isinstance(block.norm1, torch.nn.RMSNorm)
    h = x + attention_by_hand(block.attn, rms(x, block.norm1))
    expected = h + ffn_by_hand(block, rms(h, block.norm2))
    torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


def test_pre_rmsnorm_model_ends_with_rmsnorm() -> None:
    model = GPT(GPTConfig(vocab_size=11, n_layers=2, d_model=C, n_heads=H, block="pre_rmsnorm"))
    assert isinstance(model.final_norm, torch.nn.RMSNorm)


def test_sandwich_matches_formula() -> None:
    block, x = make("sandwich"), x_input()
    h = x + ln(attention_by_hand(block.attn, ln(x, block.norm1)), block.norm1_out)
    expected = h + ln(ffn_by_hand(block, ln(h, block.norm2)), block.norm2_out)
    torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)
    assert type(block).final_norm


def test_qk_norm_matches_formula() -> None:
    block, x = make("qk_norm"), x_input()
    assert isinstance(block.attn.q_norm, torch.nn.LayerNorm)
    h = x + attention_by_hand(block.attn, ln(x, block.norm1), qk_norm=True)
    expected = h + ffn_by_hand(block, ln(h, block.norm2))
    torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


def test_qk_norm_max_logit_is_the_normalised_logit() -> None:
    block, x = make("qk_norm"), x_input()
    block.attn.record_max_logit = True
    block(x)
    attn, h = block.attn, ln(x, block.norm1)
    q, k, _ = (h @ attn.qkv.weight.T + attn.qkv.bias).split(C, dim=-1)
    q, k = (ln(t.view(B, N, H, C // H).transpose(1, 2), norm)
            for t, norm in ((q, attn.q_norm), (k, attn.k_norm)))
    scores = (q @ k.transpose(-2, -1) / math.sqrt(C // H))
    expected = scores.masked_fill(~torch.ones(N, N, dtype=torch.bool).tril(), -math.inf).max()
    assert attn.max_logit == pytest.approx(expected.item(), rel=1e-9)


@pytest.mark.parametrize("n_layers", [1, 6, 12])
def test_deepnorm_constants(n_layers: int) -> None:
    alpha, beta = DeepNorm.constants(n_layers)
    assert alpha == pytest.approx((2 * n_layers) ** 0.25)
    assert beta == pytest.approx((8 * n_layers) ** -0.25)


def test_deepnorm_rejects_bad_depth() -> None:
    with pytest.raises(ValueError, match="n_layers"):
        DeepNorm.constants(0)


def test_deepnorm_matches_formula_after_model_init() -> None:
    model = GPT(GPTConfig(vocab_size=11, n_layers=6, d_model=C, n_heads=H, block="deepnorm"))
    block, x = make("deepnorm"), x_input()
    block.load_state_dict({k: v.double() for k, v in model.blocks[0].state_dict().items()},
                          strict=False)
    block.alpha = model.blocks[0].alpha
    assert block.alpha == pytest.approx(12 ** 0.25)
    a = block.alpha
    h = ln(a * x + attention_by_hand(block.attn, x), block.norm1)
    expected = ln(a * h + ffn_by_hand(block, h), block.norm2)
    torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


def test_deepnorm_beta_scaled_init() -> None:
    """FFN, value and output-projection weights ~ N(0, (0.02 beta)^2); q and k keep N(0, 0.02^2)
    (not the model's 1/sqrt(2L) residual scaling, which beta replaces)."""
    n_layers, d = 4, 128
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, n_layers=n_layers, d_model=d, n_heads=4,
                          block="deepnorm"))
    beta = (8 * n_layers) ** -0.25
    for block in model.blocks:
        w = block.attn.qkv.weight
        scaled = [block.ffn.linear1.weight, block.ffn.linear2.weight, w[2 * d:],
                  block.attn.proj.weight]
        for weight in scaled:
            assert weight.std().item() == pytest.approx(0.02 * beta, rel=0.05)
        assert w[:2 * d].std().item() == pytest.approx(0.02, rel=0.05)


def plain_attention_variants() -> list[str]:
    """Registered attention variants that train on this CPU without extra packages (the Triton
    kernel under its interpreter is too slow for a block test)."""
    case = Case(device="cpu", causal=True, backward=True)
    return [v.name for v in list_variants("attention")
            if not v.caps.requires and not not_supported_reasons(v, case)]


@pytest.mark.parametrize("name", NEW_BLOCKS)
def test_block_runs_on_every_attention_variant(name: str) -> None:
    reference, x = make(name, "sdpa"), x_input()
    if name == "deepnorm":
        reference.alpha = 2.0
    expected = reference(x)
    for attention in plain_attention_variants():
        block = make(name, attention)
        block.load_state_dict(reference.state_dict())
        block.alpha = getattr(reference, "alpha", None)
        out = block(x)
        torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9, msg=attention)
        out.sum().backward()
        assert all(p.grad is not None for p in block.parameters())
