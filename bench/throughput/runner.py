"""The throughput benchmark run: plan the cases, measure them in workers, write the table.

Every case ends as rows in the results directory, appended as soon as it finishes:
ok metric rows, a "skipped" row with the reason (unsupported, capped by the preset,
interpreted Triton), or an "error" row (the variant raised, returned NaN, ran out of memory,
ran past the time limit, or killed its worker). A rerun with ``resume=True`` skips every case
already recorded. Matrix-product peaks come first (``peak_fraction`` needs them), then the
untimed cases (memory sweep, accuracy only), then the timed cases shape by shape: each case is
checked (finite result, sampled accuracy, peak memory) in the first worker, then timed with
the other variants of its shape in every one of ``timing.processes`` workers, with the A/A
control alongside; a group's replicates are spread over the run (``replicate.stagger``), and
its rows are written when its last replicate is in. Last come the memory-exponent fits
and the run's noise floor (they need every memory point and every control).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError
from attnbench.results import (
    PROVENANCE,
    RESULTS,
    ResultsError,
    ResultsWriter,
    check_restart_flags,
    load_results,
    variant_catalog,
)
from attnbench.throughput.cases import BenchCase
from attnbench.throughput.measure import Measurement, measure_case, measure_peak
from attnbench.throughput.memory import memory_unavailable_reason
from attnbench.throughput.models import FLOP_CONVENTION, fit_exponent
from attnbench.throughput.presets import Preset, expand
from attnbench.throughput.replicate import (
    ALONE,
    TWIN,
    Group,
    attention_share,
    control_row,
    noise_row,
    per_process,
    plan_groups,
    sample_records,
    stagger,
    time_arms,
    time_values,
)
from attnbench.throughput.selection import Selection
from attnbench.throughput.timing import TimingSettings, cpu_clock, pinned_cpus
from attnbench.throughput.worker import MALLOC_ENV, Worker
from attnbench.variants.registry import get, not_supported_reasons

SUITE = "throughput"  # a patterns preset writes the "patterns" suite (Preset.suite)
INTERPRETED_MAX_N, INTERPRETED_MAX_BH = 256, 4  # ~100 interpreted cases a minute below this


@dataclass
class RunConfig:
    preset: Preset
    out: Path
    selection: Selection = field(default_factory=Selection)
    resume: bool = False
    force: bool = False  # replace a previous run in ``out``
    threads: int | None = None  # default: the preset's
    time_limit_s: float | None = None  # default: the preset's
    seed: int = 0
    plugins: list[str] = field(default_factory=list)
    argv: list[str] | None = None
    progress: bool | None = None  # None: when stderr is a terminal


def plan(config: RunConfig) -> list[BenchCase]:
    """The preset's cases narrowed by the selection (ValueError when none is left)."""
    sel = config.selection
    cases = [c for c in expand(config.preset, sel.device, sel.attention or None) if sel.keeps(c)]
    if not cases:
        raise UsageError(f"no case of preset {config.preset.name!r} matches the selection "
                         f"{asdict(sel)}")
    return cases


def triage(case: BenchCase, preset: Preset) -> tuple[BenchCase, str | None]:
    """The case to measure (possibly accuracy-only) and why it is skipped, if it is."""
    attention = get(case.attention)
    reasons = not_supported_reasons(attention, case.registry_case())
    if case.kind == "block":
        reasons = [f"block: {r}" for r in not_supported_reasons(get(case.block),
                                                                case.registry_case())] + \
                  [f"attention {case.attention}: {r}" for r in reasons]
    if reasons:
        return case, "; ".join(reasons)
    capped = preset.limit_reason(case)
    if capped:
        return case, capped
    no_memory = memory_unavailable_reason(case.device)
    if case.measure == "memory" and no_memory:
        return case, no_memory
    untimeable = attention.untimeable_reason()  # declared at registration
    if untimeable:
        never = f"never timed here: {untimeable}"
        small = case.N <= INTERPRETED_MAX_N and case.B * case.Hq <= INTERPRETED_MAX_BH
        if case.kind == "attention" and case.measure == "full" and small:
            return replace(case, measure="accuracy"), None
        if case.measure == "memory":
            return case, never
        return case, (f"{never}; its accuracy is measured only at N <= {INTERPRETED_MAX_N}, "
                      f"B*Hq <= {INTERPRETED_MAX_BH}")
    return case, None


def _status_row(case: BenchCase, status: str, reason: str) -> dict[str, Any]:
    return {"variant": case.variant, "status": status, "reason": reason, "metric": "run",
            **case.columns()}


