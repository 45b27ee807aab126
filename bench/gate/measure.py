"""Measuring two trees in one job: a worker per side (``attnbench.gate.sides``), requests
interleaved A B B A.

``compare_sides(base, head, preset, settings)`` runs every case of a preset on both sides and
returns the findings: correctness and memory (hard), time (statistical, with a confirmation
round for anything that looks slower), and the structural checks.
"""

from __future__ import annotations

import contextlib
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from attnbench.case_ids import CaseShape, case_id, verify_case_id
from attnbench.errors import UsageError
from attnbench.gate.sides import SideSpec, SideWorker, WorkerError
from attnbench.gate.stats import Comparison, compare
from attnbench.gate.verdicts import (
    MEMORY_ABS,
    MEMORY_REL,
    GateCheck,
    GateFinding,
    TimePolicy,
    confirmed_verdict,
    correctness_finding,
    memory_finding,
    needs_confirmation,
    structural_finding,
    time_finding,
    time_verdict,
)

# ---- what is measured ------------------------------------------------------------------------

@dataclass(frozen=True)
class Shape:
    """An attention problem in the project's glossary (S = N, Dv = D here)."""

    B: int = 1
    Hq: int = 4
    Hkv: int = 4
    N: int = 256
    D: int = 64
    dtype: str = "float32"
    causal: bool = False
    device: str = "cpu"

    def label(self) -> str:
        """The shape part of the shared case ids (``attnbench.case_ids``)."""
        return CaseShape(self.B, self.Hq, self.Hkv, self.N, self.N, self.D, self.D, self.dtype,
                         self.device, self.causal).label()

    def at(self, **changes: Any) -> Shape:
        return Shape(**{**self.__dict__, **changes})


@dataclass(frozen=True)
class GatePreset:
    """A case grid and a measurement budget."""

    name: str
    shapes: tuple[Shape, ...]
    modes: tuple[str, ...] = ("fwd", "fwd+bwd")
    rounds: int = 15  # samples per side in the first measurement
    confirm_rounds: int = 31  # samples per side when a case is re-measured
    sample_target_s: float = 0.02  # CPU seconds per sample (inner calls are calibrated to it)
    scaling_n: tuple[int, int] = (256, 512)  # memory-exponent check between these lengths
    large_n: int = 1024  # "SDPA beats naive" check at this length


PRESETS = {
    "tiny": GatePreset("tiny", (Shape(Hq=2, Hkv=2, N=64, D=32),), modes=("fwd",), rounds=9,
                   confirm_rounds=15, sample_target_s=0.005, scaling_n=(64, 128), large_n=512),
    "small": GatePreset("small", (Shape(), Shape(causal=True))),
}


@dataclass
class GateSettings:
    policy: TimePolicy = field(default_factory=TimePolicy)
    memory_rel: float = MEMORY_REL
    memory_abs: float = MEMORY_ABS
    structural: str = "warn"  # "warn" | "error" | "off"
    kinds: tuple[str, ...] = ("correctness", "memory", "time")
    variants: tuple[str, ...] = ()  # empty: every attention variant present on both sides
    device: str = "cpu"


@dataclass
class GateOutcome:
    findings: list[GateFinding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)


def case_key(variant: str, mode: str, shape: Shape) -> str:
    """The benchmark's case id (``throughput.cases.BenchCase.case_id``) of this attention
    case: one grammar for the gate's findings and the benchmark's rows."""
    return case_id("attention", variant, shape.label(), mode)


def interleaved(first: SideWorker, second: SideWorker, key: str, inner: int, rounds: int,
                first_key: str | None = None) -> tuple[list[float], list[float]]:
    """``rounds`` samples per side in A B B A order: any drift or burst of contention lands on
    both sides alike. ``first_key`` times a different case on the first worker (used to race
    two variants inside one side)."""
    a, b = [], []
    for r in range(rounds):
        order = ((first, a, first_key or key), (second, b, key))
        for worker, out, k in (order if r % 2 == 0 else order[::-1]):
            out.append(worker.request("time", key=k, inner=inner)["seconds"])
    return a, b


