"""Measurements at initialisation, in seconds per model: what the Post-LN / Pre-LN papers
predict from the architecture alone, before any training.

For one block variant at one depth, on one fixed validation batch:
    grad_norm (per layer)   norm of the loss gradient w.r.t. each block's parameters
    last_ffn_grad_norm      norm of the gradient of the last block's second FFN weight, the
                            quantity of Xiong et al. 2020 (flat in depth for Post-LN, about
                            1/sqrt(L) for Pre-LN)
    hidden_norm (per layer) mean per-token L2 norm of the residual stream after each block
                            (layer 0: the embeddings); Pre-LN's grows with depth
    output_change           Liu et al. 2020 (Admin), E||F(x, W) - F(x, W + delta)||^2: the
                            squared L2 change per token of the model output (the LM head's
                            input) when the sublayers' weights W_i (attention qkv and output
                            projection, both FFN linears: the parameters of the residual
                            branches f_i) get independent noise of one absolute std,
                            eps * 0.02, the same for every sublayer (Admin's analysis assumes
                            every sublayer's output change has the same variance). About O(N)
                            in the number of sublayers N for Post-LN, O(log N) for Pre-LN.
                            Mean over noise draws.
    output_change_all       the earlier measure, kept to show why it misled: every parameter
                            (norm gains, embeddings included) gets noise eps * rms(param).
                            The LayerNorm gains (rms 1) then dominate, and a gain's noise
                            passes unattenuated down a Post-LN or DeepNorm stream, so both
                            read the same ~2L * eps^2 * d whatever their residual scaling.
    one_step_change         squared L2 change per token of the same output after one AdamW
                            step at the preset's reference learning rate. One step does not
                            depend on beta1 or beta2: with bias correction m_hat = g and
                            v_hat = g^2, so the update is lr * g / (|g| + eps) (measured: the
                            parameters after one step with beta2 0.95 and 0.999 differ by
                            7e-9, float32 rounding), so one diagnostic serves both regimes
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from attnbench.stability.common import ModelSpec, Outcome, Stopwatch, metric_row, single_thread
from attnbench.stability.data import CorpusRef
from attnbench.variants.gpt import BASE_STD, GPT
from torch import nn


@dataclass(frozen=True)
class InitJob:
    block: str
    attention: str
    depth: int
    seed: int
    perturbation: float  # eps: output-change noise std in units of the base init std 0.02
    draws: int  # noise draws averaged for output_change
    step_lr: float  # learning rate of the one-step change
    model: ModelSpec
    corpus: CorpusRef
    init: str = "scaled"  # GPTConfig.init: "scaled" or "unscaled"

    @property
    def case_id(self) -> str:
        return f"init:{self.block}:{self.attention}:L{self.depth}:{self.init}:seed{self.seed}"

    def columns(self) -> dict[str, Any]:
        return {"variant": self.block, "block": self.block, "attention": self.attention,
                "depth": self.depth, "init": self.init, "seed": self.seed,
                "d_model": self.model.d_model}


def model_output(model: GPT, x: torch.Tensor) -> torch.Tensor:
    """What the LM head reads: the last hidden state after the final norm (B, N, d_model)."""
    captured: list[torch.Tensor] = []
    hook = model.final_norm.register_forward_hook(lambda m, i, out: captured.append(out))
    try:
        model(x)
    finally:
        hook.remove()
    return captured[0]


def hidden_norms(model: GPT, x: torch.Tensor) -> list[float]:
    """Mean per-token L2 norm of the residual stream: embeddings, then after each block."""
    captured: list[torch.Tensor] = []
    hooks = [model.tok_emb.register_forward_hook(
        lambda m, i, out: captured.append(out + model.pos_emb.weight[:out.shape[1]]))]
    hooks += [b.register_forward_hook(lambda m, i, out: captured.append(out))
              for b in model.blocks]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return [h.norm(dim=-1).mean().item() for h in captured]


def sublayer_weights(model: GPT) -> list[nn.Parameter]:
    """Admin's W_i: the weight matrices of every residual branch (attention qkv and output
    projection, both FFN linears). Norm gains and biases, embeddings and biases are not."""
    return [m.weight for block in model.blocks for m in block.modules()
            if isinstance(m, nn.Linear)]


def squared_change(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over tokens of ||a - b||^2, for outputs of shape (B, N, d_model)."""
    return (a - b).pow(2).sum(dim=-1).mean().item()


