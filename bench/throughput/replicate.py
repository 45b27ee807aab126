"""Replicated, interleaved timing of the variants of one shape.

The runner groups timed cases by shape: every attention variant on one attention problem, or
every (block, attention) pair on one block shape together with the attention call alone at
that shape (for ``attention_share``). Each group is timed in every one of R worker processes
(``TimingSettings.processes``); inside a process the arms are timed round by round in
A B C, C B A, ... order (``timing.time_interleaved``), and every other process starts from the
other end. Linear
drift and bursts of contention then land on every arm alike, and a process's own bias lands
on every variant of the group alike, so it cancels in their ratios (``attnbench.speed``).

The R replicates of a group are spread out in time (``stagger``): worker r times a group
``STAGGER_GROUPS`` groups after worker r - 1 did, not right after it. The shared 2-core
machines this was built on switch between a fast and a slow state for seconds to minutes at a
time (a fixed 512 x 512 matmul measured 3.6 ms and 4.5 ms, alternating every few seconds, with
nothing else running), and back-to-back replicates fell in the same state. Run to run, the
quick preset's per-case spread went from p90 42 % to 11 % with this alone (docs/methods.md,
"Timing", has the measurements).

An A/A control rides along in every attention group: the control variant (the preset's
``control``, default sdpa) is a second arm, its twin, built from the same inputs like any
other case. The twin's time over the original's is the run's noise (``aa_ratio`` rows and the
``noise_floor`` row).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from attnbench.speed import noise_floor, process_medians, ratio_interval, replicated_time
from attnbench.throughput.cases import BenchCase, make_call
from attnbench.throughput.timing import TimingSettings, time_callable, time_interleaved

STAGGER_GROUPS = 8  # groups between two replicates of a group (at most; see ``stagger``)
TWIN = "aa-twin:"  # arm key prefix of the A/A control's second arm
ALONE = "attention-alone:"  # arm key prefix of a block group's attention call alone


@dataclass(frozen=True)
class Group:
    """The arms timed together: (key, case) pairs; ``cases`` are the ones that get rows."""

    key: str
    cases: tuple[BenchCase, ...]
    arms: tuple[tuple[str, BenchCase], ...]
    control: BenchCase | None = None  # the attention case whose twin is an arm


def _shape_id(case: BenchCase) -> str:
    if case.kind == "block":
        return replace(case, attention="*", block="*").case_id
    return replace(case, attention="*").case_id


def plan_groups(cases: Sequence[BenchCase], control: str) -> list[Group]:
    """Timed cases grouped by shape, in first-seen order, with their A/A and alone arms."""
    by_shape: dict[str, list[BenchCase]] = {}
    for case in cases:
        by_shape.setdefault(_shape_id(case), []).append(case)
    groups = []
    for key, members in by_shape.items():
        arms = [(c.case_id, c) for c in members]
        twin = None
        if members[0].kind == "block":
            seen = {}
            for c in members:
                seen.setdefault(c.attention, c.attention_case())
            arms += [(ALONE + a.case_id, a) for a in seen.values()]
        else:
            twin = next((c for c in members if c.attention == control), None)
            if twin is not None:
                arms.append((TWIN + twin.case_id, twin))
        groups.append(Group(key, tuple(members), tuple(arms), twin))
    return groups


def stagger(groups: int, processes: int, lag: int = STAGGER_GROUPS) -> list[tuple[int, int]]:
    """The order of (group, replicate) timings: replicate r of group g comes ``lag`` groups
    after replicate r - 1 of it, so a group's replicates are minutes apart on a long run and
    never back to back; with fewer groups than ``lag * processes`` the lag shrinks to spread
    them over the whole run. A group's replicates stay in order (0 first: it also checks the
    cases), and every group is finished at most ``lag * (processes - 1)`` groups after it
    started, so at most that many groups are in flight (lost to an interruption, and timed
    again by ``--resume``)."""
    if groups < 0 or processes < 1 or lag < 1:
        raise ValueError(f"stagger: expected groups >= 0, processes >= 1, lag >= 1; got "
                         f"{groups}, {processes}, {lag}")
    lag = max(1, min(lag, math.ceil(groups / processes)))
    order = []
    for step in range(groups + lag * (processes - 1)):
        for r in range(processes):
            g = step - r * lag
            if 0 <= g < groups:
                order.append((g, r))
    return order


def time_arms(arms: Sequence[tuple[str, BenchCase]], settings: TimingSettings, seed: int,
              reverse: bool) -> dict[str, list[float] | str]:
    """Run in a worker process: samples per arm key, or the reason an arm failed.

    Every arm's callable is built and called once first. On CPU the arms are then timed
    round by round in alternating order (``timing.time_interleaved``; ``reverse`` starts
    from the other end); on CUDA each arm is timed in two passes, forward and backward
    through the arms, each with half of the arm's budget.
    """
    from attnbench.throughput.worker import describe

    calls: dict[str, Callable[[], Any]] = {}
    out: dict[str, list[float] | str] = {}
    keys = [k for k, _ in arms][::-1] if reverse else [k for k, _ in arms]
    cases = dict(arms)
    for key in keys:
        try:
            calls[key] = make_call(cases[key], seed)
            calls[key]()
        except Exception as exc:  # this arm's error; the other arms still run
            out[key] = describe(exc)
    if not calls:
        return out
    if all(cases[k].device == "cpu" for k in calls):
        got = time_interleaved(calls, warmup=settings.warmup, max_time=settings.max_time,
                               min_rounds=settings.min_rounds)
        out.update({k: describe(v) if isinstance(v, Exception) else v for k, v in got.items()})
        return out
    half = {"max_time": settings.max_time / 2, "min_rounds": math.ceil(settings.min_rounds / 2)}
    order = list(calls)
    for n, pass_order in enumerate((order, order[::-1])):
        for key in pass_order:
            if isinstance(out.get(key), str):
                continue
            try:
                got = time_callable(calls[key], device=cases[key].device,
                                    warmup=settings.warmup if n == 0 else 0, **half)
            except Exception as exc:
                out[key] = describe(exc)
                continue
            out.setdefault(key, []).extend(got)  # type: ignore[union-attr]
    return out


def per_process(results: Sequence[dict[str, list[float] | str] | str], key: str
                ) -> tuple[list[list[float]], list[str]]:
    """An arm's samples from each process (empty where it failed) and the failure reasons."""
    samples, errors = [], []
    for r in results:
        got = r if isinstance(r, str) else r.get(key, "not timed in this process")
        if isinstance(got, str):
            samples.append([])
            errors.append(got)
        else:
            samples.append(list(got))
    return samples, errors