# ---- the comparison --------------------------------------------------------------------------

def compare_sides(base: SideSpec, head: SideSpec, preset: GatePreset, settings: GateSettings,
                  log: Callable[[str], None] = lambda s: None) -> GateOutcome:
    """Run the preset on both sides in one job and judge every case.

    Timing happens twice for anything that may have slowed down: a screen with ``rounds``
    samples, then a confirmation with ``confirm_rounds`` samples in a *fresh pair of worker
    processes*, which alone decides. Two processes running the same code can differ by several
    per cent for their whole life (memory placement on a shared VM), an effect no number of
    samples from the same pair averages out; a regression must reproduce in new processes.
    """
    outcome = GateOutcome()
    shapes = tuple(s.at(device=settings.device) for s in preset.shapes)
    flagged: list[tuple[str, str, dict, str, Comparison]] = []
    with contextlib.ExitStack() as stack:
        wa, wb = (stack.enter_context(SideWorker(side)) for side in (base, head))
        wa.wait_ready()  # no baseline: an environment error (exit 2)
        try:
            wb.wait_ready()
        except WorkerError as exc:  # the change broke importing the variants: a regression
            outcome.findings.append(GateFinding("import", "*", "correctness", "regressed",
                                                detail=str(exc), fails_gate=True))
            return outcome
        names, new, timeable = _common_variants(wa, wb, settings, outcome.notes)
        if "correctness" in settings.kinds:
            _verification(wa, wb, names, new, shapes[0].dtype, settings.device, outcome, log)
        skipped: dict[tuple[str, str], list[str]] = defaultdict(list)
        peaks: dict[tuple[str, str], int] = {}
        to_time: list[tuple[str, str, dict, str]] = []
        for name in names:
            for shape in shapes:
                for mode in preset.modes:
                    key = case_key(name, mode, shape)
                    log(f"gate: {key}")
                    args = {"key": key, "variant": name, "case": shape.__dict__, "mode": mode}
                    head_ans = wb.request("prepare", **args)
                    if not head_ans["ok"] and "raised" not in head_ans:
                        skipped[(name, head_ans["reason"])].append(f"{mode} {shape.label()}")
                        continue
                    base_ans = wa.request("prepare", **args)
                    if "correctness" in settings.kinds or "raised" in head_ans:
                        outcome.findings.append(correctness_finding(
                            key, name, _side_check(wa, base_ans, key),
                            _side_check(wb, head_ans, key)))
                    if not base_ans["ok"] and "raised" not in base_ans:
                        outcome.notes.append(f"{key}: no baseline ({base_ans['reason']})")
                    if not (base_ans["ok"] and head_ans["ok"] and timeable[name]):
                        continue
                    if "memory" in settings.kinds:
                        outcome.findings.append(_memory(wa, wb, key, name, settings, peaks))
                    if "time" in settings.kinds:
                        to_time.append((key, name, shape.__dict__, mode))
        for (name, reason), cases in sorted(skipped.items()):
            outcome.notes.append(f"{name}: skipped {len(cases)} case(s): {reason}")
        for key, name, case, mode in to_time:
            log(f"gate: timing {key}")
            inner = wa.request("calibrate", key=key, target_s=preset.sample_target_s)["inner"]
            a, b = interleaved(wa, wb, key, inner, preset.rounds)
            outcome.samples[key] = {"inner": inner, "base": a, "head": b}
            screen = compare(a, b, confidence=settings.policy.confidence)
            finding = time_finding(key, name, screen, settings.policy)
            if needs_confirmation(finding.verdict, screen):
                flagged.append((key, name, case, mode, screen))
            else:
                outcome.findings.append(finding)
        if settings.structural != "off":
            outcome.findings += _structural(wa, wb, names, timeable, preset, shapes[0],
                                            settings, peaks, log)
    if flagged:
        outcome.findings += _confirm(base, head, flagged, preset, settings, outcome, log)
    return outcome


