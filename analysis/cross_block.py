"""Figures across blocks: the gap at each stream length T, and accuracy and gap against density over τ."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, and no window pops up in a terminal session

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from .blocks import block_label  # noqa: E402
from .figure_kit import HEIGHT, WIDTH, off_scale_marker, seed_note  # noqa: E402
from .paper import method_order  # noqa: E402
from .style import line_kwargs, style  # noqa: E402


def gap_vs_T_figure(group_cells: pd.DataFrame, group: dict, colours: dict) -> plt.Figure:
    """Final and mean generalisation gap at each stream length T: a point per method and T (mean over seeds, whisker
    ± std), methods dodged side by side, no line between the Ts (two or three stream lengths are not a trend).
    A point of one seed is hollow, without a whisker."""
    order = method_order(group_cells["method"])
    ts = sorted(group_cells["megabatches"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(2 * WIDTH * 0.8, HEIGHT), sharey=True)
    width = 0.7 / max(1, len(order))
    for ax, (col, name) in zip(axes, [("final_gap", "final gap"), ("mean_gap", "mean gap over steps")]):
        for k, method in enumerate(order):
            stats = group_cells[group_cells["method"] == method].groupby("megabatches")[col].agg(["mean", "std",
                                                                                                 "count"])
            for t, row in stats.iterrows():
                x = ts.index(t) + (k - (len(order) - 1) / 2) * width
                one = row["count"] < 2
                ax.errorbar([x], [row["mean"]], yerr=None if one else [[row["std"]], [row["std"]]],
                            fmt=style(method).marker, color=colours[method], markersize=4, capsize=2, elinewidth=1,
                            markerfacecolor="white" if one else colours[method], gid=f"{method} T={t}",
                            label=method if t == stats.index[0] else None)
        ax.set_xticks(range(len(ts)), [f"T = {t}" for t in ts])
        ax.set_xlim(-0.6, len(ts) - 0.4)
        ax.set_ylabel("train - val accuracy (points)")
        ax.set_title(name)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="method")
    fig.suptitle(f"gap vs T: {block_label(group)}\npoint: mean, whisker: ± std over the seeds; hollow: one seed",
                 fontsize=8)
    fig.tight_layout()
    return fig


DODGE = 0.05  # log10 units between the points of methods at one τ (about 12 % of a density apart)


NEAR = 1.15  # densities within this factor of each other share a tick and are dodged around it


def density_clusters(density: pd.Series) -> pd.Series:
    """A cluster number per point: points whose densities lie within NEAR of the cluster's smallest share one."""
    cluster, first, out = -1, None, {}
    for i, d in density.sort_values(kind="stable").items():
        if first is None or d > first * NEAR:
            cluster, first = cluster + 1, d
        out[i] = cluster
    return pd.Series(out).reindex(density.index)


def dodged(points: pd.DataFrame) -> pd.Series:
    """x of each (method, τ) point: its mean density, moved sideways (on the log axis) where several points sit
    at one density, in the frame's (method) order around their mean, so that no point or whisker hides another."""
    x = points["density"].copy()
    for _, at in points.groupby(density_clusters(points["density"])):
        if len(at) > 1:
            offsets = (np.arange(len(at)) - (len(at) - 1) / 2) * DODGE
            x[at.index] = at["density"].mean() * 10 ** offsets
    return x


FAR = 8.0  # a point further than this many median absolute deviations from the median is drawn at the edge


def far_points(values: pd.Series) -> pd.Series:
    """Whether each value lies far from the bulk: more than FAR median absolute deviations from the median. One
    collapsed method (app-released at 57 % where the rest lie within 67-72 %) would otherwise set the scale. The
    forest's rule (a multiple of the median distance from zero) has no zero here: the spread is the yardstick."""
    deviation = (values - values.median()).abs()
    mad = float(deviation.median())
    return deviation > FAR * mad if mad > 0 else pd.Series(False, index=values.index)


def _off_scale_points(ax: plt.Axes, far: pd.DataFrame, col: str, colours: dict) -> None:
    """The far points of a panel as triangles at the bottom or top edge, at their density, value written; the
    y-limits are the other points' (with room at that edge)."""
    if far.empty:
        return
    ax.relim(visible_only=True)
    ax.autoscale_view(scalex=False)
    low, high = ax.get_ylim()
    room = 0.12 * (high - low)
    below = far[f"{col}_mean"] < low
    ax.set_ylim(low - room * below.any(), high + room * (~below).any())
    low, high = ax.get_ylim()
    for (_, r), down in zip(far.iterrows(), below):
        one = ", n = 1" if r["n"] < 2 else ""
        off_scale_marker(ax, (r["x"], low if down else high), "v" if down else "^", colours[r["method"]],
                         f"{r['method']}: {r[col + '_mean']:.1f}{one}", f"off-scale {r['method']}")


