"""The forest plot: each paired comparison of a block as its delta with the 95 % interval of the tables.

The figure papers use for paired comparisons, drawn from the delta table itself (tables.delta_table), so every
point and interval is the number the report prints (and "same computation" where the table marks two methods'
cells identical): rows are comparisons (app − osp, ...), sorted by their
final-accuracy delta, columns the blocks of a folder side by side (the epoch rungs, the τ values), one row of
panels per reference method and metric (final accuracy, CER), every panel of a row on one x-scale with zero
marked, so that the eye compares lengths across blocks, not ticks. A comparison of one paired seed has no
interval: it is drawn hollow and marked n = 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, MaxNLocator

from .blocks import block_label
from .paired import counted
from .style import style

FOREST_METRICS = (("final_test_accuracy", "Δ final test accuracy (points)", 2),
                  ("cer", "Δ CER (test errors)", 0))
MAX_COLUMNS = 4  # blocks side by side in one figure; more start another figure
OFF_SCALE = 3.0  # a panel's x-axis reaches this many times the median reach of its comparisons


def comparison_label(row: pd.Series) -> str:
    return f"{row['method']} − {row['baseline']}"


def comparison_order(deltas: pd.DataFrame, blocks: Sequence[dict]) -> list[str]:
    """Comparisons top to bottom: by final-accuracy delta (largest first) in the block holding the most of them,
    then any the other blocks add, in their table order."""
    acc = deltas[(deltas["metric"] == "final_test_accuracy") & deltas["delta"].notna()]
    acc = acc.assign(label=acc.apply(comparison_label, axis=1) if not acc.empty else pd.Series(dtype=str))
    reference = max((acc[_in(acc, b)] for b in blocks), key=len)
    order = list(reference.sort_values("delta", ascending=False, kind="stable")["label"])
    return order + [lab for lab in dict.fromkeys(acc["label"]) if lab not in order]


def _in(frame: pd.DataFrame, block: dict) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for key, value in block.items():
        mask &= frame[key].isna() if pd.isna(value) else frame[key] == value
    return mask


def off_scale_limit(rows: pd.DataFrame) -> float:
    """How far from zero the x-axis reaches: OFF_SCALE times the median |delta| of the comparisons, so that one far
    comparison (app − app-released, −20 points) or one wide interval (a noisy rung's ±14) does not squash the
    others (app − osp, +0.8) into a few pixels. A comparison whose delta lies past it is an arrow at the edge
    with its numbers written out; a whisker that reaches past it is cut at the edge, with an arrowhead. inf where
    every point and whisker fits."""
    points = rows["delta"].abs().dropna()
    if points.empty:
        return math.inf
    limit = OFF_SCALE * float(points.median())
    reach = rows[["delta", "ci_low", "ci_high"]].abs().max(axis=1)
    return limit if (reach > limit).any() and limit > 0 else math.inf


def forest_figure(deltas: pd.DataFrame, blocks: Sequence[dict], group: dict, column_keys: Sequence[str]) -> plt.Figure:
    """One column of panels per block (titled by its column_keys); one row of panels per reference method (app −
    ..., app-released − ...) and metric. Every panel of a row shares one x-scale, so lengths compare across
    blocks; a block without any comparison of a reference has no panel there (nothing empty is drawn). The rows
    of deltas (tables.delta_table) of those blocks are the points (delta) and whiskers (ci_low, ci_high)."""
    deltas = deltas[deltas["delta"].notna()]
    variants = list(dict.fromkeys(deltas["method"]))
    orders = {v: comparison_order(deltas[deltas["method"] == v], blocks) for v in variants}
    panel_rows = [(v, metric) for v in variants for metric in FOREST_METRICS]
    ncols = len(blocks)
    heights = [len(orders[v]) + 1.6 for v, _ in panel_rows]
    fig, axes = plt.subplots(len(panel_rows), ncols, figsize=(2.3 * ncols + 1.7, 0.2 * sum(heights) + 0.9),
                             squeeze=False, layout="constrained", gridspec_kw={"height_ratios": heights})
    in_figure = deltas[np.logical_or.reduce([_in(deltas, b) for b in blocks])] if blocks else deltas.iloc[0:0]
    for i, (variant, (metric, xlabel, decimals)) in enumerate(panel_rows):
        order = orders[variant]
        y = {label: len(order) - 1 - k for k, label in enumerate(order)}
        scale = shared_scale(in_figure[(in_figure["metric"] == metric) & (in_figure["method"] == variant)])
        for j, block in enumerate(blocks):
            rows = deltas[_in(deltas, block)]
            ax = axes[i, j]
            mine = rows[(rows["metric"] == metric) & (rows["method"] == variant)]
            if mine.empty:  # this reference has no comparison in this block: no panel rather than an empty one
                ax.set_visible(False)
                continue
            _panel(ax, mine, y, decimals, scale)
            ax.set_xlabel(xlabel, fontsize=6, labelpad=1)
            first = not any(axes[i, k].get_visible() for k in range(j))  # the row's first panel names the rows
            ax.set_yticks(range(len(order)), list(reversed(order)) if first else [""] * len(order), fontsize=6)
            ax.set_ylim(-0.7, len(order) - 0.3)
            if i == 0 or all(not axes[k, j].get_visible() for k in range(i)):
                n = rows["n_pairs"][rows["n_pairs"] > 0]
                seeds = "" if n.empty else (f"{counted(int(n.max()), 'paired seed')}" if n.min() == n.max()
                                            else f"{n.min()}-{n.max()} paired seeds")
                name = block_label({k: block[k] for k in column_keys}) if column_keys else "all cells"
                ax.set_title(f"{name.replace(' / epochs', chr(10) + 'epochs')}\n{seeds}", fontsize=7)
    fig.suptitle(f"paired deltas: {block_label(group) if group else 'all cells'}\npoint: mean of the per-seed "
                 "differences, whisker: its 95 % interval (the tables' deltas); one x-scale per row\n"
                 "colour: the method compared against (against dense: the method itself)\n"
                 "hollow: 1 paired seed, no interval; ▶ at an edge: off the scale, numbers written; small ▸: whisker "
                 "cut", fontsize=8)
    return fig


@dataclass(frozen=True)
class Scale:
    """The x-range every panel of one metric shares, and the reach past which a comparison is an arrow."""

    low: float
    high: float
    pad: float
    limit: float


def shared_scale(rows: pd.DataFrame) -> Scale:
    """The x-range shared by every panel of a row: zero, every point within off_scale_limit and its whiskers as far
    as the limit, padded, with room at an edge for the arrows of the points past it."""
    limit = off_scale_limit(rows)
    core, off = rows[rows["delta"].abs() <= limit], rows[rows["delta"].abs() > limit]
    ends = core[["delta", "ci_low", "ci_high"]].clip(-limit, limit)
    low = min(0.0, float(ends.min().min())) if not core.empty else 0.0
    high = max(0.0, float(ends.max().max())) if not core.empty else 0.0
    low, high = (low, high) if high > low else (low - 1, high + 1)
    pad = 0.1 * (high - low)
    low, high = low - (4 if (off["delta"] < 0).any() else 1) * pad, high + (4 if (off["delta"] > 0).any() else 1) * pad
    return Scale(low, high, pad, limit)


def _panel(ax: plt.Axes, rows: pd.DataFrame, y: dict[str, int], decimals: int, scale: Scale) -> None:
    """The comparisons of one block and metric: a point per delta, its interval as whiskers, zero marked, on the
    metric's shared scale; those past its limit as a triangle at the edge, with delta [interval] written beside."""
    ax.axvline(0, color="black", linewidth=0.8, zorder=1)
    ax.tick_params(labelsize=6, pad=1)
    ax.grid(axis="y", visible=False)
    low, high, pad = scale.low, scale.high, scale.pad
    off = set(rows[rows["delta"].abs() > scale.limit].apply(comparison_label, axis=1)) if not rows.empty else set()
    number = (lambda v: f"{v:+,.0f}") if decimals == 0 else (lambda v: f"{v:+.{decimals}f}")
    for _, r in rows.iterrows():
        label = comparison_label(r)
        colour = style(r["baseline"] if r["baseline"] != "dense" else r["method"]).colour
        has_ci = not (pd.isna(r["ci_low"]) or pd.isna(r["ci_high"]))
        if label in off:
            edge = high - pad if r["delta"] > 0 else low + pad
            ax.plot([edge], [y[label]], marker=">" if r["delta"] > 0 else "<", color=colour, markersize=4,
                    linestyle="none", zorder=3, gid=f"off-scale {label}")
            ci = f" [{number(r['ci_low'])}, {number(r['ci_high'])}]" if has_ci else " (n = 1)"
            ax.annotate(f"{number(r['delta'])}{ci}", (edge, y[label]), xytext=(-5 if r["delta"] > 0 else 5, 0),
                        textcoords="offset points", fontsize=5, va="center", ha="right" if r["delta"] > 0 else "left",
                        gid=f"off-scale {label}")
            continue
        xerr = np.array([[r["delta"] - r["ci_low"]], [r["ci_high"] - r["delta"]]]) if has_ci else None
        ax.errorbar([r["delta"]], [y[label]], xerr=xerr, fmt="o", color=colour, markersize=3.5, capsize=2,
                    elinewidth=1, markerfacecolor=colour if has_ci else "white", zorder=3, label=label)
        for end, edge, marker in ((r["ci_low"], low, "<"), (r["ci_high"], high, ">")):
            if has_ci and not low <= end <= high:  # the whisker runs past the axis: cut there, an arrowhead says so
                ax.plot([edge], [y[label]], marker=marker, color=colour, markersize=3, linestyle="none", zorder=3,
                        clip_on=False, gid=f"cut {label}")
        note = "; ".join(n for n, on in (("n = 1", r["n_pairs"] == 1), ("same computation", r.get("identical")))
                         if on)
        if note:
            ax.annotate(note, (r["delta"], y[label]), xytext=(4, 0), textcoords="offset points", fontsize=5,
                        va="center")
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: (f"{v:+,.0f}" if decimals == 0 else f"{v:+g}") if v
                                               else "0"))
