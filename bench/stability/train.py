"""One training run: a small character-level GPT, AdamW, warm-up then cosine decay, the loss,
gradient-norm and attention-logit curves, and the divergence verdict.

Reproducible on CPU: the seed fixes the initial weights and the order of training batches,
validation batches are fixed windows, and the run uses one thread, so the same job gives a
bitwise identical loss curve in any process on the same software stack.

The optimiser is AdamW with beta1 0.9 and a swept beta2 (the regime decides the verdicts:
Wortsman et al. 2023 use 0.95, Xiong et al. 2020 used 0.98, Adam's default is 0.999), linear
warm-up, cosine decay (to 10% of the peak here), no gradient clipping (clipping would hide the
instabilities being measured) and no weight decay.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from attnbench.stability.common import ModelSpec, Outcome, Stopwatch, metric_row, single_thread
from attnbench.stability.data import CharData, CorpusRef
from attnbench.stability.verdicts import count_spikes, divergence_verdict
from attnbench.variants.blocks import SelfAttention
from attnbench.variants.gpt import GPT


@dataclass(frozen=True)
class TrainJob:
    block: str  # registry name of the block variant
    attention: str  # registry name of the attention variant inside every block
    depth: int  # number of blocks
    lr: float  # peak learning rate
    warmup: int  # linear warm-up steps (0: none)
    seed: int
    steps: int
    eval_every: int  # validation loss and max attention logit every this many steps
    eval_batches: int  # fixed validation batches per evaluation
    model: ModelSpec
    corpus: CorpusRef
    beta2: float = 0.95  # AdamW's second-moment decay
    init: str = "scaled"  # GPTConfig.init: "scaled" or "unscaled"

    @property
    def case_id(self) -> str:
        return (f"train:{self.block}:{self.attention}:L{self.depth}:lr{self.lr:g}"
                f":wu{self.warmup}:b2{self.beta2:g}:{self.init}:seed{self.seed}")

    def columns(self) -> dict[str, Any]:
        """The parameter columns of every row this run writes (results vocabulary)."""
        return {"variant": self.block, "block": self.block, "attention": self.attention,
                "depth": self.depth, "lr": self.lr, "warmup": self.warmup,
                "warmup_frac": self.warmup / self.steps, "beta2": self.beta2,
                "init": self.init, "seed": self.seed, "steps": self.steps,
                "d_model": self.model.d_model, "eval_every": self.eval_every}

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def lr_at(step: int, lr: float, warmup: int, steps: int) -> float:
    """Learning rate for optimiser step ``step`` (1-based): linear warm-up from lr/warmup to lr
    over ``warmup`` steps, then cosine decay to 0.1 * lr at ``steps``."""
    if step <= warmup:
        return lr * step / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def evaluate(model: GPT, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """Mean validation loss and the max attention logit over all layers. The logit probe is
    one extra N x N matmul per layer, so it runs on the first validation batch only."""
    attention = [m for m in model.modules() if isinstance(m, SelfAttention)]
    model.eval()
    losses = []
    for i, (x, y) in enumerate(batches):
        for module in attention:
            module.record_max_logit = i == 0
        losses.append(model(x, y)[1].item())
    for module in attention:
        module.record_max_logit = False
    model.train()
    return sum(losses) / len(losses), max(m.max_logit for m in attention)


def total_grad_norm(model: torch.nn.Module) -> float:
    norms = [torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)).item()


def run_train(job: TrainJob) -> Outcome:
    with single_thread():
        return _train(job)


def _train(job: TrainJob) -> Outcome:
    clock = Stopwatch()
    data: CharData = job.corpus.load(job.model.block_size)
    spec = job.model
    model = spec.build(len(data.vocab), job.block, job.attention, job.depth, job.seed, job.init)
    optimizer = torch.optim.AdamW(model.parameters(), lr=job.lr, betas=(0.9, job.beta2),
                                  weight_decay=0.0)
    generator = torch.Generator().manual_seed(job.seed)
    val_batches = data.val_batches(job.eval_batches, spec.batch_size, spec.block_size)

    curves: dict[str, list[float]] = {"train_loss": [], "grad_norm": [], "val_loss": [],
                                      "max_logit": []}

    def record_eval() -> None:
        val_loss, max_logit = evaluate(model, val_batches)
        curves["val_loss"].append(val_loss)
        curves["max_logit"].append(max_logit)

    record_eval()  # step 0: the initial loss
    stopped = ""
    for step in range(1, job.steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, job.lr, job.warmup, job.steps)
        x, y = data.train_batch(generator, spec.batch_size, spec.block_size)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = total_grad_norm(model)
        curves["train_loss"].append(loss.item())
        curves["grad_norm"].append(grad_norm)
        if not (math.isfinite(loss.item()) and math.isfinite(grad_norm)):
            stopped = f"stopped at step {step}: non-finite loss or gradient"
            break  # an update now would only spread NaN through the weights
        optimizer.step()
        if step % job.eval_every == 0:
            record_eval()

    init_loss, unigram = curves["val_loss"][0], data.unigram_loss()
    final = math.nan if stopped else curves["val_loss"][-1]
    verdict = divergence_verdict(curves["val_loss"] + [final], init_loss, unigram,
                                 train_losses=curves["train_loss"])
    finite_logits = [v for v in curves["max_logit"] if math.isfinite(v)]
    columns = {**job.columns(), "verdict": verdict}
    rows = [metric_row(columns, "final_val_loss", final, "nats", reason=stopped),
            metric_row(columns, "init_loss", init_loss, "nats"),
            metric_row(columns, "unigram_loss", unigram, "nats"),
            metric_row(columns, "diverged", int(verdict != "healthy"), "bool"),
            metric_row(columns, "spikes", count_spikes(curves["train_loss"]), "count"),
            metric_row(columns, "max_logit", max(finite_logits, default=math.nan), "")]
    summary = (f"{job.case_id}: val {final:.3f} (init {init_loss:.3f}, unigram {unigram:.3f}) "
               f"{verdict}, max logit {max(finite_logits, default=math.nan):.3g}")
    return Outcome(job.case_id, rows, curves, *clock.read(), summary)