def accuracy_density_figure(group_cells: pd.DataFrame, group: dict, colours: dict) -> plt.Figure:
    """Final test accuracy and mean gap against final density, one line per method through its τ values (log x):
    whether pruning more helps, and whether it closes the gap. Each point is the mean over its seeds (whisker: std)
    in the method's marker, dodged where methods share a τ; the ticks are the densities measured, each τ written
    above its points. Dense is its one point at density 1, with a dotted line at its mean."""
    rows = group_cells.drop_duplicates("config_hash")  # a dense cell joins every τ's block; draw it once
    order = method_order(rows["method"])
    columns = [("final_test_accuracy", "final test accuracy (%)"), ("mean_gap", "mean gap over steps (points)")]
    rank = {m: i for i, m in enumerate(order)}
    tau = rows["tau"].where(rows["prunes"])  # dense's τ means nothing: it is its own column at density 1
    points = (rows.assign(tau=tau, density=rows["final_density"])
              .groupby(["method", "tau"], dropna=False)
              .agg(density=("density", "mean"), n=("config_hash", "nunique"),
                   **{f"{c}_mean": (c, "mean") for c, _ in columns},
                   **{f"{c}_std": (c, "std") for c, _ in columns})
              .reset_index())
    points = points.assign(_r=points["method"].map(rank)).sort_values(["_r", "density"]).drop(columns="_r")
    points = points.reset_index(drop=True)
    points["x"] = dodged(points)
    fig, axes = plt.subplots(1, 2, figsize=(2 * WIDTH, HEIGHT + 0.2))
    handles, offs = [], False
    for ax, (col, name) in zip(axes, columns):
        far = far_points(points[f"{col}_mean"])
        offs |= bool(far.any())
        for method in order:
            p = points[(points["method"] == method) & ~far]
            kwargs = {**line_kwargs(method), "color": colours[method]}
            container = ax.errorbar(p["x"], p[f"{col}_mean"], yerr=p[f"{col}_std"].fillna(0), markersize=3.5,
                                    linewidth=1.2, capsize=2, elinewidth=0.9, label=method, **kwargs)
            one = p[p["n"] < 2]  # one seed: hollow over the filled marker, and no whisker (its std is NaN)
            ax.plot(one["x"], one[f"{col}_mean"], marker=style(method).marker, markersize=3.5, linestyle="none",
                    markerfacecolor="white", markeredgecolor=colours[method], zorder=3, gid=f"n = 1 {method}")
            if ax is axes[-1]:
                handles.append(container)
        _off_scale_points(ax, points[far], col, colours)
        dense = rows.loc[rows["method"] == "dense", col]
        if not dense.empty:
            ax.axhline(dense.mean(), color=colours["dense"], linestyle=":", linewidth=0.8, zorder=0)
        ax.set_xscale("log")
        ticks = sorted(points.groupby(density_clusters(points["density"]))["density"].mean())
        ax.set_xticks(ticks, [f"{t:.3g}" if i == 0 or t / ticks[i - 1] > 1.3 else "" for i, t in enumerate(ticks)])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.tick_params(axis="x", labelsize=6)
        ax.set_xlim(min(ticks) / 1.5, max(ticks) * 1.5)
        for t, at in points[points["tau"].notna()].groupby("tau"):
            ax.annotate(f"τ={t:g}", (at["density"].median(), 1.0), xycoords=("data", "axes fraction"),
                        xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=6)
        ax.set_xlabel("final density (log; ticks: as measured)")
        ax.set_ylabel(name)
    axes[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="method")
    note = seed_note(rows, "point: mean, whisker: {}", by=("method", "tau"), unit="point")
    edge = "; ▼ at an edge: off the scale, value written" if offs else ""
    fig.suptitle(f"accuracy vs density: {block_label(group)}\n{note}; points at one density dodged sideways; hollow: "
                 f"one seed{edge}", fontsize=8)
    fig.tight_layout()
    return fig