def _confirm(base: SideSpec, head: SideSpec, flagged: list, preset: GatePreset,
             settings: GateSettings, outcome: GateOutcome, log: Callable[[str], None]
             ) -> list[GateFinding]:
    """Re-measure the flagged cases in fresh workers, with fresh samples (pooling them with
    the screen's would make the decision depend on when we chose to look); the verdict then
    needs both pairs of processes to agree (``confirmed_verdict``)."""
    findings = []
    with SideWorker(base) as wa, SideWorker(head) as wb:
        for worker in (wa, wb):
            worker.wait_ready()
        for key, name, case, mode, screen in flagged:
            log(f"gate: confirming {key} in fresh workers")
            for worker in (wa, wb):
                worker.request("prepare", key=key, variant=name, case=case, mode=mode)
            inner = outcome.samples[key]["inner"]
            a, b = interleaved(wa, wb, key, inner, preset.confirm_rounds)
            outcome.samples[key].update(confirm_base=a, confirm_head=b)
            confirmed = compare(a, b, confidence=settings.policy.confidence, seed=1)
            verdict = confirmed_verdict(screen, confirmed, settings.policy)
            findings.append(time_finding(
                key, name, confirmed, settings.policy, verdict=verdict,
                detail=f"re-measured in fresh processes (first look: {screen.ratio:.3f}x, "
                       f"{time_verdict(screen, settings.policy)})"))
    return findings


def _common_variants(wa: SideWorker, wb: SideWorker, settings: GateSettings, notes: list[str]
                     ) -> tuple[list[str], list[str], dict[str, bool]]:
    """Variants on both sides, variants new on head, and which can be timed."""
    va, vb = wa.request("hello")["variants"], wb.request("hello")["variants"]
    wanted = set(settings.variants) or set(va) | set(vb)
    unknown = set(settings.variants) - set(va) - set(vb)
    if unknown:
        raise UsageError(f"--variants: unknown {sorted(unknown)}; known: {sorted(set(vb))}")
    new = sorted((wanted & set(vb)) - set(va))
    for name in new:
        notes.append(f"{name}: new on head: verified, nothing to compare its speed with")
    for name in sorted(wanted - set(vb)):
        notes.append(f"{name}: removed on head")
    names = sorted(wanted & set(va) & set(vb))
    timeable = {n: vb[n]["timeable"] and va[n]["timeable"] for n in names}
    for n in names:
        if not timeable[n]:
            notes.append(f"{n}: correctness only; {vb[n]['why'] or va[n]['why']}")
    return names, new, timeable


def _suite(worker: SideWorker, name: str, dtype: str, device: str
           ) -> dict[tuple, GateCheck] | str:
    """One side's verification-suite outcomes keyed by (check, case, direction), or why the
    suite could not run there."""
    try:
        got = worker.request("verify_suite", variant=name, dtype=dtype, device=device)
    except WorkerError as exc:
        return str(exc)
    if "unavailable" in got:
        return got["unavailable"]
    return {(c["check"], c["case"], c["direction"]): GateCheck(
        c["passed"], c["value"], c["bound"], c["message"]) for c in got["checks"]}


def _verification(wa: SideWorker, wb: SideWorker, names: list[str], new: list[str], dtype: str,
                  device: str, outcome: GateOutcome, log: Callable[[str], None]) -> None:
    """The verification suite (``attnbench.verify.runner``) on every variant, both sides: a check
    that fails on head but not on base fails the gate, and a variant new on head must pass all
    of it. Where the suite cannot run on a side, it is left out with a note, never counted as
    failing (an old base may predate it)."""
    for name in names + new:
        log(f"gate: verification suite on {name}")
        head = _suite(wb, name, dtype, device)
        base = _suite(wa, name, dtype, device) if name in names else {}
        for side, got in (("head", head), ("base", base)):
            if isinstance(got, str):
                outcome.notes.append(f"{name}: verification suite not run on {side}: {got}")
        if isinstance(head, str) or isinstance(base, str):
            continue
        for key, result in sorted(head.items()):
            outcome.findings.append(correctness_finding(
                verify_case_id(key[0], name, *key[1:]), name, base.get(key), result))


