"""The per-block figures over the stream: accuracy (and any per-step metric), the generalisation gap as small
multiples against dense, the density schedules, and CER as points."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, and no window pops up in a terminal session

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patheffects import withStroke  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from .blocks import block_label  # noqa: E402
from .figure_kit import (  # noqa: E402
    HEIGHT,
    MANY_METHODS,
    TARGET_COLOUR,
    WHITE_BOX,
    WIDTH,
    close_panels,
    corner_note,
    emphasis,
    faded_note,
    legend_right,
    mean_lines,
    merged,
    off_scale_marker,
    same_note,
    seed_note,
    steps_axis,
)
from .forest import shared_scale  # noqa: E402
from .paper import method_order  # noqa: E402
from .style import line_kwargs, style  # noqa: E402

PANEL_COLUMNS = 5  # panels per row of the small multiples


def curve_figure(rows: pd.DataFrame, y: str, ylabel: str, block: dict, colours: dict,
                 bounds: tuple[float, float] | None = None, highlight: Sequence[str] | None = None,
                 same: Sequence[tuple[str, str]] = (), reference: str = "dense", what: str = "") -> plt.Figure:
    """A per-step metric (test accuracy, the gap) after each megabatch as small multiples: a panel per method,
    the reference (dense) drawn black with a grey band in each, every panel on one y-scale, each panel titled
    with the method's final mean and its difference to the reference. One axis of a dozen lines let the bands of
    dense, osp and app hide each other and six grey baselines share dashes; here each method is seen against dense
    alone. Bands are mean ± std over seeds (clipped to bounds); a method of one seed has a thin line with hollow
    markers, no band, and says n = 1. Highlighted methods (--highlight) come first; methods the delta table marks
    one computation (same) are one panel, 'app = osp'."""
    names = merged(method_order(rows["method"]), same)
    order = [m for m in names if m != reference] or [reference]
    order = sorted(order, key=lambda m: highlight is not None and m not in highlight)  # stable: chosen first
    stats = rows.groupby(["method", "step"])[y].agg(["mean", "std"]).reset_index()
    stats["low"], stats["high"] = stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0)
    if bounds is not None:
        stats[["low", "high"]] = stats[["low", "high"]].clip(*bounds)
    seeds = rows.groupby("method")["config_hash"].nunique()
    ncols = min(PANEL_COLUMNS, len(order))
    nrows = math.ceil(len(order) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.75 * ncols + 0.4, 1.5 * nrows + 0.9), sharex=True,
                             sharey=True, squeeze=False, layout="constrained")
    base = stats[stats["method"] == reference]
    for ax, method in zip(axes.flat, order):
        if not base.empty and method != reference:
            ax.fill_between(base["step"], base["low"], base["high"], color="0.88", linewidth=0, zorder=1)
            ax.plot(base["step"], base["mean"], color="black", linewidth=0.9, zorder=2, gid="reference")
        _panel_line(ax, stats[stats["method"] == method], method, colours[method], seeds.get(method, 0) < 2)
        final = stats.loc[stats["method"] == method, "mean"].iloc[-1]
        versus = f" ({final - base['mean'].iloc[-1]:+.1f})" if not base.empty and method != reference else ""
        ax.set_title(f"{names[method]}\nfinal {final:.1f}{versus}", fontsize=7)
    for ax, method in zip(axes.flat, order):  # once every panel is drawn: the shared y-scale is final
        if seeds.get(method, 0) < 2:
            corner_note(ax, "n = 1")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=6)
    close_panels(axes, len(order), "megabatch t")
    against = f"black, grey band: {reference}; " if not base.empty else ""
    clipped = f", clipped to [{bounds[0]:g}, {bounds[1]:g}]" if bounds is not None else ""
    versus = f" (difference to {reference})" if not base.empty else ""
    fig.suptitle(f"{what or ylabel}: {block_label(block)}\n{against}colour: the method; "
                 f"{seed_note(rows, 'band: mean ± {}' + clipped)}; one y-scale\npanel title: final mean{versus}"
                 f"{same_note(names)}", fontsize=8)
    return fig


def _panel_line(ax: plt.Axes, m: pd.DataFrame, method: str, colour: Any, one_seed: bool) -> None:
    """One method's mean line in its panel, with its band, or hollow where it has one seed (curve_figure writes
    its 'n = 1')."""
    kwargs = {**line_kwargs(method), "color": colour}
    if one_seed:
        kwargs |= {"markerfacecolor": "white", "linewidth": 0.8}
    else:
        ax.fill_between(m["step"], m["low"], m["high"], color=colour, alpha=0.25, linewidth=0, zorder=2)
    ax.plot(m["step"], m["mean"], markersize=3, zorder=3, gid="mean", label=method, **{"linewidth": 1.3, **kwargs})
    ax.tick_params(labelsize=6, pad=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))


def gap_figure(rows: pd.DataFrame, block: dict, colours: dict, reference: str = "dense",
               same: Sequence[tuple[str, str]] = ()) -> plt.Figure:
    """The generalisation gap after each megabatch: curve_figure's small multiples against dense."""
    return curve_figure(rows, "gap", "gap (points)", block, colours, same=same, reference=reference,
                        what="generalisation gap (train − validation accuracy)")


