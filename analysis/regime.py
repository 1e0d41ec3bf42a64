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
DIFFERENCES: tuple[tuple[str, str], ...] = (("final_test_accuracy", "final test accuracy"),
                                            ("final_gap", "final gap, train − val"))
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
    difference. Each comparison is one line over the rungs (x: dense's mean gap, log scale), a point with its
    95 % t-interval, the comparisons dodged a little apart; a rung with a single seed is a hollow point without
    whiskers. A whisker far wider than the others (a rung whose seeds disagree) is cut at the axis and ends in
    an arrow, so it does not flatten every other rung into a few pixels. versus_dense: the rows are each method
    against dense (VERSUS_DENSE), drawn in the method's look rather than the baseline's."""
    archs = sorted(rows[PANEL_KEY].unique())
    fig, axes = plt.subplots(len(DIFFERENCES), len(archs), figsize=(width * len(archs), height * len(DIFFERENCES)),
                             squeeze=False, sharex=True)
    clipped = False
    for col, arch in enumerate(archs):
        for r, (metric, name) in enumerate(DIFFERENCES):
            ax = axes[r][col]
            ax.axhline(0, color="black", linewidth=0.8, zorder=1)
            part = rows[(rows[PANEL_KEY] == arch) & (rows["metric"] == metric)]
            limits = y_limits(part)
            ax.set_ylim(*limits)
            lines = list(part.groupby(["method", "baseline"], sort=False))
            for i, ((method, baseline), line) in enumerate(lines):
                dodge = 10 ** (DODGE * (i - (len(lines) - 1) / 2))
                clipped |= _draw_comparison(ax, line.sort_values("dense_gap"), method, baseline, dodge, limits,
                                            method if versus_dense else baseline)
            ax.set_xscale("log")
            ax.set_xlim(rows["dense_gap"].min() / 1.15, rows["dense_gap"].max() * 1.15)
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_ylabel(f"paired difference in\n{name} (points)")
            if r == 0:
                shown = varying_rung_keys(rows, keys)
                longest = max(len(rung_label(row, shown)) for _, row in part.iterrows()) if len(part) else 0
                ax.set_title(arch, pad=12 + 3.4 * longest)  # above the rung labels (about 3.4 pt a character)
                _label_rungs(ax, part.drop_duplicates("dense_gap"), shown, fig.get_figwidth())
            if r == len(DIFFERENCES) - 1:
                ax.set_xlabel("dense's mean generalisation gap at the rung (points, log)")
    legend: dict[str, Any] = {}  # every panel's comparisons, once: an architecture may lack one (GMP)
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.9), frameon=False, fontsize=7)
    title = block_label(setting) if setting else "all cells"
    note = "; arrow = whisker cut at the axis" if clipped else ""
    what = "each method − dense" if versus_dense else "regime map"
    fig.suptitle(f"{what}: {title}\npaired by seed: mean, whiskers = 95 % t-interval; hollow = 1 seed{note}",
                 fontsize=8)
    fig.tight_layout()
    return fig


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


LABEL_GAP = 8.0  # points between neighbouring rung labels (a 5.5 pt label on its side is about 7 pt wide)


def _label_rungs(ax: plt.Axes, rungs: pd.DataFrame, shown: Sequence[str], fig_width: float) -> None:
    """Each rung named once, above the top panel at its x; a label that would overprint the previous one is
    moved right by what it lacks of LABEL_GAP, and a thin line joins it to its rung."""
    low, high = (np.log10(v) for v in ax.get_xlim())
    width = ax.get_position().width * fig_width * 72  # the panel's width in points
    previous = -np.inf
    for _, row in rungs.sort_values("dense_gap").iterrows():
        x = row["dense_gap"]
        at = (np.log10(x) - low) / (high - low) * width
        placed = max(at, previous + LABEL_GAP)
        ax.annotate(rung_label(row, shown), (x, 1.0), xycoords=("data", "axes fraction"), xytext=(placed - at, 6),
                    textcoords="offset points", rotation=90, ha="center", va="bottom", fontsize=5.5, color="0.35",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.4, "shrinkA": 0, "shrinkB": 0})
        previous = placed