@torch.no_grad()
def output_change(model: GPT, x: torch.Tensor, eps: float, draws: int,
                  generator: torch.Generator, *, every_parameter: bool = False) -> float:
    """E||F(x, W) - F(x, W + delta)||^2 over ``draws`` Gaussian perturbations (Admin's output
    change). By default delta has std eps * 0.02 on the sublayer weights only (see the module
    docstring); ``every_parameter`` perturbs every tensor by eps * its own rms instead."""
    reference = model_output(model, x)
    changes = []
    for _ in range(draws):
        perturbed = copy.deepcopy(model)
        targets = list(perturbed.parameters()) if every_parameter else sublayer_weights(
            perturbed)
        for p in targets:
            std = eps * p.pow(2).mean().sqrt() if every_parameter else eps * BASE_STD
            p.add_(torch.randn(p.shape, generator=generator) * std)
        changes.append(squared_change(model_output(perturbed, x), reference))
    return sum(changes) / len(changes)


def one_step_change(model: GPT, x: torch.Tensor, y: torch.Tensor, lr: float) -> float:
    """Squared output change per token after one AdamW step (the training runs' optimiser;
    its first step is the same for every beta2, see the module docstring)."""
    stepped = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(stepped.parameters(), lr=lr, betas=(0.9, 0.95),
                                  weight_decay=0.0)
    _, loss = stepped(x, y)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        return squared_change(model_output(stepped, x), model_output(model, x))


def layer_grad_norms(model: GPT) -> list[float]:
    return [math.sqrt(sum(p.grad.pow(2).sum().item() for p in block.parameters()))
            for block in model.blocks]


def run_init(job: InitJob) -> Outcome:
    with single_thread():
        return _init_diagnostics(job)


def _init_diagnostics(job: InitJob) -> Outcome:
    clock = Stopwatch()
    spec = job.model
    data = job.corpus.load(spec.block_size)
    model = spec.build(len(data.vocab), job.block, job.attention, job.depth, job.seed, job.init)
    x, y = data.val_batches(1, spec.batch_size, spec.block_size)[0]

    _, loss = model(x, y)
    loss.backward()
    grads = layer_grad_norms(model)
    last_ffn: nn.Linear = model.blocks[-1].ffn.linear2
    last_ffn_grad = last_ffn.weight.grad.norm().item()
    model.zero_grad(set_to_none=True)

    generator = torch.Generator().manual_seed(job.seed)
    change = output_change(model, x, job.perturbation, job.draws, generator)
    change_all = output_change(model, x, job.perturbation, job.draws, generator,
                               every_parameter=True)
    step_change = one_step_change(model, x, y, job.step_lr)

    cols = job.columns()
    rows = [metric_row(cols, "grad_norm", g, layer=i + 1) for i, g in enumerate(grads)]
    rows += [metric_row(cols, "hidden_norm", h, layer=i)
             for i, h in enumerate(hidden_norms(model, x))]
    rows += [metric_row(cols, "last_ffn_grad_norm", last_ffn_grad),
             metric_row(cols, "output_change", change),
             metric_row(cols, "output_change_all", change_all),
             metric_row(cols, "one_step_change", step_change)]
    summary = (f"{job.case_id}: last FFN grad {last_ffn_grad:.3g}, output change {change:.3g}, "
               f"one-step change {step_change:.3g}")
    return Outcome(job.case_id, rows, {}, *clock.read(), summary)