OFF_TARGET = 0.5  # a method whose final density is below this fraction of its target has its target marked


def density_figure(rows: pd.DataFrame, block: dict, colours: dict,
                   highlight: Sequence[str] | None = None, same: Sequence[tuple[str, str]] = ()) -> plt.Figure:
    """Measured global density per method (coloured, band = std) with the target schedules drawn once each on
    top, in thin black dashes: drawn under the lines, a method on schedule hid its target. Methods whose measured
    densities are equal at every step (dense, scratch and shrink-perturb at 1; osp, rigl and set at one density)
    are one line whose legend entry names them all: hidden under each other, they left legend entries without a
    visible line. A method that falls far below its target (app-released's compounding) gets its target marked in
    its colour with crosses and its final numbers written. A log axis where the densities span a decade."""
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    names = merged(method_order(rows["method"]), same)
    groups = same_curves(rows, "density", list(names))
    labels = {first: wrap_names([names[m] for m in group]) for first, group in groups.items()}
    fade = emphasis(list(names), highlight) if highlight is not None or len(groups) > MANY_METHODS else set()
    faded = {first for first, group in groups.items() if set(group) <= fade}  # grey: no member highlighted
    handles = mean_lines(ax, rows, "density", list(groups), colours, (0.0, 1.0), faded, labels)
    dashes: dict[str, Any] = {"color": TARGET_COLOUR, "linestyle": (0, (2.5, 2)), "linewidth": 0.8,
                              "path_effects": [withStroke(linewidth=2.4, foreground="white")]}  # seen on any line
    target = rows.groupby(["method", "step"])["target_density"].mean().reset_index()
    schedules = {tuple(t["target_density"].round(6)): t for _, t in target.groupby("method", sort=False)}
    for t in schedules.values():
        ax.plot(t["step"], t["target_density"], zorder=5, gid="target", **dashes)
    handles.append(Line2D([], [], label="target\n(schedule)", **dashes))
    for method in names:
        per_step = rows.loc[rows["method"] == method].groupby("step")[["density", "target_density"]].mean()
        measured, aimed = per_step.iloc[-1]
        if aimed > 0 and measured < OFF_TARGET * aimed:
            t = target[target["method"] == method]
            ax.plot(t["step"], t["target_density"], color=colours[method], linestyle="none", marker="x",
                    markersize=3.5, markeredgewidth=0.9, zorder=6, gid="off-target")
            ax.annotate(f"{method}: {measured:.3f}\n(target {aimed:.3f}, ×)", (t["step"].iloc[-1], measured),
                        xytext=(-6, -3), textcoords="offset points", ha="right", va="top", fontsize=5.5,
                        color=colours[method], zorder=5, bbox=WHITE_BOX)
    steps_axis(ax, int(rows["step"].max()))
    low = float(rows["density"].clip(lower=1e-4).min())
    if low < 0.1 * float(rows["density"].max()):
        ax.set_yscale("log")
        ticks = [v for v in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0) if low / 1.5 <= v]
        ax.set_yticks(ticks, [f"{v:g}" for v in ticks])
        ax.set_ylim(low / 1.5, 1.15)
        scale = ", log scale"
    else:
        ax.set_ylim(0, 1.05)
        scale = ""
    ax.set_ylabel(f"density{scale}\n(fraction of prunable weights kept)")
    note = seed_note(rows, "coloured: measured mean, band: {}")
    shared = "; one line: equal densities" if any(len(g) > 1 for g in groups.values()) else ""
    ax.set_title(f"{block_label(block)}\n{note}{faded_note(faded)}{shared}{same_note(names, chr(10))}")
    legend_right(ax, handles)
    return fig


def same_curves(rows: pd.DataFrame, y: str, order: Sequence[str]) -> dict[str, list[str]]:
    """Methods whose mean of y is equal (to 4 decimals) at every step, grouped under the first of them in order."""
    means = rows.groupby(["method", "step"])[y].mean().round(4)
    groups: dict[tuple, list[str]] = {}
    for method in order:
        groups.setdefault(tuple(means.loc[method].items()), []).append(method)
    return {group[0]: group for group in groups.values()}


def wrap_names(names: Sequence[str], width: int = 24) -> str:
    """'dense, scratch,\nshrink-perturb': a legend entry naming several methods, wrapped to a legend's width."""
    return textwrap.fill(", ".join(names), width, break_long_words=False, break_on_hyphens=False)