def measurement_rows(case: BenchCase, m: Measurement, peaks: dict[tuple[str, str], float]
                     ) -> list[dict[str, Any]]:
    """Tidy rows of one measured case, with ``peak_fraction`` from this run's matmul peak."""
    base = {"variant": case.variant, **case.columns(), **m.columns}
    rows = [{**base, "status": "ok", "metric": k, "value": v} for k, v in m.values.items()]
    rows += [{**base, "status": "skipped", "metric": k, "reason": why}
             for k, why in m.skipped.items()]
    if "tflops" in m.values:
        peak = peaks.get((case.device, case.dtype))
        if peak:
            rows.append({**base, "status": "ok", "metric": "peak_fraction",
                         "value": m.values["tflops"] / peak})
        else:
            rows.append({**base, "status": "skipped", "metric": "peak_fraction",
                         "reason": f"no matmul peak measured for {case.dtype} on {case.device}"})
    if case.measure == "accuracy":
        rows.append({**base, "status": "skipped", "metric": "run",
                     "reason": f"never timed here: {get(case.attention).untimeable_reason()}; "
                               "accuracy only"})
    return rows


def _prepare_out(config: RunConfig) -> None:
    """--force clears the three result files of a previous run; --resume must continue the
    same preset and selection. Checked before anything is written."""
    out = config.out
    if config.resume and not config.force and (out / PROVENANCE).exists():
        from attnbench.results import load_provenance

        previous = load_provenance(out)
        now = json.loads(json.dumps({"preset": config.preset.name,
                                     "selection": asdict(config.selection)}))
        before = {"preset": previous.get("preset"), "selection": previous.get("selection")}
        if previous.get("suite") != config.preset.suite or before != now:
            raise ResultsError(f"--resume {out}: that run used {before}, this one asks for "
                               f"{now}; resume with the same arguments or use another --out")
    check_restart_flags(out, resume=config.resume, force=config.force)


def _peak_cases(cases: list[BenchCase], threads: int) -> dict[str, tuple[str, str]]:
    needed = sorted({(c.device, c.dtype) for c in cases if c.measure == "full"})
    return {f"peak:{dev}:{dtype}:threads{threads}": (dev, dtype) for dev, dtype in needed}


def _recorded_peaks(out: Path) -> dict[tuple[str, str], float]:
    if not (out / RESULTS).exists():
        return {}
    frame = load_results(out)
    if frame.empty or "metric" not in frame:
        return {}
    rows = frame[(frame.metric == "peak_tflops") & (frame.status == "ok")]
    return {(r.device, r.dtype): float(r.value) for r in rows.itertuples()}


