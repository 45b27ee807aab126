"""Named benchmark presets, kept as data: ``bench/throughput/presets/<name>.toml``.

A preset file has top-level settings (device, threads, time_limit_s, optional variants or
exclude (variants left out of "every registered one"),
control: the variant timed twice as the run's A/A control, default sdpa) and grids. Every
key of a grid takes a value or a list of values; a grid is the cartesian product:

    [[attention]]   timed cases: B | tokens (B = tokens // N), Hq | width (Hq = width // D),
                    Hkv (default Hq), N, S (default N), D, Dv (default D), dtype, causal, mode
    [[memory]]      the same keys; peak memory only (one call), for the memory-scaling fit,
                    so only N may vary within a (mode, dtype, causal) group
    [[block]]       block (default: every registered block), B, N, d_model, n_heads, dtype,
                    causal (default true), mode (fwd, fwd+bwd)
    [[limit]]       variant, N_max, reason: a cap; larger cases are recorded as skipped

An [[attention]] grid may name ``pattern`` (text for ``attnbench.variants.patterns.
parse_pattern``, e.g. "sliding_window:window=256"; causal then defaults to false: causality
is the ``causal`` pattern). A preset whose grids name patterns is a *patterns* preset: all of
its [[attention]] grids name one, it has no [[memory]] or [[block]] grid, and it writes the
``patterns`` suite (its own results directory and report section, never mixed with the
plain cases).
    [timing]        max_time, min_rounds, warmup (per worker process), processes (how many
                    worker processes time every case), pin (fix the workers to CPUs; see
                    timing.TimingSettings)

A path ending in ``.toml`` works as ``--preset`` too.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench.errors import UsageError
from attnbench.throughput.cases import BLOCK_MODES, MODES, BenchCase
from attnbench.throughput.timing import TimingSettings
from attnbench.variants.patterns import parse_pattern
from attnbench.variants.registry import dtype_name, list_variants, parse_dtype

PRESET_DIR = Path(__file__).resolve().parent / "presets"
ATTENTION_KEYS = {"B", "tokens", "Hq", "width", "Hkv", "N", "S", "D", "Dv", "dtype", "causal",
                  "mode", "pattern"}
MEMORY_KEYS = ATTENTION_KEYS - {"pattern"}  # the memory fit is for plain attention
BLOCK_KEYS = {"block", "B", "N", "d_model", "n_heads", "dtype", "causal", "mode"}
TOP_KEYS = {"description", "device", "threads", "time_limit_s", "variants", "exclude",
            "control", "timing", "attention", "memory", "block", "limit"}
DEFAULT_CONTROL = "sdpa"


@dataclass(frozen=True)
class Limit:
    variant: str
    N_max: int
    reason: str


@dataclass
class Preset:
    name: str
    path: Path
    description: str
    device: str
    threads: int
    time_limit_s: float
    timing: TimingSettings
    variants: tuple[str, ...] | None  # None: every registered attention variant
    exclude: tuple[str, ...] = ()  # left out of "every registered variant" (the preset says why)
    control: str = DEFAULT_CONTROL  # the A/A control's variant
    attention: list[dict[str, Any]] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    block: list[dict[str, Any]] = field(default_factory=list)
    limits: list[Limit] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def suite(self) -> str:
        """"patterns" when the grids name attention patterns, else "throughput"."""
        return "patterns" if any("pattern" in g for g in self.attention) else "throughput"

    def limit_reason(self, case: BenchCase) -> str | None:
        for lim in self.limits:
            if lim.variant == case.attention and case.N > lim.N_max:
                return f"preset {self.name} caps {lim.variant} at N <= {lim.N_max}: {lim.reason}"
        return None


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(name_or_path: str) -> Preset:
    """Read and validate a preset; errors name the file, the key and the expected value."""
    path = Path(name_or_path) if name_or_path.endswith(".toml") else (
        PRESET_DIR / f"{name_or_path}.toml")
    if not path.is_file():
        raise UsageError(f"--preset: unknown preset {name_or_path!r}; available: "
                         f"{', '.join(available_presets())} (or a path to a .toml file)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"preset {path}: not valid TOML ({exc})") from None
    where = f"preset {path.name}"
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise UsageError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(TOP_KEYS)}")
    for section, keys in (("attention", ATTENTION_KEYS), ("memory", MEMORY_KEYS),
                          ("block", BLOCK_KEYS)):
        for i, grid in enumerate(raw.get(section, [])):
            bad = set(grid) - keys
            if bad:
                raise UsageError(f"{where}: [[{section}]] #{i + 1} has unknown keys "
                                 f"{sorted(bad)}; known: {sorted(keys)}")
    _check_patterns_preset(raw, where)
    try:
        timing = TimingSettings(**raw.get("timing", {}))
    except TypeError as exc:
        raise UsageError(f"{where}: [timing]: {exc}") from None
    limits = [Limit(str(x["variant"]), int(x["N_max"]), str(x.get("reason", "")))
              for x in raw.get("limit", [])]
    variants = raw.get("variants")
    return Preset(name=path.stem, path=path, description=str(raw.get("description", "")),
                  device=str(raw.get("device", "cpu")), threads=int(raw.get("threads", 1)),
                  time_limit_s=float(raw.get("time_limit_s", 60)), timing=timing,
                  variants=tuple(variants) if variants is not None else None,
                  exclude=tuple(raw.get("exclude", ())),
                  control=str(raw.get("control", DEFAULT_CONTROL)),
                  attention=raw.get("attention", []), memory=raw.get("memory", []),
                  block=raw.get("block", []), limits=limits, raw=raw)


def _check_patterns_preset(raw: dict[str, Any], where: str) -> None:
    """A patterns preset names a pattern in every [[attention]] grid and has nothing else, so
    its results directory holds pattern cases only."""
    grids = raw.get("attention", [])
    named = [i + 1 for i, g in enumerate(grids) if "pattern" in g]
    if not named:
        return
    if len(named) != len(grids):
        missing = [i + 1 for i in range(len(grids)) if i + 1 not in named]
        raise UsageError(f"{where}: [[attention]] #{', #'.join(map(str, named))} name a pattern "
                         f"but #{', #'.join(map(str, missing))} do not; a patterns preset names "
                         "one in every grid (plain cases belong in another preset)")
    other = [s for s in ("memory", "block") if raw.get(s)]
    if other:
        raise UsageError(f"{where}: a patterns preset (pattern= in [[attention]]) has no "
                         f"[[{']], [['.join(other)}]] grid; got {other}")


def _grid(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """The cartesian product of a grid whose values are scalars or lists."""
    keys = list(grid)
    values = [v if isinstance(v, list) else [v] for v in grid.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def _mode(where: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UsageError(f"{where}: mode must be one of {list(allowed)}, got {value!r}")
    return value


def _attention_cases(preset: Preset, grid: dict[str, Any], measure: str, device: str,
                     names: list[str], where: str) -> list[BenchCase]:
    cases = []
    for p in _grid({"causal": False, **grid} if "pattern" in grid else grid):
        N, D = int(p["N"]), int(p["D"])
        pattern = parse_pattern(str(p["pattern"])).text if "pattern" in p else None
        if pattern and p["causal"]:
            raise UsageError(f"{where}: causal = true with pattern {pattern!r}; expected "
                             "causal = false (add the causal pattern: 'causal+...')")
        B = int(p["B"]) if "B" in p else int(p["tokens"]) // N
        Hq = int(p["Hq"]) if "Hq" in p else int(p["width"]) // D
        if B < 1 or Hq < 1:
            raise UsageError(f"{where}: B and Hq must come out >= 1 (B or tokens // N, Hq or "
                             f"width // D), got B={B}, Hq={Hq} at N={N}, D={D}")
        for name in names:
            cases.append(BenchCase(
                kind="attention", attention=name, B=B, Hq=Hq, Hkv=int(p.get("Hkv", Hq)), N=N,
                S=int(p.get("S", N)), D=D, Dv=int(p.get("Dv", D)),
                dtype=dtype_name(parse_dtype(str(p["dtype"]))), causal=bool(p["causal"]),
                mode=_mode(where, p["mode"], MODES), device=device, preset=preset.name,
                measure=measure, pattern=pattern))  # type: ignore[arg-type]
    return cases


def _block_cases(preset: Preset, grid: dict[str, Any], device: str, names: list[str],
                 where: str) -> list[BenchCase]:
    blocks = [v.name for v in list_variants("block")]
    grid = {"block": blocks, "causal": True, **grid}
    cases = []
    for p in _grid(grid):
        d_model, n_heads = int(p["d_model"]), int(p["n_heads"])
        if d_model % n_heads:
            raise UsageError(f"{where}: d_model ({d_model}) must be a multiple of n_heads "
                             f"({n_heads})")
        for name in names:
            N, D = int(p["N"]), d_model // n_heads
            cases.append(BenchCase(
                kind="block", attention=name, block=str(p["block"]), B=int(p["B"]), Hq=n_heads,
                Hkv=n_heads, N=N, S=N, D=D, Dv=D, d_model=d_model,
                dtype=dtype_name(parse_dtype(str(p["dtype"]))), causal=bool(p["causal"]),
                mode=_mode(where, p["mode"], BLOCK_MODES), device=device, preset=preset.name))  # type: ignore[arg-type]
    return cases


def expand(preset: Preset, device: str | None = None,
           variants: tuple[str, ...] | None = None) -> list[BenchCase]:
    """Every case of the preset, for the given attention variants (default: the preset's
    list, else every registered attention variant), on ``device`` (default: the preset's)."""
    device = device or preset.device
    registered = [v.name for v in list_variants("attention")]
    unknown = sorted(set(preset.exclude) - set(registered))
    if unknown:  # a typo would otherwise exclude nothing, silently
        raise UsageError(f"preset {preset.name}: exclude names unknown attention variants "
                         f"{unknown}; registered: {', '.join(registered)}")
    names = list(variants or preset.variants or [n for n in registered
                                                 if n not in preset.exclude])
    cases: list[BenchCase] = []
    try:
        for section, measure in (("attention", "full"), ("memory", "memory")):
            for i, grid in enumerate(getattr(preset, section)):
                where = f"preset {preset.name}: [[{section}]] #{i + 1}"
                cases += _attention_cases(preset, grid, measure, device, names, where)
        for i, grid in enumerate(preset.block):
            cases += _block_cases(preset, grid, device, names,
                                  f"preset {preset.name}: [[block]] #{i + 1}")
    except KeyError as exc:
        raise UsageError(f"preset {preset.name}: a grid is missing the key {exc}") from None
    _check_memory_groups([c for c in cases if c.measure == "memory"], preset.name)
    unique = {c.case_id: c for c in cases}  # grids may overlap; a case runs once
    return list(unique.values())


def _check_memory_groups(cases: list[BenchCase], name: str) -> None:
    """The memory fit's id names variant, mode, dtype and causal: nothing else may vary."""
    seen: dict[tuple, tuple] = {}
    for c in cases:
        key = (c.attention, c.mode, c.dtype, c.causal, c.device)
        shape = (c.B, c.Hq, c.Hkv, c.D, c.Dv, c.S == c.N)
        if seen.setdefault(key, shape) != shape:
            raise UsageError(f"preset {name}: [[memory]] grids vary more than N for {key}: "
                             f"{seen[key]} vs {shape} (B, Hq, Hkv, D, Dv, S == N)")
