"""The regime map: where APP's schedule pays and where it costs, as dense's overfitting grows.

A rung is a block of the report that differs from its neighbours only in how much the stream lets dense overfit:
the stream's size, the epochs per megabatch and the number of megabatches (RUNG_KEYS, and the milestones the
epochs give). Each rung is placed at dense's mean generalisation gap there (train − validation accuracy averaged
over the megabatches, then over dense's seeds), and carries the paired differences of APP against dense, OSP, GMP
and the warm-start controls scratch and shrink-perturb (tables.delta_table: paired by seed, with the 95 %
t-interval) in final test accuracy and in final gap. A second map (VERSUS_DENSE) draws each method against dense
instead: which of them closes dense's gap, and at what cost in accuracy.
Rungs that share every other block key (dataset, pruner, τ, ...) form one setting; a setting is drawn once two
of its rungs exist, with one panel per architecture, so a second architecture sits beside the first on its own
panel even where it has a single rung. A line through a comparison's rungs, fitted by least squares on the
per-rung means, says where it would cross zero if the trend held (regime_trends).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.legend import Legend
from matplotlib.text import Annotation, Text
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .blocks import block_label
from .style import line_kwargs

RUNG_KEYS: tuple[str, ...] = ("stream_images", "epochs", "megabatches", "milestones")
PANEL_KEY = "arch"
COMPARED: tuple[tuple[str, str], ...] = (("app", "dense"), ("app", "osp"), ("app", "gmp"), ("app", "scratch"),
                                         ("app", "shrink-perturb"))
# the second map: each method's difference from dense (tables.delta_table with these methods as references)
VERSUS_DENSE: tuple[tuple[str, str], ...] = tuple((m, "dense") for m in ("app", "osp", "gmp", "scratch",
                                                                         "shrink-perturb"))
DIFFERENCES: tuple[tuple[str, str], ...] = (("final_test_accuracy", "final accuracy"),  # (metric, y label after Δ)
                                            ("final_gap", "final gap"))
X_METRIC = "mean_gap"  # dense's, at the rung: how much dense overfits there
REGIME_COLUMNS = ("dense_gap", "dense_gap_std", "dense_n", "method", "baseline", "metric", "delta", "ci_low",
                  "ci_high", "n_pairs")


def setting_keys(keys: Sequence[str]) -> list[str]:
    """The block keys that are neither a rung's nor the panel's: one regime figure per value of these."""
    return [k for k in keys if k not in RUNG_KEYS and k != PANEL_KEY]


def rung_keys(keys: Sequence[str]) -> list[str]:
    """The block keys that move a block along the axis (only those the report splits on are present)."""
    return [k for k in keys if k in RUNG_KEYS]


def regime_table(summary: pd.DataFrame, deltas: pd.DataFrame, keys: Sequence[str],
                 compared: Sequence[tuple[str, str]] = COMPARED) -> pd.DataFrame:
    """One row per rung, comparison (compared, where both methods ran) and difference (DIFFERENCES): the block
    keys, dense's mean gap (its mean, std and n over seeds) and the paired delta with its interval. Empty
    where the blocks differ in no rung key: a single rung is no map."""
    keys = list(keys)
    columns = [*keys, *REGIME_COLUMNS]
    if not rung_keys(keys) or summary.empty or deltas.empty:
        return pd.DataFrame(columns=columns)
    dense = summary[(summary["method"] == "dense") & (summary["metric"] == X_METRIC)]
    dense = dense[[*keys, "mean", "std", "n"]].rename(columns={"mean": "dense_gap", "std": "dense_gap_std",
                                                               "n": "dense_n"})
    wanted = pd.MultiIndex.from_tuples([(a, b, m) for a, b in compared for m, _ in DIFFERENCES])
    picked = deltas[pd.MultiIndex.from_frame(deltas[["method", "baseline", "metric"]]).isin(wanted)]
    table = dense.merge(picked, on=keys, how="inner")  # a rung without dense has no place on the axis
    if table.empty:
        return pd.DataFrame(columns=columns)
    order = {pair: i for i, pair in enumerate(wanted)}
    table = table.assign(_c=[order[t] for t in zip(table["method"], table["baseline"], table["metric"])])
    table = table.sort_values([*setting_keys(keys), PANEL_KEY, "_c", "dense_gap"], kind="stable")
    return table[columns].reset_index(drop=True)


def drawn_settings(table: pd.DataFrame, keys: Sequence[str]) -> list[tuple[dict[str, object], pd.DataFrame]]:
    """(setting, rows) for each setting with at least two rungs in some architecture, in sorted order."""
    if table.empty:
        return []
    skeys, rkeys = setting_keys(keys), rung_keys(keys)
    groups = table.groupby(skeys, sort=True, dropna=False) if skeys else [((), table)]
    out = []
    for values, rows in groups:
        values = values if isinstance(values, tuple) else (values,)
        rungs = rows.groupby(PANEL_KEY)[rkeys].apply(lambda r: len(r.drop_duplicates())).max()
        if rungs >= 2:
            out.append((dict(zip(skeys, values)), rows))
    return out


def varying_rung_keys(rows: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The rung keys whose values differ among rows: what a rung's label must say to tell it from the others."""
    return [k for k in rung_keys(keys) if rows[k].astype(str).nunique() > 1]


