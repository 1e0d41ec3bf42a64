"""What every figure of a report shares: the paper-column size, fonts and rc style, each method's colour, the
seed-count notes titles carry, and the mean ± std lines of the per-step curves with their legend."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, and no window pops up in a terminal session

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .paper import METHOD_ORDER  # noqa: E402
from .style import line_kwargs, style  # noqa: E402
from .tables import SAME_COMPUTATION  # noqa: E402

WIDTH, HEIGHT = 3.5, 2.5  # inches: one column of a two-column paper


# Fonts with CJK glyphs, used where installed for text DejaVu Sans lacks (a dataset named データ.npz).
FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Source Han Sans", "WenQuanYi Zen Hei",
                  "Droid Sans Fallback", "Hiragino Sans", "Microsoft YaHei", "MS Gothic", "Arial Unicode MS")


def _font_family() -> list[str]:
    """sans-serif first, then each installed fallback font (matplotlib >= 3.6 falls back glyph by glyph)."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ["sans-serif", *(f for f in FALLBACK_FONTS if f in installed)]


@contextlib.contextmanager
def report_style() -> Iterator[None]:
    """Paper-sized fonts, a light grid, editable text in PDFs; restored afterwards. A glyph no installed
    font has is drawn as a box; matplotlib's warning for it (one per glyph and figure) is silenced, since the
    file names and report.md carry the full names anyway. Text is never parsed as mathtext: a method or dataset
    named `$\\foo$` is drawn as written, not handed to a parser that raises."""
    rc = plt.rc_context({"text.parse_math": False, "pdf.fonttype": 42, "savefig.dpi": 200, "axes.titlesize": 8,
                         "axes.labelsize": 8,
                         "legend.fontsize": 7, "legend.title_fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7})
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"), rc, warnings.catch_warnings():
        plt.rcParams["font.family"] = _font_family()
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        yield


def palette(methods: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """Each method's fixed colour (style.STYLES), whatever other methods a figure holds."""
    return {m: style(m).colour for m in methods}


TARGET_COLOUR = "black"  # the density schedule: not a method's colour, drawn thin above the measured lines


def _seed_counts(rows: pd.DataFrame, by: tuple[str, ...] = ("method",)) -> str:
    """How many seeds (cells) each group (a method, by default) has: '3', or '2-3' where groups differ."""
    n = rows.groupby(list(by))["config_hash"].nunique()
    return str(n.min()) if n.min() == n.max() else f"{n.min()}-{n.max()}"


def seed_note(rows: pd.DataFrame, spread: str, by: tuple[str, ...] = ("method",), unit: str = "method") -> str:
    """E.g. 'band: mean ± std over 3 seeds' (spread names what shows it), or a note that nothing can; the
    seeds are counted per group of `by` (a figure's unit: a method's line, or a (method, τ) point)."""
    if rows.groupby(list(by))["config_hash"].nunique().max() < 2:
        return f"one seed per {unit} (no spread shown)"
    return spread.format(f"std over {_seed_counts(rows, by)} seeds")


def steps_axis(ax: plt.Axes, megabatches: int) -> None:
    ax.set_xlabel("megabatch t")
    ax.set_xlim(0.7, megabatches + 0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(megabatches, 10)))


MANY_METHODS = 5  # more methods than this on one axis: the highlighted ones in colour, the others grey and thin
FADED = "0.62"  # the colour of a method not highlighted


def emphasis(methods: Sequence[str], highlight: Sequence[str] | None = None) -> set[str]:
    """The methods a curve figure draws in grey and thin (no band): none where at most MANY_METHODS share
    the axis and no highlight was chosen; otherwise every method but the highlighted ones (the paper's methods,
    paper.METHOD_ORDER, by default)."""
    if highlight is None and len(methods) <= MANY_METHODS:
        return set()
    chosen = set(METHOD_ORDER if highlight is None else highlight)
    faded = {m for m in methods if m not in chosen}
    return faded if len(faded) < len(methods) else set()


def faded_note(faded: set[str]) -> str:
    return "; grey, thin, no band: other methods" if faded else ""


def mean_lines(ax: plt.Axes, rows: pd.DataFrame, y: str, order: Sequence[str], colours: dict,
                bounds: tuple[float, float] | None, faded: frozenset[str] | set[str] = frozenset(),
                labels: dict[str, str] | None = None) -> list[Line2D]:
    """Per method: mean over seeds per step (line, dots) and a mean ± std band clipped to bounds (an accuracy
    band past 100 % or a density band below 0 shows values no run can have), labelled labels[method] (default:
    its name). A faded method is grey, thin, bandless and drawn below the others. Returns the legend handles."""
    labels = labels or {}
    stats = rows.groupby(["method", "step"])[y].agg(["mean", "std"]).reset_index()
    handles = []
    for method in order:
        m = stats[stats["method"] == method]
        kwargs = {**line_kwargs(method), "color": colours[method]}
        if method in faded:
            kwargs["color"] = FADED
            handles += ax.plot(m["step"], m["mean"], markersize=2.5, linewidth=0.7, label=labels.get(method, method),
                               zorder=1.5, gid="faded", **kwargs)
            continue
        low, high = m["mean"] - m["std"].fillna(0), m["mean"] + m["std"].fillna(0)
        if bounds is not None:
            low, high = low.clip(*bounds), high.clip(*bounds)
        ax.fill_between(m["step"], low, high, color=colours[method], alpha=0.2, linewidth=0, zorder=1)
        handles += ax.plot(m["step"], m["mean"], markersize=3.5, linewidth=1.2, label=labels.get(method, method),
                           zorder=3, **kwargs)
    return handles


def legend_right(ax: plt.Axes, handles: list) -> None:
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="method",
              handlelength=2.6)


def close_panels(axes: np.ndarray, drawn: int, xlabel: str, fontsize: float = 6) -> None:
    """Finish a grid of small multiples (sharex) whose first `drawn` panels, row by row, hold data: the others
    removed (no empty panel), and the x tick labels and xlabel on each column's lowest panel only. sharex shows
    them on the last row alone, so a short last row left the columns above it with no x axis."""
    columns = axes.shape[1]
    for k, ax in enumerate(axes.flat):
        if k >= drawn:
            ax.remove()
            continue
        lowest = k + columns >= drawn  # no drawn panel below it
        ax.tick_params(labelbottom=lowest)
        ax.set_xlabel(xlabel if lowest else "", fontsize=fontsize)


def merged(order: Sequence[str], same: Sequence[tuple[str, str]] = ()) -> dict[str, str]:
    """The methods a figure draws, each with its label: where the delta table marks two methods one computation
    (same: (method, baseline) pairs, tables.identical_pairs; app and osp at τ = 1), the baseline is not drawn
    hidden under the method but joins its label, 'app = osp'."""
    names = {m: m for m in order}
    for method, baseline in same:
        if method in names and baseline in names:
            names[method] = f"{names[method]} = {baseline}"
            del names[baseline]
    return names


def same_note(names: dict[str, str], start: str = "; ") -> str:
    """The title's words for merged methods, each after start: '; app = osp: same computation (identical results
    at every seed)'; empty where no method was merged."""
    joined = [label for method, label in names.items() if label != method]
    return "".join(f"{start}{label}: {SAME_COMPUTATION}" for label in joined)


WHITE_BOX = {"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"}  # text over grid lines
OFF_SCALE_TEXT = {">": (-5, 0, "right", "center"), "<": (5, 0, "left", "center"),
                  "^": (5, -2, "left", "top"), "v": (5, 2, "left", "bottom")}  # beside, inside the frame


def off_scale_marker(ax: plt.Axes, xy: tuple[float, float], direction: str, colour: Any, text: str,
                     gid: str) -> None:
    """A value past the axis's scale (forest.off_scale_limit's rule) drawn as a triangle at the edge pointing
    towards it (direction: '>', '<', '^', 'v'), with its number written beside, so that it does not set the scale
    and is not lost either."""
    ax.plot([xy[0]], [xy[1]], marker=direction, color=colour, markersize=4.5, linestyle="none", zorder=4,
            clip_on=False, gid=gid)
    dx, dy, ha, va = OFF_SCALE_TEXT[direction]
    ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=5.5, color=colour,
                zorder=4, gid=gid, bbox=WHITE_BOX)


