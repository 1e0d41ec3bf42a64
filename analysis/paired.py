"""The figure reviewers read where curves overlap: the paired difference per megabatch with its t-interval.

Cells of one seed share the stream and the initialisation, so at every megabatch t the difference
d_s(t) = A_s(t) − B_s(t) is taken per seed (seeds only one of the two ran are left out) and drawn as its
mean with the t-interval band mean ± t(0.975, n−1) · sd/√n (stats.t_interval), each seed as a thin line.
Small multiples, one panel per comparison: app − each other method, then each method − dense. The panels of a
group share one y-scale, set by their mean lines, so that the eye compares heights, not tick labels; a panel
whose mean lies far beyond the others' (app − app-released, −20 points, beside app − osp, +0.8: past OFF_SCALE
times the group's median reach) keeps a scale of its own and says so in its title. Bands and seed lines may run
past a shared scale (a 2-seed t-interval at megabatch 1 is ±15): they are cut at the panel's edge. A comparison
of one seed has no band: its line is thin with hollow markers and the panel says n = 1. A band around 0 is a
difference the seeds cannot tell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from .figure_kit import corner_note
from .paper import comparisons, method_order
from .stats import t_interval
from .style import line_kwargs

COLUMNS = 5  # panels per row: five 1.6-inch panels fit a page's width
OFF_SCALE = 3.0  # a panel whose mean reaches past this many times its group's median reach gets its own scale
PANEL_W, PANEL_H = 1.6, 1.3  # inches


def paired_seeds(rows: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy") -> pd.DataFrame:
    """A − B per megabatch (index) and seed (columns), over the seeds both ran."""
    wide = rows[rows["method"].isin([a, b])].pivot_table(index=["step", "seed"], columns="method", values=metric)
    if a not in wide or b not in wide:
        return pd.DataFrame()
    return (wide[a] - wide[b]).dropna().unstack("seed")


def paired_by_step(rows: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy") -> pd.DataFrame:
    """Per megabatch: mean of A − B over the seeds both ran, its t-interval (nan below 2 seeds) and n."""
    seeds = paired_seeds(rows, a, b, metric)
    out = []
    for step, d in seeds.iterrows():
        d = d.dropna()
        interval = t_interval(d)
        out.append({"step": step, "mean": d.mean(), "low": interval.low, "high": interval.high, "n": len(d)})
    return pd.DataFrame(out, columns=["step", "mean", "low", "high", "n"])


def pairs(methods: list[str] | pd.Series, references: Sequence[str] = ()) -> tuple[list[tuple[str, str]],
                                                                                  list[tuple[str, str]]]:
    """(every method − dense) and (app − every other method but dense), in display order; app-released
    stands in for app where a block has no app, and the first reference the block holds for app where
    references are given (paper.comparisons)."""
    order = method_order(methods)
    versus_dense = [(m, "dense") for m in order if m != "dense"] if "dense" in order else []
    apps = [a for a, _ in comparisons(order, references)]
    versus_app = [(a, b) for a, b in comparisons(order, references) if a == apps[0] and b != "dense"] if apps else []
    return versus_dense, versus_app


def counted(n: int, noun: str) -> str:
    """'1 seed', '3 seeds': a count with its noun (the figures' legends and titles)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class PairedPanel:
    """One comparison's panel: A − B per megabatch (by_step: mean, t-interval, n) and per seed."""

    a: str
    b: str
    by_step: pd.DataFrame
    seeds: pd.DataFrame

    @property
    def label(self) -> str:
        return f"{self.a} − {self.b}"

    @property
    def n(self) -> int:
        return int(self.by_step["n"].max())

    @property
    def reach(self) -> float:
        """How far from zero its mean line goes."""
        return float(self.by_step["mean"].abs().max())

    def ylim(self) -> tuple[float, float]:
        """This panel's own y-range: its band, its seeds' lines and zero, with a margin."""
        values = [0.0, *self.by_step[["mean", "low", "high"]].stack().dropna(), *self.seeds.stack().dropna()]
        return _padded(min(values), max(values))


def _padded(low: float, high: float) -> tuple[float, float]:
    pad = 0.12 * (high - low) if high > low else 0.5
    return low - pad, high + pad


def shared_ylim(panels: Sequence[PairedPanel]) -> tuple[tuple[float, float], set[str]]:
    """The y-range a group's panels share (zero and every mean line within OFF_SCALE times the group's median
    reach, padded) and the labels of the panels past it, which keep their own scale."""
    reaches = pd.Series([p.reach for p in panels])
    limit = OFF_SCALE * float(reaches.median()) if float(reaches.median()) > 0 else math.inf
    own = {p.label for p in panels if p.reach > limit}
    means = [v for p in panels if p.label not in own for v in p.by_step["mean"].dropna()]
    return _padded(min([0.0, *means]), max([0.0, *means])), own


def paired_panels(rows: pd.DataFrame, references: Sequence[str] = ()) -> list[tuple[str, list[PairedPanel]]]:
    """The figure's groups of panels: ('app − each other method', ...), ('each method − dense', ...); a
    comparison without a common seed has no panel."""
    versus_dense, versus_app = pairs(rows["method"], references)
    groups = []
    for name, comparisons_ in ((f"{versus_app[0][0]} − each other method" if versus_app else "", versus_app),
                               ("each method − dense", versus_dense)):
        panels = [PairedPanel(a, b, paired_by_step(rows, a, b), paired_seeds(rows, a, b)) for a, b in comparisons_]
        panels = [p for p in panels if not p.by_step.empty]
        if panels:
            groups.append((name, panels))
    return groups


def panel_title(panel: PairedPanel, seeds_max: int) -> str:
    """'app − osp'; a scope on its own line where the title would run into the next panel's, and the seed count
    where it is not the figure's ('app − rigl\n(erk-dense-first), 1 seed')."""
    title = panel.label if len(panel.label) <= 22 else panel.label.replace(" (", "\n(")
    return title + (f", {counted(panel.n, 'seed')}" if panel.n != seeds_max else "")


def _draw(ax: plt.Axes, panel: PairedPanel, colour_of: str, seeds_max: int,
          ylim: tuple[float, float] | None) -> None:
    """One panel: zero, each seed thin, the band, the mean thick; on the group's ylim, or its own where None. One
    seed is drawn weaker: a thin line, hollow markers, no band, and "n = 1" written in the panel."""
    kwargs = line_kwargs(colour_of)
    d = panel.by_step
    ax.axhline(0, color="black", linewidth=0.8, zorder=1)
    for seed in panel.seeds.columns:
        ax.plot(panel.seeds.index, panel.seeds[seed], color=kwargs["color"], linewidth=0.5, alpha=0.55,
                zorder=2, gid="seed")
    ax.fill_between(d["step"], d["low"], d["high"], color=kwargs["color"], alpha=0.2, linewidth=0, zorder=2)
    if panel.n == 1:
        kwargs = {**kwargs, "markerfacecolor": "white", "linewidth": 0.7, "alpha": 0.8}
    ax.plot(d["step"], d["mean"], markersize=3, zorder=3, gid="mean", label=panel.label,
            **{"linewidth": 1.3, **kwargs})
    ax.set_ylim(*(ylim or panel.ylim()))
    if panel.n == 1:
        corner_note(ax, "n = 1")
    ax.set_title(panel_title(panel, seeds_max) + ("\n(own scale)" if ylim is None else ""), fontsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))  # megabatches are whole
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.tick_params(labelsize=6, pad=1)