def rung_label(row: pd.Series, shown: Sequence[str]) -> str:
    """A rung as a reader names it, by the keys in shown: '5k img, 32 ep', 'all, 2 ep' or 'all, 1 ep, T=32'
    (T only where it is not the usual 8)."""
    parts = []
    if "stream_images" in shown:
        n = row["stream_images"]
        parts.append("all" if pd.isna(n) else f"{int(n) / 1000:g}k img")
    if "epochs" in shown:
        parts.append(f"{int(row['epochs'])} ep")
    if "megabatches" in shown and int(row["megabatches"]) != 8:
        parts.append(f"T={int(row['megabatches'])}")
    return ", ".join(parts) or "-"


def regime_trends(table: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per setting, architecture, comparison and difference with three rungs or more: the least-squares line
    delta ≈ intercept + slope · dense_gap through the rungs' mean deltas (each rung weighs the same), and the
    dense gap where that line crosses zero (nan where it is flat). A trend to read, not a model: it says where
    the sign would change if the line held beyond the rungs measured."""
    group = [*setting_keys(keys), PANEL_KEY, "method", "baseline", "metric"]
    rows = []
    for values, g in table.groupby(group, sort=False, dropna=False):
        g = g.dropna(subset=["delta", "dense_gap"])
        if len(g) < 3:
            continue
        slope, intercept = np.polyfit(g["dense_gap"].to_numpy(float), g["delta"].to_numpy(float), 1)
        rows.append({**dict(zip(group, values)), "rungs": len(g), "slope": float(slope),
                     "intercept": float(intercept), "zero_at": -intercept / slope if slope else float("nan")})
    return pd.DataFrame(rows, columns=[*group, "rungs", "slope", "intercept", "zero_at"])


def regime_figure(rows: pd.DataFrame, setting: dict[str, object], keys: Sequence[str],
                  width: float, height: float, versus_dense: bool = False) -> plt.Figure:
    """Rows: the regime table of one setting. Columns of panels: one per architecture; rows of panels: one per
    difference, on one y-scale across the architectures (they are compared). Each comparison is one line over the
    rungs (x: dense's mean gap, log scale), a point with its 95 % t-interval, the comparisons dodged a little
    apart; a rung with a single seed is a hollow point without whiskers. A whisker far wider than the others (a
    rung whose seeds disagree) is cut at the axis and ends in an arrow, so it does not flatten every other rung
    into a few pixels. The rungs are named in a strip above the top panels (_label_rungs), the comparisons in a
    legend below. versus_dense: the rows are each method against dense (VERSUS_DENSE), drawn in the method's
    look rather than the baseline's."""
    archs = sorted(rows[PANEL_KEY].unique())
    fig, axes = plt.subplots(len(DIFFERENCES), len(archs), figsize=(width * len(archs), height * len(DIFFERENCES)),
                             squeeze=False, sharex=True)
    clipped = False
    shown = varying_rung_keys(rows, keys)
    labels = []
    for r, (metric, name) in enumerate(DIFFERENCES):
        limits = y_limits(rows[rows["metric"] == metric])  # one scale a row: the architectures side by side
        for col, arch in enumerate(archs):
            ax = axes[r][col]
            ax.axhline(0, color="black", linewidth=0.8, zorder=1)
            part = rows[(rows[PANEL_KEY] == arch) & (rows["metric"] == metric)]
            ax.set_ylim(*limits)
            lines = list(part.groupby(["method", "baseline"], sort=False))
            for i, ((method, baseline), line) in enumerate(lines):
                dodge = 10 ** (DODGE * (i - (len(lines) - 1) / 2))
                clipped |= _draw_comparison(ax, line.sort_values("dense_gap"), method, baseline, dodge, limits,
                                            method if versus_dense else baseline)
            _log_gap_axis(ax, rows["dense_gap"])
            if col == 0:
                ax.set_ylabel(f"Δ {name}")
            else:
                ax.tick_params(axis="y", labelleft=False)
            if r == 0:
                ax.set_title(arch)
                labels += _label_rungs(ax, part.drop_duplicates("dense_gap"), shown)
            if r == len(DIFFERENCES) - 1:
                ax.set_xlabel("dense's mean generalisation gap at the rung (points, log)")
    legend = _legend_below(fig, axes)
    title = block_label(setting) if setting else "all cells"
    note = "; arrow = whisker cut at the axis" if clipped else ""
    what = "each method − dense" if versus_dense else "regime map"
    fig.suptitle(f"{what}: {title}\nΔ: paired by seed (points), whiskers = 95 % t-interval; gap = train − val; "
                 f"hollow = 1 seed{note}", fontsize=8)
    _lay_out(fig, axes[0], labels, legend)
    return fig


def _log_gap_axis(ax: plt.Axes, gaps: pd.Series) -> None:
    """x: dense's mean gap on a log scale ticked at 1, 2, 5 of each decade, with room for the dodged points."""
    ax.set_xscale("log")
    ax.set_xlim(gaps.min() / 1.15, gaps.max() * 1.15)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _legend_below(fig: plt.Figure, axes: np.ndarray) -> Legend:
    """Every panel's comparisons once (an architecture may lack one, GMP), in a legend under the panels, as many
    to a line as the figure's width holds."""
    legend: dict[str, Any] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    columns = max(1, min(len(legend), int(fig.get_figwidth() / 1.6)))
    return fig.legend(list(legend.values()), list(legend), loc="lower center", bbox_to_anchor=(0.5, 0.0),
                      ncol=columns, frameon=False, fontsize=7, handlelength=2.6)


def _lay_out(fig: plt.Figure, top: Sequence[plt.Axes], labels: list[Annotation], legend: Legend) -> None:
    """tight_layout with the legend's height kept free at the bottom, the rung strip stacked for the panels' final
    width (stack_rung_labels), the figure that much taller and the titles lifted above it; twice, as the strip's
    height moves the panels."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # the Agg canvas (figure_kit) has one
    height, strip = fig.get_figheight(), 0.0
    for _ in range(2):
        fig.set_figheight(height + strip / 72)  # the strip's rows on top of the panels, not out of them
        bottom = legend.get_window_extent(renderer).height / fig.bbox.height
        fig.tight_layout(rect=(0, bottom + 0.01, 1, 1))
        strip = STRIP_BASE + ROW * stack_rung_labels(labels, renderer)
        for ax in top:
            ax.set_title(ax.get_title(), pad=strip + 3)


DODGE = 0.012  # log10 units between neighbouring comparisons at one rung (about 3 %)
WIDE = 3.0  # a whisker more than this many times the panel's median whisker is cut at the axis ...
REACH = 0.25  # ... where its end lies more than this fraction of the rest's range beyond the rest


def y_limits(part: pd.DataFrame) -> tuple[float, float]:
    """The panel's y range: every mean, zero and every interval end, but for the ends of intervals more than
    WIDE times the panel's median interval (a rung where the seeds disagree wildly) that lie more than REACH of
    the range beyond it: those are cut. A wide whisker that ends just past the others is drawn whole."""
    half = (part["ci_high"] - part["ci_low"]) / 2
    normal = half.isna() | (half <= WIDE * half.median()) if half.notna().any() else half.isna()
    values = [0.0, *part["delta"].dropna(), *part.loc[normal, "ci_low"].dropna(),
              *part.loc[normal, "ci_high"].dropna()]
    low, high = min(values), max(values)
    reach = REACH * (high - low or 1.0)
    wide_ends = [*part.loc[~normal, "ci_low"].dropna(), *part.loc[~normal, "ci_high"].dropna()]
    low = min([low, *(v for v in wide_ends if v >= low - reach)])
    high = max([high, *(v for v in wide_ends if v <= high + reach)])
    pad = 0.08 * (high - low or 1.0)
    return low - pad, high + pad


def _draw_comparison(ax: plt.Axes, line: pd.DataFrame, method: str, baseline: str, dodge: float,
                     limits: tuple[float, float], look: str) -> bool:
    """One comparison's points and the line through them, in the colour and dashes of `look` (the baseline, or
    the method where every comparison is against dense) and the method's marker, x scaled by dodge; True where a
    whisker was cut at the axis limits."""
    colour, linestyle = line_kwargs(look)["color"], line_kwargs(look)["linestyle"]
    marker = line_kwargs(method)["marker"]
    x, y = line["dense_gap"].to_numpy(float) * dodge, line["delta"].to_numpy(float)
    ax.plot(x, y, color=colour, linestyle=linestyle, linewidth=1.1, zorder=2, label=f"{method} − {baseline}")
    several = (line["n_pairs"] >= 2).to_numpy()
    low = np.clip(line["ci_low"].to_numpy(float), *limits)
    high = np.clip(line["ci_high"].to_numpy(float), *limits)
    ax.errorbar(x[several], y[several], yerr=[y[several] - low[several], high[several] - y[several]], fmt="none",
                ecolor=colour, elinewidth=0.9, capsize=2, zorder=3)
    cut = False
    for end, edge, arrow in ((line["ci_low"].to_numpy(float), limits[0], "v"),
                             (line["ci_high"].to_numpy(float), limits[1], "^")):
        beyond = several & (end < limits[0]) if arrow == "v" else several & (end > limits[1])
        if beyond.any():
            cut = True
            ax.plot(x[beyond], np.full(beyond.sum(), edge), linestyle="none", marker=arrow, markersize=4,
                    color=colour, clip_on=False, zorder=3)
    ax.plot(x[several], y[several], linestyle="none", marker=marker, markersize=4, color=colour, zorder=4)
    ax.plot(x[~several], y[~several], linestyle="none", marker=marker, markersize=4, markerfacecolor="white",
            markeredgecolor=colour, zorder=4)
    return cut


STRIP_BASE = 3.0  # points between a panel's top and the strip's lowest row of rung labels
ROW = 7.0  # points from one row of rung labels to the next (5.5 pt text)
LABEL_GAP = 3.0  # points kept free between two rung labels in a row
RUNG_FONT = 5.5


def _label_rungs(ax: plt.Axes, rungs: pd.DataFrame, shown: Sequence[str]) -> list[Annotation]:
    """Each rung named once, horizontally, above the top panel, starting at its x with a thin leader line down to
    it; the rows are chosen once the panels have their size (stack_rung_labels)."""
    return [ax.annotate(rung_label(row, shown), (row["dense_gap"], 1.0), xycoords=("data", "axes fraction"),
                        xytext=(1.5, STRIP_BASE), textcoords="offset points", ha="left", va="bottom",
                        fontsize=RUNG_FONT, color="0.3", gid="rung", annotation_clip=False,
                        arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.4, "shrinkA": 0, "shrinkB": 0,
                                    "relpos": (0.0, 0.5)})
            for _, row in rungs.sort_values("dense_gap").iterrows()]


def stack_rung_labels(labels: Sequence[Annotation], renderer: Any) -> int:
    """Put each rung label in the lowest row of the strip where it overlaps no label of that row and no leader
    line from a label above runs through it, the rightmost rungs first. A label reads rightwards from its rung,
    so the labels already placed (further right) never lie across its own leader. Returns the rows used."""
    placed: list[tuple[float, float, float, int]] = []  # (leader x, left, right, row) in display units
    gap = LABEL_GAP * renderer.points_to_pixels(1.0)
    for label in sorted(labels, key=lambda a: -Text.get_window_extent(a, renderer).x0):
        label.xyann = (1.5, STRIP_BASE)
        box = Text.get_window_extent(label, renderer)  # the words: an Annotation's own extent adds its leader
        x = box.x0 - renderer.points_to_pixels(1.5)
        row = 0
        while any(_blocks(box.x0 - gap, box.x1 + gap, row, other) for other in placed):
            row += 1
        placed.append((x, box.x0, box.x1, row))
        label.xyann = (1.5, STRIP_BASE + ROW * row)
    return 1 + max((p[3] for p in placed), default=0)


def _blocks(left: float, right: float, row: int, other: tuple[float, float, float, int]) -> bool:
    """Whether a placed label `other` (leader x, span, row) keeps a new label spanning left-right out of row."""
    ox, oleft, oright, orow = other
    return ((orow == row and left < oright and oleft < right)  # the two would overprint
            or (orow > row and left <= ox <= right))  # a leader from above would cross the new label