CORNERS = ((0.04, 0.93, "left", "top"), (0.96, 0.93, "right", "top"), (0.04, 0.07, "left", "bottom"),
           (0.96, 0.07, "right", "bottom"))  # where a panel's note may go, in this order of preference


def corner_note(ax: plt.Axes, text: str, gid: str | None = None) -> None:
    """Write text in the corner of ax that its drawn lines leave free (top left, top right, bottom left, bottom
    right: the first with no point of any line within a quarter of the axes' width and a fifth of its height;
    else the one with fewest), so a note such as 'n = 1' never sits on a point. Call it once every line is drawn
    and the axes' limits are final (shared scales included)."""
    data = [(line, np.asarray(line.get_xydata(), dtype=float).reshape(-1, 2)) for line in ax.get_lines()]
    points = [ax.transAxes.inverted().transform(line.get_transform().transform(xy))
              for line, xy in data if len(xy)]  # each in its own transform (axhline's x is the axes')
    xy = np.concatenate(points) if points else np.empty((0, 2))

    def crowd(corner: tuple[float, float, str, str]) -> int:
        x, y, _, _ = corner
        return int(((abs(xy[:, 0] - x) < 0.25) & (abs(xy[:, 1] - y) < 0.2)).sum())

    x, y, ha, va = min(CORNERS, key=crowd)  # min keeps the first of equals: the preferred corner
    ax.text(x, y, text, transform=ax.transAxes, fontsize=6, ha=ha, va=va, color="0.3", gid=gid or text)