def time_values(case: BenchCase, samples: list[list[float]], flops: float | None
                ) -> dict[str, float]:
    """The time metrics of one case (and tflops, tokens_per_s) from its per-process samples."""
    values = replicated_time(samples)
    if flops:
        values["tflops"] = flops / values["time_median_s"] / 1e12
    if case.kind == "block":
        values["tokens_per_s"] = case.B * case.N / values["time_median_s"]
    return values


def sample_records(samples: list[list[float]], prefix: str = "time_s") -> dict[str, list]:
    """samples.jsonl entries: each process's raw samples, as ``<prefix>:p<r>`` (a process
    that failed has none; ``attnbench.speed.per_process_medians`` reads them back)."""
    return {f"{prefix}:p{r}": s for r, s in enumerate(samples) if s}


def attention_share(block: list[list[float]], alone: list[list[float]]) -> float:
    """Median over processes of time(attention alone) / time(block), both from one process."""
    a = [process_medians([s])[0] if s else math.nan for s in alone]
    b = [process_medians([s])[0] if s else math.nan for s in block]
    return ratio_interval(a, b)[0]


def control_row(group: Group, twin: list[list[float]], original: list[list[float]]
                ) -> dict[str, Any]:
    """The A/A control's row: time(twin) / time(original), paired by process."""
    case = group.control
    assert case is not None
    t = [process_medians([s])[0] if s else math.nan for s in twin]
    o = [process_medians([s])[0] if s else math.nan for s in original]
    ratio, low, high = ratio_interval(t, o)
    row = {"variant": case.variant, **case.columns(), "kind": "control", "metric": "aa_ratio"}
    if ratio != ratio:
        return {**row, "status": "error", "reason": "no process timed both arms"}
    paired = sum(1 for a, b in zip(t, o, strict=True) if a == a and b == b)  # not NaN
    return {**row, "status": "ok", "value": ratio, "ci_low": low, "ci_high": high,
            "processes": paired}


def noise_row(control_rows: Sequence[dict[str, Any]], preset: str) -> dict[str, Any]:
    """The run's noise floor from its A/A control rows."""
    ratios = [r["value"] for r in control_rows if r.get("status") == "ok"]
    floor = noise_floor(ratios)
    row = {"variant": "aa_control", "kind": "control", "preset": preset,
           "metric": "noise_floor"}
    if not ratios:
        return {**row, "status": "skipped",
                "reason": "no A/A control was timed (the control variant ran in no group)"}
    return {**row, "status": "ok", "value": floor["noise_floor"],
            **{k: v for k, v in floor.items() if k != "noise_floor"}}