def paired_figure(rows: pd.DataFrame, title: str, references: Sequence[str] = ()) -> plt.Figure:
    """Small multiples of per-megabatch paired differences in test accuracy, one panel per comparison, the
    panels of a group on one y-scale (shared_ylim); a panel's lines are in the style of the method compared
    against app (or of the method compared with dense)."""
    groups = paired_panels(rows, references)
    seeds_max = int(rows.groupby("method")["seed"].nunique().max())
    ncols = min(COLUMNS, max(len(panels) for _, panels in groups))
    heights = [math.ceil(len(panels) / ncols) for _, panels in groups]
    fig = plt.figure(figsize=(PANEL_W * ncols + 0.5, PANEL_H * sum(heights) + 0.35 * len(groups) + 0.6),
                     layout="constrained")
    subfigs = fig.subfigures(len(groups), 1, height_ratios=[h + 0.3 for h in heights], squeeze=False)[:, 0]
    for subfig, (name, panels), nrows in zip(subfigs, groups, heights):
        axes = subfig.subplots(nrows, ncols, squeeze=False)
        subfig.suptitle(name, fontsize=8, x=0.0, ha="left")
        ylim, own = shared_ylim(panels)
        for i, ax in enumerate(axes.flat):
            if i >= len(panels):
                ax.set_visible(False)
                continue
            panel = panels[i]
            _draw(ax, panel, panel.a if panel.b == "dense" else panel.b, seeds_max,
                  None if panel.label in own else ylim)
            if i % ncols == 0:
                ax.set_ylabel("Δ test accuracy\n(points)", fontsize=6)
            if i + ncols >= len(panels):
                ax.set_xlabel("megabatch t", fontsize=6)
    fig.suptitle(f"{title}\npaired differences by seed ({counted(seeds_max, 'seed')}): thick line = mean,\n"
                 f"band = 95 % t-interval, thin lines = each seed (cut at the edge where they run past it);\n"
                 f"one y-scale per group but where a panel says 'own scale'; thin line, hollow markers = 1 seed",
                 fontsize=8)
    return fig