def _side_check(worker: SideWorker, prepared: dict[str, Any], key: str) -> GateCheck | None:
    """One side's correctness: the verification of a prepared case, a failure when the variant
    raised on its first call, None when the side cannot run the case at all."""
    if "raised" in prepared:
        return GateCheck(False, reason=f"raised {prepared['raised']}")
    if not prepared["ok"]:
        return None
    try:
        got = worker.request("verify", key=key)
    except WorkerError as exc:  # the variant raised inside the check: a failure
        return GateCheck(False, reason=str(exc))
    return GateCheck(got["passed"], got["error_ratio"], got["bound"], got["reason"])


def _memory(wa: SideWorker, wb: SideWorker, key: str, name: str, settings: GateSettings,
            peaks: dict[tuple[str, str], int]) -> GateFinding:
    for side, worker in (("base", wa), ("head", wb)):
        peaks[(side, key)] = worker.request("memory", key=key)["peak_bytes"]
    return memory_finding(key, name, peaks[("base", key)], peaks[("head", key)],
                          rel=settings.memory_rel, abs_bytes=settings.memory_abs)


def _structural(wa: SideWorker, wb: SideWorker, names: list[str], timeable: dict[str, bool],
                preset: GatePreset, shape: Shape, settings: GateSettings, peaks: dict,
                log: Callable[[str], None]) -> list[GateFinding]:
    """Properties that hold on any machine: each variant's memory scaling exponent did not grow,
    and SDPA is faster than naive at large N."""
    as_error, out = settings.structural == "error", []
    n1, n2 = preset.scaling_n
    for name in names:
        if not timeable[name] or "memory" not in settings.kinds:
            continue
        for mode in preset.modes:
            exps = {}
            for side, worker in (("base", wa), ("head", wb)):
                sizes = []
                for n in (n1, n2):
                    key = case_key(name, mode, shape.at(N=n))
                    if (side, key) not in peaks:
                        ok = worker.request("prepare", key=key, variant=name,
                                            case=shape.at(N=n).__dict__, mode=mode)["ok"]
                        peaks[(side, key)] = (worker.request("memory", key=key)["peak_bytes"]
                                              if ok else 0)
                    sizes.append(peaks[(side, key)])
                exps[side] = (math.log(sizes[1] / sizes[0]) / math.log(n2 / n1)
                              if min(sizes) > 0 else None)
            if exps["base"] is None or exps["head"] is None:
                continue
            grew = exps["head"] - exps["base"]
            out.append(structural_finding(
                f"memexp:{name}:{mode}:{shape.at(N=n1).label()}..N{n2}", name, grew <= 0.25,
                f"peak memory grows as N^{exps['head']:.2f} (base N^{exps['base']:.2f}) "
                f"between N={n1} and N={n2}", ratio=exps["head"], as_error=as_error))
    if {"naive", "sdpa"} <= set(names) and "time" in settings.kinds:
        big = shape.at(N=preset.large_n, causal=False)
        keys = {n: case_key(n, "fwd", big) for n in ("naive", "sdpa")}
        log(f"gate: structural sdpa vs naive at N={preset.large_n}")
        for n, key in keys.items():
            wb.request("prepare", key=key, variant=n, case=big.__dict__, mode="fwd")
        inner = wb.request("calibrate", key=keys["sdpa"], target_s=preset.sample_target_s)
        naive, sdpa = interleaved(wb, wb, keys["sdpa"], inner["inner"], preset.rounds,
                                  first_key=keys["naive"])
        c = compare(naive, sdpa)
        out.append(structural_finding(
            f"sdpa<naive:{big.label()}", "sdpa", c.ci_high < 1,
            f"sdpa/naive time {c.ratio:.2f} (95% CI {c.ci_low:.2f}-{c.ci_high:.2f}) on head",
            ratio=c.ratio, ci_low=c.ci_low, ci_high=c.ci_high, as_error=as_error))
    return out
