"""Figures: matplotlib's Agg canvas with fixed style and metadata, so bytes repeat exactly.

No pyplot: figures are plain ``matplotlib.figure.Figure`` objects drawn on an Agg canvas, which
touches no global backend state and needs no display. ``style()`` pins every rcParam to
matplotlib's defaults plus ours, so a user's matplotlibrc cannot change the report, and PNGs
are saved without the "Software" tag (the only varying metadata matplotlib writes).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

DPI = 100
PANEL = (4.4, 3.3)  # inches per panel: three panels fill a 1366-pixel-wide window
STYLE = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 7.5,
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "figure.dpi": DPI, "savefig.dpi": DPI, "path.simplify": False, "svg.hashsalt": "attnbench",
}
# Colour-blind-safe (Okabe-Ito without its pale yellow, then tab10), assigned to sorted names.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
          "#8c564b", "#7f7f7f", "#bcbd22", "#17becf", "#9467bd")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
MAX_PANELS = 12  # more than this and a figure stops being readable


@contextmanager
def style() -> Iterator[None]:
    """Matplotlib defaults plus the report style, restored afterwards."""
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update(STYLE)
        yield


def plain(text: Any) -> str:
    """Text for a label: a ``$`` in a variant name must not switch on matplotlib's mathtext."""
    return str(text).replace("$", r"\$")


def grid(n_panels: int, ncols: int = 3, size: tuple[float, float] = PANEL) -> tuple[Figure,
                                                                                   list[Axes]]:
    """A figure with ``n_panels`` axes in rows of ``ncols``; unused cells are hidden."""
    n_panels = max(1, min(n_panels, MAX_PANELS))
    ncols = 2 if n_panels == 4 and ncols == 3 else min(ncols, n_panels)
    if n_panels == 1:  # a lone panel gets room for its points and legend
        size = (size[0] * 1.6, size[1] * 1.4)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n_panels)]
    return fig, axes


def to_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def legend(ax: Axes, **kwargs: Any) -> None:
    """A legend only where there is something to name, kept small."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, frameon=False, **kwargs)


class PlainLog(LogFormatter):
    """Log-axis labels as plain numbers (0.5, 2, 1024) rather than 5×10⁻¹ or 2¹⁰; which ticks
    get a label is still matplotlib's choice."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def log_axis(ax: Axes, which: str, base: float = 10) -> None:
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=base)
    axis.set_major_formatter(PlainLog(base=base, labelOnlyBase=False))
    axis.set_minor_formatter(PlainLog(base=base, labelOnlyBase=False, minor_thresholds=(2, 0.4)))


def shared_legend(fig: Figure, axes: list[Axes]) -> None:
    """One legend under the figure for series that mean the same in every panel (a variant's
    colour), instead of a legend covering the data in each panel."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center",
                   ncols=min(len(entries), 6), frameon=False, fontsize=8)


def label_axes(ax: Axes, title: str, xlabel: str, ylabel: str, *, logx: bool = False,
               logy: bool = False, base: int = 10) -> None:
    ax.set_title(plain(title))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        log_axis(ax, "x", base)
    if logy:
        log_axis(ax, "y")


def line_with_band(ax: Axes, x: Sequence[float], y: Sequence[float], lo: Sequence[float],
                   hi: Sequence[float], *, label: str, color: str, marker: str = "o",
                   linestyle: str = "-") -> None:
    """Median line with a shaded interquartile band."""
    ax.plot(x, y, marker=marker, markersize=3.5, color=color, label=plain(label),
            linestyle=linestyle, linewidth=1.4)
    ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)


def empty_panel(ax: Axes, text: str) -> None:
    """A panel with a sentence instead of an empty plot."""
    ax.axis("off")
    ax.text(0.5, 0.5, plain(text), ha="center", va="center", transform=ax.transAxes,
            fontsize=9, color="#555555", wrap=True)
