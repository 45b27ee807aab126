"""The metric vocabulary: every metric a suite writes, defined once.

Each metric has a name (the ``metric`` column of results.jsonl), a unit, a direction (is a
higher or a lower value better, or neither) and a sentence saying how it is computed. Suites
write rows through ``ResultsWriter``, which checks every row against this table (an undefined
metric or a unit that disagrees is an error) and fills the unit in; the report and the gate
look names, units and directions up here instead of re-deciding them.

Adding a metric: one ``Metric(...)`` line below, then write rows with that name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["higher", "lower", "none"]

# The one FLOP convention (throughput.models computes it; results and reports state it).
FLOP_CONVENTION = (
    "useful FLOPs, a multiply-add counts 2: forward 2*B*Hq*P*(D+Dv), P = visible (query, key) "
    "pairs: N*S, or with top-left causal masking sum_i min(i+1, S) (N(N+1)/2 when N == S, "
    "which is half of N^2 only as N grows), or with an attention pattern its mask's True "
    "entries; bwd 2x forward, fwd+bwd 3x (FlashAttention's "
    "recomputation not counted, so naive and fused variants are credited the same work); "
    "block forward per token 24*d^2 + 4*d*P/N, fwd+bwd 3x")


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    better: Direction  # "higher" or "lower" is better; "none": a parameter, count or verdict
    suites: tuple[str, ...]
    meaning: str  # how it is computed, in one or two sentences


# The patterns suite is the throughput benchmark run on attention patterns (its own results
# directory, so its rows never mix with the plain cases): it writes the same metrics.
_T, _V, _S = ("throughput", "patterns"), ("verify",), ("stability",)
_ALL: tuple[Metric, ...] = (
    # ---- throughput: time (median of per-process medians; see throughput.replicate) -------
    Metric("time_median_s", "s", "lower", _T,
           "Seconds per call: the median over worker processes of each process's median "
           "sample (a sample is one timing round divided by its calls)."),
    Metric("time_ci_low_s", "s", "lower", _T,
           "Lower end of the 95 % bootstrap interval of time_median_s, resampling processes."),
    Metric("time_ci_high_s", "s", "lower", _T,
           "Upper end of the 95 % bootstrap interval of time_median_s, resampling processes."),
    Metric("time_iqr_s", "s", "lower", _T,
           "Interquartile range of all samples of the case, pooled over processes."),
    Metric("time_min_s", "s", "lower", _T,
           "Seconds per call in the machine's fast state: the median over worker processes of "
           "each process's fastest sample. On a shared machine it moves less from run to run "
           "than time_median_s (docs/methods.md, Timing); calls, ratios and reports use "
           "time_median_s."),
    Metric("time_n", "count", "none", _T, "Timing samples of the case, over all processes."),
    Metric("time_processes", "count", "none", _T,
           "Worker processes whose samples entered time_median_s."),
    Metric("time_process_spread", "", "lower", _T,
           "max / min - 1 of the per-process medians: how much the processes disagreed."),
    Metric("compile_s", "s", "lower", _T,
           "Seconds a case's first call spent compiling, in the worker that checks it: the "
           "variant's logged first-call wall time (compile_log(); flex's block mask is built "
           "before its timer) minus the median of three warm calls; 0 when that worker had "
           "compiled the problem already. Only for variants that log compiling (flex). A cold "
           "inductor cache costs more than a warm one. Never part of time_median_s, which is "
           "timed after warm-up."),
    Metric("flops", "FLOP", "none", _T,
           "Useful FLOPs of one call by the FLOP convention (throughput.models)."),
    Metric("tflops", "TFLOP/s", "higher", _T, "flops / time_median_s / 1e12."),
    Metric("peak_tflops", "TFLOP/s", "higher", _T,
           "The machine's attainable TFLOP/s for a dtype: a square matrix product, 2 n^3 FLOPs "
           "over its median time."),
    Metric("peak_fraction", "", "higher", _T, "tflops / peak_tflops of the same run and dtype."),
    Metric("tokens_per_s", "tokens/s", "higher", _T, "Block cases: B * N / time_median_s."),
    Metric("attention_share", "", "none", _T,
           "Block cases: time_median_s of the attention call alone at the block's shapes, "
           "over the block's time_median_s (both timed in the same processes)."),
    Metric("aa_ratio", "", "none", _T,
           "A/A control: median over processes of time(twin) / time(control) for one variant "
           "timed twice as two arms of the same problem; 1 is ideal, the spread is noise."),
    Metric("noise_floor", "", "none", _T,
           "90th percentile over the run's A/A controls of |aa_ratio - 1|: a speed difference "
           "is called only when its interval clears 1 by more than this."),
    # ---- throughput: memory ---------------------------------------------------------------
    Metric("mem_peak_bytes", "B", "lower", _T,
           "Peak bytes allocated during one call above those allocated before it (memray on "
           "CPU, torch.cuda peak statistics on CUDA)."),
    Metric("mem_model_bytes", "B", "lower", _T,
           "The analytic bytes model's prediction for the same call (throughput.models)."),
    Metric("mem_exponent", "", "lower", _T,
           "k in mem_peak_bytes ~ N^k: least-squares slope of log peak on log N over every "
           "memory-sweep length of the group (columns N_min, N_max, points)."),
    # ---- throughput: accuracy --------------------------------------------------------------
    Metric("sampled_error_ratio", "", "lower", _T,
           "max|x - ref| / max(max|pt - ref|, eps * max|ref|) on 32 sampled query rows, ref "
           "float64, pt the textbook computation in the test dtype. Not verify's error_ratio "
           "(one textbook ordering, a different floor, sampled rows)."),
    # ---- whole-case status ----------------------------------------------------------------
    Metric("run", "", "none", _T + _S,
           "A case that did not produce metrics: status skipped or error, with the reason."),
    # ---- verify ----------------------------------------------------------------------------
    Metric("passed", "bool", "higher", _V, "1 when the check passed, 0 when it failed."),
    Metric("error_ratio", "", "lower", _V,
           "max|out - ref| / the FlashAttention rule's yardstick: the worse of two textbook "
           "orderings in the test dtype, floored by the terms' magnitude; passes at <= bound."),
    # ---- stability -------------------------------------------------------------------------
    Metric("final_val_loss", "nats", "lower", _S, "Validation loss at the end of training."),
    Metric("init_loss", "nats", "none", _S, "Validation loss before the first step."),
    Metric("unigram_loss", "nats", "none", _S,
           "Loss of the unigram distribution of the training data (the trivial baseline)."),
    Metric("diverged", "bool", "lower", _S, "1 when the run's verdict is not healthy."),
    Metric("spikes", "count", "lower", _S, "Loss spikes in the training curve."),
    Metric("max_logit", "", "lower", _S, "Largest attention logit seen during training."),
    Metric("grad_norm", "", "none", _S, "Gradient norm of one layer (column layer) at init."),
    Metric("hidden_norm", "", "none", _S, "Norm of one layer's output (column layer) at init."),
    Metric("last_ffn_grad_norm", "", "none", _S, "Gradient norm of the last MLP at init."),
    Metric("output_change", "", "lower", _S,
           "Admin's measure (Liu et al. 2020): squared L2 change per token of the model output "
           "when the residual branches' weights get independent noise of one absolute std, "
           "mean over noise draws (stability.diagnostics)."),
    Metric("output_change_all", "", "none", _S,
           "The earlier output-change measure: noise eps * rms(param) on every parameter, norm "
           "gains and embeddings included; kept to show why it misled (stability.diagnostics)."),
    Metric("one_step_change", "", "lower", _S,
           "Squared L2 change per token of the same output after one AdamW step at the "
           "preset's reference learning rate, at init."),
    Metric("lowest_diverging_lr", "lr", "higher", _S,
           "Lowest learning rate of the sweep whose run diverged, per depth."),
    Metric("lr_sensitivity", "nats", "lower", _S,
           "How much final_val_loss moves over the learning-rate sweep, per depth, mean over "
           "seeds (stability.verdicts.lr_sensitivity)."),
    Metric("reproduced", "bool", "none", _S,
           "1 when the stability suite reproduced a finding from the literature."),
)
METRICS: dict[str, Metric] = {m.name: m for m in _ALL}


def metric(name: str) -> Metric:
    """The definition of ``name``; ValueError naming the known metrics otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"metric {name!r} is not defined in attnbench.metrics; known: "
                         f"{sorted(METRICS)}") from None


def checked_row(suite: str, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its unit filled in from the definition; ValueError when the metric is not
    defined for ``suite`` or the row states another unit."""
    m = metric(str(row.get("metric")))
    if suite not in m.suites:
        raise ValueError(f"metric {m.name!r} is defined for {list(m.suites)}, not for the "
                         f"{suite} suite")
    unit = row.get("unit") or ""
    if unit and unit != m.unit:
        raise ValueError(f"metric {m.name!r}: unit {unit!r} disagrees with its definition "
                         f"{m.unit!r}")
    return {**row, "unit": m.unit}


def lower_is_better(name: str) -> bool:
    """For ratios and colours: True when a smaller value of ``name`` is the better one."""
    return metric(name).better == "lower"
