"""Blocks against ``torch.nn.TransformerEncoderLayer`` (or their own float64 computation), on
every attention variant.

A block class that declares ``encoder_layer_config`` (e.g. ``{"norm_first": True}``) promises
to compute exactly what ``TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0,
activation="gelu", batch_first=True, **config)`` computes with a causal mask, given the same
weights: in_proj -> attn.qkv, out_proj -> attn.proj, linear1/linear2 -> ffn.linear1/linear2,
norm1/norm2 -> norm1/norm2. The check copies the block's weights into the PyTorch layer, runs
that in float64 as the reference, and judges the block in the test dtype by the tolerance rule
with ``pt`` = the same block on the ``naive`` attention in the test dtype. Outputs, the input
gradient and two weight gradients (through attention: qkv; through the FFN: linear1) are
compared.

A block without such a declaration (RMSNorm, DeepNorm, QK-norm, ...) is judged against its own
float64 computation on ``naive`` attention (check "float64_block"): that proves it runs right
on every attention variant; tests/test_norm_blocks.py checks its definition against the
formula.

That ``pt`` shares any mistake of the block itself (a misplaced norm makes block and textbook
wrong alike, and the ratio stays ~1), so a structure guard comes first: the block in float64
on ``naive`` must match the float64 layer within the rule, with ``pt`` = the PyTorch layer run
in float32 (quantity "structure"). The PyTorch layer runs in training mode, which keeps it
off its fused fast path (dropout is 0, so training mode changes nothing else).
"""

from __future__ import annotations

import torch
from attnbench.variants.registry import Case, Variant, dtype_name, not_supported_reasons
from attnbench.verify.reference import generator, randn
from attnbench.verify.result import CheckResult, from_agreements, skipped
from attnbench.verify.tolerance import C_GRAD, C_OUTPUT, compare
from torch import nn

D_MODEL, N_HEADS, B, N = 64, 4, 2, 24  # head dim 16; N deliberately not a power of two


def encoder_layer_config(block: Variant) -> dict | None:
    """The class's *own* declaration: a subclass (RMSNorm, QK-norm) changes the math, so it
    does not inherit its parent's promise."""
    return vars(block.fn).get("encoder_layer_config")


def encoder_layer(block: nn.Module, config: dict) -> nn.TransformerEncoderLayer:
    """A float64 TransformerEncoderLayer holding ``block``'s weights."""
    d_model = block.norm1.normalized_shape[0]
    layer = nn.TransformerEncoderLayer(
        d_model, block.attn.n_heads, dim_feedforward=block.ffn.linear1.out_features,
        dropout=0.0, activation="gelu", batch_first=True, **config)
    pairs = [(layer.self_attn.in_proj_weight, block.attn.qkv.weight),
             (layer.self_attn.in_proj_bias, block.attn.qkv.bias),
             (layer.self_attn.out_proj.weight, block.attn.proj.weight),
             (layer.self_attn.out_proj.bias, block.attn.proj.bias),
             (layer.linear1.weight, block.ffn.linear1.weight),
             (layer.linear1.bias, block.ffn.linear1.bias),
             (layer.linear2.weight, block.ffn.linear2.weight),
             (layer.linear2.bias, block.ffn.linear2.bias),
             (layer.norm1.weight, block.norm1.weight), (layer.norm1.bias, block.norm1.bias),
             (layer.norm2.weight, block.norm2.weight), (layer.norm2.bias, block.norm2.bias)]
    with torch.no_grad():
        for theirs, ours in pairs:
            theirs.copy_(ours)
    return layer.double().train()  # train(): no fused fast path; dropout is 0


def _run(module: nn.Module, x: torch.Tensor, dout: torch.Tensor, params: list[str],
         **kwargs) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Output, and gradients w.r.t. x and the named parameters."""
    x = x.detach().requires_grad_(True)
    named = dict(module.named_parameters())
    with torch.enable_grad():
        out = module(x, **kwargs)
        grads = torch.autograd.grad(out, [x] + [named[p] for p in params], dout.to(out.dtype))
    return out.detach(), list(grads)


def _make_block(block: Variant, attention: str, dtype: torch.dtype, device: str, seed: int
                ) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = block.fn(D_MODEL, N_HEADS, attention=attention, causal=True, dropout=0.0)
    return module.to(device=device, dtype=dtype).train()


def check_block(block: Variant, attention: Variant, dtype: torch.dtype, device: str = "cpu",
                seed: int = 0) -> CheckResult:
    """``block`` on ``attention`` in ``dtype`` vs TransformerEncoderLayer in float64."""
    config = encoder_layer_config(block)
    check = "encoder_layer" if config is not None else "float64_block"
    case = Case(B=B, Hq=N_HEADS, N=N, D=D_MODEL // N_HEADS, dtype=dtype, device=device,
                causal=True, backward=True)
    reasons = [f"block: {r}" for r in not_supported_reasons(block, case)]
    reasons += [f"attention: {r}" for r in not_supported_reasons(attention, case)]
    result = (skipped(check, block.name, case, reasons) if reasons
              else _compare_block(block, attention, case, config, seed))
    result.extra["attention"] = attention.name
    result.case = f"{result.case}-d{D_MODEL}"
    return result


def _compare_block(block: Variant, attention: Variant, case: Case, config: dict | None,
                   seed: int) -> CheckResult:
    """With a TransformerEncoderLayer equivalent, PyTorch's layer in float64 is the reference.
    Without one, the block's own float64 computation on ``naive`` attention is: that checks
    the block on every attention variant, while its definition is checked by its own tests."""
    gen = generator(seed)
    x = randn((B, N, D_MODEL), case.dtype, case.device, gen)
    dout = randn((B, N, D_MODEL), case.dtype, case.device, gen)
    params = ["attn.qkv.weight", "ffn.linear1.weight"]
    ours = _make_block(block, attention.name, case.dtype, case.device, seed)
    block64 = _make_block(block, "naive", torch.float64, case.device, seed)
    block64.load_state_dict(ours.state_dict())  # the test dtype's rounded weights, exactly
    structure, structure_grads = _run(block64, x.double(), dout, params)
    if config is None:
        ref, ref_grads, agreements = structure, structure_grads, []
    else:
        theirs = encoder_layer(ours, config)
        mask = nn.Transformer.generate_square_subsequent_mask(N, device=case.device,
                                                              dtype=torch.float64)

        def layer(dtype: torch.dtype) -> tuple[torch.Tensor, list[torch.Tensor]]:
            return _run(theirs.to(dtype), x.to(dtype), dout, ["self_attn.in_proj_weight",
                        "linear1.weight"], src_mask=mask.to(dtype), is_causal=True)

        ref, ref_grads = layer(torch.float64)
        layer32, _ = layer(torch.float32)
        agreements = [compare("structure", structure, ref, [layer32], C_OUTPUT)]
    textbook = _make_block(block, "naive", case.dtype, case.device, seed)
    out, grads = _run(ours, x, dout, params)
    pt, pt_grads = _run(textbook, x, dout, params)
    agreements.append(compare("out", out, ref, [pt], C_OUTPUT))
    for name, g, r, p in zip(["dx", "dqkv_weight", "dlinear1_weight"], grads, ref_grads,
                             pt_grads, strict=True):
        agreements.append(compare(name, g, r, [p], C_GRAD))
    check = "encoder_layer" if config is not None else "float64_block"
    result = from_agreements(check, block.name, case, agreements, "grad")
    result.dtype = dtype_name(case.dtype)
    return result
