"""Section 6: roofline. Achieved FLOP/s against arithmetic intensity, under measured ceilings.

Intensity = useful FLOPs / minimum bytes of a fused kernel: forward reads Q, K, V once and
writes O plus a 4-byte log-sum-exp per query row; backward reads Q, K, V, O, dO and the
log-sum-exp and writes dQ, dK, dV. It is a property of the problem, not of the kernel, so all
variants of one problem sit on one vertical line and their heights compare directly. (Naive
attention moves more bytes than this; its point shows how far it falls below the ceiling.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from attnbench.reports import figures
from attnbench.reports.document import Figure, Note, Section, fmt, not_measured, table
from attnbench.reports.load import Bundle, ensure
from attnbench.reports.sections import register_section
from attnbench.reports.sections.common import attention_cases, flop_convention, groups, run_column

ELEMENT_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}
LSE_BYTES = 4
MODE_MARKERS = {"fwd": "o", "bwd": "s", "fwd+bwd": "^"}
BANDWIDTH = ("peak_bandwidth_gbps", "bandwidth_gbps", "peak_gbps")  # GB/s, when measured


def minimum_bytes(row: pd.Series) -> float:
    """Bytes a fused kernel must move at least for this case (see the module docstring)."""
    element = ELEMENT_BYTES.get(str(row["dtype"]), np.nan)
    B, Hq, N, D = row["B"], row["Hq"], row["N"], row["D"]
    Hkv = row["Hkv"] if row["Hkv"] == row["Hkv"] else Hq
    S = row["S"] if row["S"] == row["S"] else N
    Dv = row["Dv"] if row["Dv"] == row["Dv"] else D
    q, k, v, o = B * Hq * N * D, B * Hkv * S * D, B * Hkv * S * Dv, B * Hq * N * Dv
    lse = B * Hq * N * LSE_BYTES
    forward = (q + k + v + o) * element + lse
    backward = (q + k + v + o + o + q + k + v) * element + lse  # + dO in, dQ dK dV out
    return {"fwd": forward, "bwd": backward, "fwd+bwd": forward + backward}.get(
        str(row["mode"]), np.nan)


def ceilings(bundle: Bundle) -> pd.DataFrame:
    """Measured peaks per (run, device, dtype): matmul TFLOP/s and, if measured, GB/s."""
    frame = ensure(bundle.rows("throughput"), "device", "dtype")
    frame = frame[frame["metric"].isin(("peak_tflops", *BANDWIDTH))] if not frame.empty \
        else frame
    if frame.empty:
        return pd.DataFrame(columns=["run", "device", "dtype", "peak_tflops", "bandwidth_gbps"])
    frame = frame.assign(metric=frame["metric"].where(frame["metric"] == "peak_tflops",
                                                      "bandwidth_gbps"))
    out = frame.pivot_table(index=["run", "device", "dtype"], columns="metric", values="value",
                            aggfunc="max").reset_index()
    return ensure(out, "peak_tflops", "bandwidth_gbps")


def ceiling_for(peaks: pd.DataFrame, run: str, device: str, dtype: str, column: str) -> float:
    """A dtype-specific ceiling, else the run's device-wide one (a bandwidth has no dtype)."""
    mine = peaks[(peaks["run"] == run) & (peaks["device"] == device)]
    exact = mine[mine["dtype"] == dtype][column].dropna()
    anywhere = mine[column].dropna()
    return float(exact.max()) if len(exact) else (float(anywhere.max()) if len(anywhere)
                                                  else np.nan)


@register_section(order=60)
def build(bundle: Bundle) -> Section:
    section = Section("roofline", "Roofline", (
        "Each point is one measured case: height = achieved TFLOP/s, position = arithmetic "
        "intensity (FLOPs per byte a fused kernel must move). The solid line is the measured "
        "matmul peak of that device and dtype; a point near it is compute-bound and fast."))
    cases = attention_cases(bundle)
    cases = cases[cases["tflops"].notna() & cases["flops"].notna()] if not cases.empty \
        else cases
    if cases.empty:
        section.items.append(not_measured("roofline", "no throughput suite results"))
        return section
    cases = cases.assign(intensity=cases["flops"] / cases.apply(minimum_bytes, axis=1))
    peaks = ceilings(bundle)
    colors = bundle.colors()
    found = groups(cases, ["run", "device", "dtype"])
    fig, axes = figures.grid(len(found))
    for ax, ((run, device, dtype), g) in zip(axes, found, strict=False):
        for (variant, mode), points in groups(g, ["variant", "mode"]):
            ax.scatter(points["intensity"], points["tflops"], s=18, color=colors[variant],
                       marker=MODE_MARKERS.get(mode, "o"), alpha=0.85)
        # Legend: colour = variant, marker = mode (proxies, not one entry per combination).
        for variant in sorted(g["variant"].unique()):
            ax.scatter([], [], s=18, color=colors[variant], marker="o",
                       label=figures.plain(variant))
        for mode in [m for m in MODE_MARKERS if (g["mode"] == m).any()]:
            ax.scatter([], [], s=18, color="#777777", marker=MODE_MARKERS[mode], label=mode)
        peak = ceiling_for(peaks, run, device, dtype, "peak_tflops")
        bandwidth = ceiling_for(peaks, run, device, dtype, "bandwidth_gbps")
        x = np.geomspace(g["intensity"].min() / 3, g["intensity"].max() * 3, 50)
        if peak == peak:
            ax.axhline(peak, color="#333333", linewidth=1.2)
            ax.annotate(f"matmul peak {fmt(peak)} TFLOP/s", (0.02, peak),
                        xycoords=("axes fraction", "data"), va="bottom",
                        fontsize=figures.SMALLEST_TEXT)
        if bandwidth == bandwidth:
            roof = bandwidth * 1e9 * x / 1e12
            ax.plot(x, np.minimum(roof, peak) if peak == peak else roof, color="#333333",
                    linestyle="--", linewidth=1, label=f"bandwidth {fmt(bandwidth)} GB/s")
        ax.set_xlim(x[0], x[-1])  # at least a decade, so a narrow spread stays readable
        title = f"{dtype} on {device}" + (f"\n[{run}]" if bundle.several_runs else "")
        figures.label_axes(ax, title, "arithmetic intensity (FLOP / byte, fused minimum)",
                           "achieved TFLOP/s", logx=True, logy=True)
        figures.legend(ax, loc="center left", bbox_to_anchor=(1.0, 0.5))
    section.items.append(Figure("roofline", figures.to_png(fig),
                                "Roofline: achieved TFLOP/s vs arithmetic intensity, with the "
                                "measured matmul peak (markers: o fwd, s bwd, ^ fwd+bwd)"))
    rows = []
    for (run, device, dtype), _ in found:
        peak = ceiling_for(peaks, run, device, dtype, "peak_tflops")
        bandwidth = ceiling_for(peaks, run, device, dtype, "bandwidth_gbps")
        rows.append([*([run] if bundle.several_runs else []), device, dtype,
                     fmt(peak) if peak == peak else "not measured",
                     fmt(bandwidth) if bandwidth == bandwidth else "not measured"])
    section.items.append(table([*run_column(bundle), "device", "dtype", "matmul peak (TFLOP/s)",
                                "memory bandwidth (GB/s)"], rows, "Ceilings measured in the run"))
    if peaks["bandwidth_gbps"].isna().all():
        section.items.append(Note("Memory bandwidth ceiling: not measured in these runs, so no "
                                  "sloped roof is drawn."))
    section.items.append(Note(flop_convention(bundle)))
    return section
