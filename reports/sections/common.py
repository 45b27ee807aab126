"""Helpers the sections share: which rows are which, and how a series is named."""

from __future__ import annotations

from typing import Any

import pandas as pd
from attnbench.reports.load import Bundle, ensure, sort_key, wide

from attnbench import metrics

# The parameters that identify one attention problem in the throughput suite (besides variant).
SHAPE = ("B", "Hq", "Hkv", "N", "S", "D", "Dv", "dtype", "causal", "mode", "device")
FLOP_CONVENTION = "FLOP convention: " + metrics.FLOP_CONVENTION


def flop_convention(bundle: Bundle) -> str:
    """The convention the throughput runs recorded (provenance "flop_convention"), else ours."""
    recorded = sorted({(r.label, str(r.provenance["flop_convention"])) for r in bundle.runs
                       if r.suite == "throughput" and r.provenance.get("flop_convention")})
    if not recorded:
        return FLOP_CONVENTION
    if len({text for _, text in recorded}) == 1:
        return "FLOP convention (recorded by the run): " + recorded[0][1]
    return "FLOP conventions (recorded by each run): " + "; ".join(
        f"[{label}] {text}" for label, text in recorded)


def attention_cases(bundle: Bundle, suite: str = "throughput") -> pd.DataFrame:
    """Throughput rows of attention variants, one row per measured case (wide); ``suite``
    "patterns" gives the pattern cases (same metrics, their own results directory)."""
    frame = bundle.rows(suite)
    if frame.empty:
        return frame
    frame = ensure(frame, "kind", "case_id")
    frame = frame[(frame["kind"] != "block") & ~frame["case_id"].astype(str).str.startswith(
        ("memfit:", "peak:")) & (frame["variant"] != "matmul_peak")]
    frame = frame[frame["metric"] != "mem_exponent"]
    frame = frame[frame["kind"] != "control"]  # the A/A control rows (attnbench.speed)
    frame = frame[frame["case_id"].astype(str) != "noise_floor"]
    return ensure(wide(frame), *SHAPE, "time_median_s", "time_iqr_s", "time_ci_low_s",
                  "time_ci_high_s", "tflops", "flops", "mem_peak_bytes", "mem_model_bytes",
                  "sampled_error_ratio", "peak_fraction")


def memory_fits(bundle: Bundle) -> pd.DataFrame:
    """mem_exponent rows with their variant, mode, dtype and causal columns (the report reads
    a row's fields, never pieces of its case_id)."""
    frame = bundle.rows("throughput")
    if frame.empty or "metric" not in frame:
        return pd.DataFrame(columns=["run", "variant", "mode", "dtype", "causal", "value"])
    frame = ensure(frame[frame["metric"] == "mem_exponent"].copy(), "mode", "dtype", "causal")
    frame["causal"] = frame["causal"].map(as_bool)
    return frame


def as_bool(value: Any) -> Any:
    """JSON true / "True" / 1 -> True; missing stays missing."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    if value is None or (isinstance(value, float) and value != value):
        return None
    return bool(value)


def series_label(name: str, run: str, bundle: Bundle, extra: str = "") -> str:
    """A line's legend entry; names the run whenever the report shows more than one."""
    label = name + (f" {extra}" if extra else "")
    return f"{label} [{run}]" if bundle.several_runs else label


def run_column(bundle: Bundle) -> list[str]:
    """Tables get a leading "run" column only when several runs are shown."""
    return ["run"] if bundle.several_runs else []


def groups(frame: pd.DataFrame, keys: list[str]) -> list[tuple[tuple[Any, ...], pd.DataFrame]]:
    """``frame.groupby(keys)`` in a fixed order, keeping missing keys (dropna=False)."""
    if frame.empty:
        return []
    present = [k for k in keys if k in frame.columns]
    if not present:
        return [((), frame)]
    out = [((k if isinstance(k, tuple) else (k,)), g)
           for k, g in frame.groupby(present, dropna=False, sort=False)]
    return sorted(out, key=lambda kg: [sort_key(x) for x in kg[0]])


def case_text(row: pd.Series | dict[str, Any], keys: tuple[str, ...]) -> str:
    """"bfloat16 fwd causal" for a row: the words a reader needs to find a regime again."""
    words = []
    for key in keys:
        value = row.get(key)
        if value is None or (isinstance(value, float) and value != value):
            continue
        if key == "causal":
            words.append("causal" if as_bool(value) else "non-causal")
        else:
            words.append(str(value))
    return " ".join(words)


def stability_configs(frame: pd.DataFrame) -> pd.Series:
    """Names for trained configurations: the block, plus the attention, warm-up, AdamW beta2
    and init scheme only when a run varied them ("post_ln", "post_ln warmup 100 beta2 0.999",
    "pre_ln [sdpa]", "pre_ln init unscaled")."""
    frame = ensure(frame, "block", "variant", "attention", "warmup", "beta2", "init")
    block = frame["block"].where(frame["block"].notna(), frame["variant"]).astype(str)
    label = block.copy()
    if frame["attention"].dropna().nunique() > 1:
        label = label + " [" + frame["attention"].astype(str) + "]"
    if frame["warmup"].dropna().nunique() > 1:
        label = label + frame["warmup"].map(
            lambda w: "" if w != w else f" warmup {int(w)}")
    if frame["beta2"].dropna().nunique() > 1:
        label = label + frame["beta2"].map(lambda b: "" if b != b else f" beta2 {b:g}")
    if frame["init"].dropna().nunique() > 1:
        label = label + frame["init"].map(lambda i: "" if i != i else f" init {i}")
    return label