def memory_fits(out: Path, preset: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """One mem_exponent row per (variant, mode, dtype, causal) of the memory-only cases."""
    frame = load_results(out)
    if frame.empty or "measure" not in frame:
        return []
    points = frame[(frame.metric == "mem_peak_bytes") & (frame.measure == "memory")]
    fits = []
    for (variant, mode, dtype, causal, device), group in points.groupby(
            ["variant", "mode", "dtype", "causal", "device"]):
        ok = group[group.status == "ok"]
        row = {"variant": variant, "kind": "attention", "mode": mode, "dtype": dtype,
               "causal": bool(causal), "device": device, "preset": preset,
               "metric": "mem_exponent", "unit": ""}
        lengths = sorted(set(ok.N))
        if len(lengths) < 3:
            row.update(status="skipped", reason=f"needs peak memory at >= 3 lengths, has "
                                                f"{len(lengths)} (the others failed)")
        else:
            row.update(status="ok", N_min=int(min(lengths)), N_max=int(max(lengths)),
                       points=len(lengths), value=fit_exponent(list(ok.N), list(ok.value)))
        fits.append((f"memfit:{variant}:{mode}:{dtype}:{bool(causal)}", [row]))
    return fits


class _NoProgress:
    def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
        pass

    update = close = set_postfix_str


def _progress_bar(total: int, show: bool) -> Any:
    """tqdm's bar with an ETA; tqdm is optional (the GPU machine has no tqdm and no pip)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoProgress()
    return tqdm(total=total, unit="case", desc=SUITE, dynamic_ncols=True, disable=not show)


def _run_peak(worker: Worker, writer: ResultsWriter, case_id: str, device: str, dtype: str,
              threads: int, preset: Preset, limit: float) -> tuple[str, float | None]:
    """Measure and record one matmul peak; returns (status, TFLOP/s or None)."""
    status, result = worker.call(measure_peak, (device, dtype, preset.timing), limit)
    base = {"variant": "matmul_peak", "kind": "peak", "device": device, "dtype": dtype,
            "threads": threads, "preset": preset.name}
    if status != "ok":
        writer.add_case(case_id, [{**base, "status": "error", "metric": "run",
                                   "reason": result}])
        return status, None
    value = result.values["peak_tflops"]
    writer.add_case(case_id, [{**base, **result.columns, "status": "ok",
                               "metric": "peak_tflops", "value": value}], result.samples)
    return status, value


def _run_case(worker: Worker, writer: ResultsWriter, case: BenchCase, why: str | None,
              peaks: dict[tuple[str, str], float], timing: TimingSettings, limit: float,
              seed: int) -> str:
    """Record one untimed case: skipped, measured in the worker, or an error; returns the
    status."""
    if why is not None:
        writer.add_case(case.case_id, [_status_row(case, "skipped", why)])
        return "skipped"
    started = time.monotonic()
    status, result = worker.call(measure_case, (case, timing, seed, False), limit)
    if status != "ok":
        writer.add_case(case.case_id, [_status_row(case, "error", result)])
        return status
    result.columns["case_wall_s"] = round(time.monotonic() - started, 3)
    writer.add_case(case.case_id, measurement_rows(case, result, peaks), result.samples)
    return status


@dataclass
class _GroupRun:
    """One shape group between its first and its last replicate: what the first worker's
    check found, the arms every worker times, and each worker's samples so far."""

    group: Group
    checked: dict[str, Measurement] = field(default_factory=dict)
    arms: list[tuple[str, BenchCase]] = field(default_factory=list)
    results: dict[int, dict[str, list[float] | str] | str] = field(default_factory=dict)
    busy_s: float = 0.0  # seconds spent on this group's own calls (check and timings)
    counts: Counter[str] = field(default_factory=Counter)


def _check_group(worker: Worker, writer: ResultsWriter, group: Group, timing: TimingSettings,
                 limit: float, seed: int) -> _GroupRun:
    """Check each case of a shape in the first worker (errors are recorded now); the
    survivors, their alone arms and the A/A twin become the arms every worker times."""
    run, started = _GroupRun(group), time.monotonic()
    for case in group.cases:
        status, result = worker.call(measure_case, (case, timing, seed, False), limit)
        if status != "ok":
            writer.add_case(case.case_id, [_status_row(case, "error", result)])
            run.counts[status] += 1
        else:
            run.checked[case.case_id] = result
    attentions = {c.attention for c in group.cases if c.case_id in run.checked}
    run.arms = [(key, c) for key, c in group.arms
                if (c.attention in attentions if key.startswith(ALONE)
                    else c.case_id in run.checked)]
    run.busy_s += time.monotonic() - started
    return run


def _time_group(worker: Worker, run: _GroupRun, r: int, timing: TimingSettings, limit: float,
                seed: int) -> None:
    """Replicate ``r`` of a group: its arms timed together in worker ``r``."""
    if not run.arms:  # every case of the group failed its check
        run.results[r] = {}
        return
    started = time.monotonic()
    status, got = worker.call(time_arms, (run.arms, timing, seed, r % 2 == 1),
                              limit * len(run.arms))
    run.results[r] = got if status == "ok" else f"process {r}: {got}"
    run.busy_s += time.monotonic() - started


def _record_group(writer: ResultsWriter, run: _GroupRun,
                  peaks: dict[tuple[str, str], float]) -> Counter[str]:
    """Write a group's rows once every replicate is in, with its A/A control row."""
    group, counts = run.group, run.counts
    results = [run.results[r] for r in sorted(run.results)]
    wall = round(run.busy_s / max(len(run.checked), 1), 3)
    for case in group.cases:
        if case.case_id not in run.checked:
            continue
        m = run.checked[case.case_id]
        samples, errors = per_process(results, case.case_id)
        if not any(samples):
            writer.add_case(case.case_id, [_status_row(case, "error", "; ".join(
                sorted(set(errors))) or "not timed")])
            counts["error"] += 1
            continue
        m.values.update(time_values(case, samples, m.values.get("flops")))
        records = sample_records(samples)
        if case.kind == "block":
            alone, _ = per_process(results, ALONE + case.attention_case().case_id)
            if any(alone):
                m.values["attention_share"] = attention_share(samples, alone)
                records.update(sample_records(alone, "attention_time_s"))
        m.columns["case_wall_s"] = wall
        if errors:
            m.columns["timing_errors"] = "; ".join(sorted(set(errors)))
        writer.add_case(case.case_id, measurement_rows(case, m, peaks), records)
        counts["ok"] += 1
    control = group.control
    if control is not None and control.case_id in run.checked:
        twin, _ = per_process(results, TWIN + control.case_id)
        original, _ = per_process(results, control.case_id)
        writer.add_case(f"control:{control.case_id}", [control_row(group, twin, original)],
                        sample_records(twin, "aa_twin_time_s"))
    return counts


def noise_floor_row(out: Path, preset: str) -> dict[str, Any]:
    """The run's noise floor from every A/A control row recorded in ``out``."""
    frame = load_results(out)
    rows = frame[frame.metric == "aa_ratio"].to_dict("records") if "metric" in frame else []
    return noise_row(rows, preset)


def run_throughput(config: RunConfig) -> dict[str, Any]:
    """Run (or resume) the benchmark into ``config.out``; returns a summary for the CLI."""
    preset, out = config.preset, config.out
    cases = plan(config)
    if any(c.device.startswith("cuda") for c in cases):
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device on this machine")
    threads = config.threads or preset.threads
    device = config.selection.device or preset.device
    cpus = pinned_cpus(threads) if preset.timing.pin and device == "cpu" else None
    limit = config.time_limit_s or preset.time_limit_s
    _prepare_out(config)
    triaged = [triage(c, preset) for c in cases]
    timer = ("CUDA events, L2 flushed before each call" if device == "cuda" else
             cpu_clock(threads)[1])
    writer = ResultsWriter(out, preset.suite, resume=config.resume, argv=config.argv,
                           seeds={"inputs": config.seed, "sampled_rows": config.seed},
                           extra={"variants": variant_catalog(), "preset": preset.name,
                                  "preset_file": str(preset.path), "preset_data": preset.raw,
                                  "selection": asdict(config.selection), "threads": threads,
                                  "timer": timer, "time_limit_s": limit,
                                  "worker_malloc_env": MALLOC_ENV,
                                  "timing": asdict(preset.timing),
                                  "pinned_cpus": list(cpus) if cpus else None,
                                  "plugins": config.plugins,
                                  "flop_convention": FLOP_CONVENTION})
    measured = [c for c, why in triaged if why is None]
    peak_ids = _peak_cases(measured, threads)
    timed = [c for c in measured if c.measure == "full" and not writer.is_done(c.case_id)]
    groups = plan_groups(timed, preset.control)
    todo: list[Any] = [pid for pid in peak_ids if not writer.is_done(pid)]
    todo += [(c, why) for c, why in triaged if not writer.is_done(c.case_id)
             and (why is not None or c.measure != "full")]
    peaks = _recorded_peaks(out)  # on --resume, the peaks the first run measured
    workers = [Worker(config.plugins, threads, cpus) for _ in range(preset.timing.processes)]
    counts: Counter[str] = Counter()
    progress = _progress_bar(len(todo) + len(timed),
                             sys.stderr.isatty() if config.progress is None else config.progress)
    try:
        for item in todo:
            if isinstance(item, str):
                progress.set_postfix_str(item, refresh=False)
                status, peak = _run_peak(workers[0], writer, item, *peak_ids[item], threads,
                                         preset, limit)
                if peak is not None:
                    peaks[peak_ids[item]] = peak
                counts[status] += 1
            else:
                progress.set_postfix_str(item[0].case_id, refresh=False)
                counts[_run_case(workers[0], writer, *item, peaks, preset.timing, limit,
                                 config.seed)] += 1
            progress.update()
        running: dict[int, _GroupRun] = {}
        for g, r in stagger(len(groups), len(workers)):
            progress.set_postfix_str(f"{groups[g].key} [{r + 1}/{len(workers)}]", refresh=False)
            if r == 0:
                running[g] = _check_group(workers[0], writer, groups[g], preset.timing, limit,
                                          config.seed)
            _time_group(workers[r], running[g], r, preset.timing, limit, config.seed)
            if r == len(workers) - 1:
                counts += _record_group(writer, running.pop(g), peaks)
                progress.update(len(groups[g].cases))
    finally:
        progress.close()
        for worker in workers:
            worker.close()
    fits = memory_fits(out, preset.name)
    for case_id, rows in fits:
        if not writer.is_done(case_id):
            writer.add_case(case_id, rows)
    noise = noise_floor_row(out, preset.name)
    if not writer.is_done("noise_floor"):
        writer.add_case("noise_floor", [noise])
    summary = {"cases": len(triaged), "measured_now": len(todo) + len(groups), "ok": counts["ok"],
               "errors": counts["error"], "skipped": counts["skipped"],
               "worker_starts": sum(w.starts for w in workers), "processes": len(workers),
               "noise_floor": noise.get("value"), "aa_worst_dev": noise.get("aa_worst_dev")}
    writer.finish(summary=summary)
    return {**summary, "out": str(out), "fits": [r for _, rows in fits for r in rows],
            "noise": noise}
