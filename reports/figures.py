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
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

DPI = 100
WIDTH = 13.2  # inches: every figure is drawn at the page's column width (1320 px at DPI) ...
PANEL = (4.4, 3.3)  # ... so three panels of this size fill a row, fewer panels grow wider
MAX_PANEL_HEIGHT = 4.4
# Text sizes in points = pixels / 1.39 at DPI 100; the page shows figures at ~0.99x on a
# 1366-pixel window, so the smallest text (SMALLEST_TEXT, 9 pt) is ~12 px as displayed.
STYLE = {
    "font.size": 10.5, "axes.titlesize": 11, "axes.labelsize": 10.5, "legend.fontsize": 9.5,
    "xtick.labelsize": 9.5, "ytick.labelsize": 9.5, "legend.title_fontsize": 9.5,
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "figure.dpi": DPI, "savefig.dpi": DPI, "path.simplify": False, "svg.hashsalt": "attnbench",
}
SMALLEST_TEXT = 9  # points; annotations use this, a test checks nothing is drawn smaller
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


def grid(n_panels: int, ncols: int = 3, size: tuple[float, float] = PANEL, *,
         sharey: bool = False) -> tuple[Figure, list[Axes]]:
    """A column-wide figure with ``n_panels`` axes in rows of ``ncols``; panels share their y
    axis when ``sharey`` (panels meant to be compared). Fewer panels than columns get wider,
    not smaller text: the figure is always ``WIDTH`` inches."""
    n_panels = max(1, min(n_panels, MAX_PANELS))
    ncols = 2 if n_panels == 4 and ncols == 3 else min(ncols, n_panels)
    nrows = math.ceil(n_panels / ncols)
    height = min(size[1] * (WIDTH / ncols) / size[0], MAX_PANEL_HEIGHT)
    fig = Figure(figsize=(WIDTH, height * nrows + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes: list[Axes] = []
    for i in range(n_panels):
        share = axes[0] if sharey and axes else None
        axes.append(fig.add_subplot(nrows, ncols, i + 1, sharey=share))
    return fig, axes


def to_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def legend(ax: Axes, *, inside: bool = False, **kwargs: Any) -> None:
    """A legend only where there is something to name, outside the data (right of the
    panel) unless ``inside``."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if not inside:
        kwargs = {"loc": "upper left", "bbox_to_anchor": (1.0, 1.0), **kwargs}
    ax.legend(frameon=False, **kwargs)


def plain_number(x: float, pos: int | None = None) -> str:
    """Tick labels as plain numbers: 0.5, 2, 1024, 0.0013."""
    return f"{x:g}"


class ReadableLogLocator(LogLocator):
    """Base-10 ticks at 1, 2 and 5 per decade over a short range (two decades or less), one
    per decade over a long one, so a narrow axis gets enough labels and a wide one no pile."""

    def tick_values(self, vmin: float, vmax: float) -> Any:
        low, high = sorted((max(vmin, 1e-300), max(vmax, 1e-300)))
        self.set_params(subs=(1.0, 2.0, 5.0) if math.log10(high / low) <= 2.5 else (1.0,))
        return super().tick_values(vmin, vmax)


def log_axis(ax: Axes, which: str, base: float = 10) -> None:
    """A log axis with enough labelled ticks to read a value: powers of two for base 2, and
    1-2-5 steps per decade for base 10; minor ticks unlabelled, so labels never collide."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=base)
    axis.set_major_locator(LogLocator(base=base, subs=(1.0,), numticks=9) if base == 2
                           else ReadableLogLocator(base=base, numticks=9))
    axis.set_major_formatter(FuncFormatter(plain_number))
    axis.set_minor_locator(LogLocator(base=base, subs="auto", numticks=9) if base != 2
                           else NullLocator())
    axis.set_minor_formatter(NullFormatter())


def shared_legend(fig: Figure, axes: list[Axes]) -> None:
    """One legend under the figure for series that mean the same in every panel (a variant's
    colour), instead of a legend covering the data in each panel."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center",
                   ncols=min(len(entries), 6), frameon=False)


def label_axes(ax: Axes, title: str, xlabel: str, ylabel: str, *, logx: bool = False,
               logy: bool = False, base: int = 10) -> None:
    """Title and axis labels; a log axis says so in its label ("N (log scale)")."""
    ax.set_title(plain(title))
    ax.set_xlabel(xlabel + (" (log scale)" if logx and xlabel else ""))
    ax.set_ylabel(ylabel + (" (log scale)" if logy and ylabel else ""))
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
            fontsize=10, color="#555555", wrap=True)
