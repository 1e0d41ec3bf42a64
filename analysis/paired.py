"""The figure reviewers read where curves overlap: the paired difference per megabatch with its t-interval.

Cells of one seed share the stream and the initialisation, so at every megabatch t the difference
d_s(t) = A_s(t) − B_s(t) is taken per seed (seeds only one of the two ran are left out) and drawn as its
mean with the t-interval band mean ± t(0.975, n−1) · sd/√n (stats.t_interval). Left: every method − dense;
right: app − every other method. A band around 0 is a difference the seeds cannot tell.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from .paper import comparisons, method_order
from .stats import t_interval
from .style import line_kwargs


def paired_by_step(rows: pd.DataFrame, a: str, b: str, metric: str = "test_accuracy") -> pd.DataFrame:
    """Per megabatch: mean of A − B over the seeds both ran, its t-interval (nan below 2 seeds) and n."""
    wide = rows[rows["method"].isin([a, b])].pivot_table(index=["step", "seed"], columns="method", values=metric)
    if a not in wide or b not in wide:
        return pd.DataFrame(columns=["step", "mean", "low", "high", "n"])
    diff = (wide[a] - wide[b]).dropna()
    out = []
    for step, d in diff.groupby(level="step"):
        interval = t_interval(d)
        out.append({"step": step, "mean": d.mean(), "low": interval.low, "high": interval.high, "n": len(d)})
    return pd.DataFrame(out)


def pairs(methods: list[str] | pd.Series) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(every method − dense) and (app − every other method but dense), in display order; app-released
    stands in for app where a block has no app."""
    order = method_order(methods)
    versus_dense = [(m, "dense") for m in order if m != "dense"] if "dense" in order else []
    apps = [a for a, _ in comparisons(order)]
    versus_app = [(a, b) for a, b in comparisons(order) if a == apps[0] and b != "dense"] if apps else []
    return versus_dense, versus_app


def counted(n: int, noun: str) -> str:
    """'1 seed', '3 seeds': a count with its noun (the figures' legends and titles)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def paired_figure(rows: pd.DataFrame, title: str, width: float, height: float) -> plt.Figure:
    """Two panels of per-megabatch paired differences in test accuracy, each line in its method's style
    (the left panel's line is the first method's; the right panel's the baseline's, with app's marker)."""
    versus_dense, versus_app = pairs(rows["method"])
    panels = [(p, name) for p, name in ((versus_dense, "method − dense"), (versus_app, "app − other method")) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), squeeze=False, sharey=False)
    seeds = rows.groupby("method")["seed"].nunique()
    for ax, (comparisons_, name) in zip(axes[0], panels):
        ax.axhline(0, color="black", linewidth=0.8, zorder=1)
        for a, b in comparisons_:
            d = paired_by_step(rows, a, b)
            if d.empty:
                continue
            shown = a if name == "method − dense" else b
            kwargs = line_kwargs(shown)
            ax.fill_between(d["step"], d["low"], d["high"], color=kwargs["color"], alpha=0.18, linewidth=0, zorder=2)
            ax.plot(d["step"], d["mean"], markersize=3.5, linewidth=1.2, zorder=3,
                    label=f"{a} − {b}" + (f" ({counted(int(d['n'].max()), 'seed')})"
                                          if d["n"].max() != seeds.max() else ""),
                    **kwargs)
        ax.set_xlabel("megabatch t")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # megabatches are whole
        ax.set_ylabel("paired difference in\ntest accuracy (points)")
        ax.set_title(name)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=6)
    n = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    fig.suptitle(f"{title}\npaired by seed ({n} seeds): mean, band = 95 % t-interval", fontsize=8)
    fig.tight_layout()
    return fig