def cer_figure(block_cells: pd.DataFrame, block: dict, colours: dict,
               same: Sequence[tuple[str, str]] = ()) -> plt.Figure:
    """CER per method as a row of a forest plot, sorted (lowest CER on top): mean (dot) ± std (whisker) on a
    horizontal axis, dense's mean dotted, each mean written with its difference to dense. A strip of a dozen
    columns made the eye hunt for the order; one outlier (app-released, imp) set the scale of all. A mean past
    forest.OFF_SCALE times the bulk's reach from dense is a triangle at the edge with its numbers instead. A
    method of one seed is hollow, without a whisker, and its row says n = 1."""
    names = merged(method_order(block_cells["method"]), same)
    cells = block_cells[block_cells["method"].isin(names)]
    stats = cells.groupby("method").agg(mean=("cer", "mean"), std=("cer", "std"), n=("config_hash", "nunique"))
    stats = stats.reindex(list(names)).sort_values("mean", kind="stable")
    dense = stats.loc["dense", "mean"] if "dense" in stats.index else None
    centre = dense if dense is not None else float(stats["mean"].median())
    spread = stats["std"].where(stats["n"] > 1, 0.0).fillna(0.0)
    offsets = pd.DataFrame({"delta": stats["mean"] - centre, "ci_low": stats["mean"] - spread - centre,
                            "ci_high": stats["mean"] + spread - centre})
    scale = shared_scale(offsets.drop(index="dense", errors="ignore") if len(stats) > 1 else offsets)
    low, high = centre + scale.low, centre + scale.high + LABEL_ROOM * (scale.high - scale.low)  # room: labels
    fig, ax = plt.subplots(figsize=(WIDTH, 0.19 * len(stats) + 1.2), layout="constrained")
    if dense is not None:
        ax.axvline(dense, color=colours["dense"], linestyle=":", linewidth=0.8, zorder=1)
    y = {m: len(stats) - 1 - k for k, m in enumerate(stats.index)}
    for method, row in stats.iterrows():
        label = f"{row['mean']:,.0f}" + (f" ({row['mean'] - dense:+,.0f})" if dense is not None and
                                         method != "dense" else "")
        delta = row["mean"] - centre
        if abs(delta) > scale.limit:
            edge = high if delta > 0 else low  # on the frame: not a value of the axis
            off_scale_marker(ax, (edge, y[method]), ">" if delta > 0 else "<", colours[method],
                             label + (", n = 1" if row["n"] < 2 else ""), f"off-scale {method}")
            continue
        one = row["n"] < 2
        ax.errorbar([row["mean"]], [y[method]], xerr=None if one else [[row["std"]], [row["std"]]],
                    fmt=style(method).marker, color=colours[method], markersize=4.5, capsize=2, elinewidth=1,
                    markerfacecolor="white" if one else colours[method], zorder=3, gid=f"cer {method}")
        ax.annotate(label, (row["mean"] + (0 if one else row["std"]), y[method]), xytext=(4, 0),
                    textcoords="offset points", fontsize=5.5, va="center", zorder=4, bbox=WHITE_BOX)
    ax.set_yticks([y[m] for m in stats.index], [cer_label(names[m], int(stats.loc[m, "n"])) for m in stats.index],
                  fontsize=6)
    ax.set_ylim(-0.7, len(stats) - 0.3)
    ax.set_xlim(low, high)
    reach = centre + offsets["ci_high"][offsets["delta"].abs() <= scale.limit].max()  # the bulk's right end
    ticks = MaxNLocator(nbins=4).tick_values(low, reach)
    ax.set_xticks([t for t in ticks if low <= t <= reach])  # none out where the labels and arrows are
    ax.grid(axis="y", visible=False)
    ax.tick_params(axis="x", labelsize=6)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    steps = int(block_cells["megabatches"].iloc[0])
    ax.set_xlabel(f"CER: test errors summed over {steps} megabatches (lower is better)", fontsize=6.5)
    note = seed_note(cells, "point: mean ± {}")
    best = stats.drop(index="dense", errors="ignore")
    headline = (f"lowest except dense: {best.index[0]} {best['mean'].iloc[0]:,.0f}" +
                (f" (dense {dense:,.0f})" if dense is not None else "")) if not best.empty else ""
    ax.set_title(f"CER: {block_label(block)}\n{headline}\n{note}; label: mean (difference to dense, dotted)\n"
                 f"hollow: one seed; ▶ at the edge: off the scale, value written{same_note(names, chr(10))}",
                 fontsize=6.5)
    return fig


LABEL_ROOM = 0.3  # the CER axis reaches this fraction of its scale further right, for the labels of the means


def cer_label(name: str, seeds: int) -> str:
    """A method's row: its name ('app = osp' where merged), and 'n = 1' where one seed is all it has."""
    return name + (" (n = 1)" if seeds == 1 else "")
