"""The gap of a one-seed block as each method's difference from dense, megabatch by megabatch.

With one seed a method's gap curve and dense's cross at almost every megabatch of a long stream, and no band
can say which crossings are noise: no seed-to-seed spread was measured in the block (and one borrowed from
another block would be a different experiment's). This figure draws nothing it does not have: the difference
itself at every megabatch (hollow, no band), its mean over the stream's second half (where the schedules have
settled) with that number in the panel's title, beside the standard deviation of the same differences from
megabatch to megabatch: a mean well inside that scatter is not told apart from noise by this run.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, and no window pops up in a terminal session

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .blocks import block_label  # noqa: E402
from .figure_kit import close_panels, steps_axis  # noqa: E402
from .paper import method_order  # noqa: E402
from .style import line_kwargs  # noqa: E402

REFERENCE = "dense"
COLUMNS = 4  # panels per row


def one_seed_block(rows: pd.DataFrame, reference: str = REFERENCE) -> bool:
    """Whether the block holds the reference and another method, every method with one cell, all of one seed
    (so each difference is paired): the blocks this figure is for (a block of several seeds has the paired
    figure's intervals instead)."""
    cells = rows.groupby("method")["config_hash"].nunique()
    return (reference in cells.index and len(cells) > 1 and bool((cells == 1).all())
            and rows["seed"].nunique() == 1)


def second_half(megabatches: int) -> int:
    """The first megabatch of the stream's second half: 17 of 32, 5 of 8, 2 of 2."""
    return megabatches // 2 + 1


def gap_differences(rows: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """Per method but the reference and megabatch: its gap minus the reference's at the same seed (columns method,
    step, diff)."""
    gap = rows.pivot_table(index="step", columns="method", values="gap", aggfunc="mean")
    diff = gap.drop(columns=reference).sub(gap[reference], axis=0)
    return diff.reset_index().melt(id_vars="step", var_name="method", value_name="diff").dropna()


def panel_title(method: str, diffs: pd.Series, first: int, last: int, reference: str = REFERENCE) -> str:
    """'osp − dense: -0.87 over t = 17-32\\n(sd over megabatches 0.95; n = 1)': the figure's number, and the
    scatter it is to be read against."""
    sd = diffs.std()
    spread = f"sd over megabatches {sd:.2f}" if not math.isnan(sd) else "one megabatch"
    return f"{method} − {reference}: {diffs.mean():+.2f} over t = {first}-{last}\n({spread}; n = 1: no interval)"


def gap_difference_figure(rows: pd.DataFrame, block: dict, colours: dict,
                          reference: str = REFERENCE) -> plt.Figure:
    """A panel per method: its gap minus the reference's at each megabatch (hollow markers, thin line: one seed,
    no band), zero, and the mean over the second half as a dashed segment; every panel on one y-scale."""
    diffs = gap_differences(rows, reference)
    order = method_order(diffs["method"])  # the reference is what each panel subtracts: no panel of its own
    megabatches = int(rows["megabatches"].max())
    first = second_half(megabatches)
    ncols = min(COLUMNS, len(order))
    nrows = math.ceil(len(order) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols + 0.4, 1.7 * nrows + 0.8), sharex=True,
                             sharey=True, squeeze=False, layout="constrained")
    for ax, method in zip(axes.flat, order):
        d = diffs[diffs["method"] == method].sort_values("step")
        late = d.loc[d["step"] >= first, "diff"]
        ax.axhline(0, color="black", linewidth=0.8, zorder=1)
        ax.plot(d["step"], d["diff"], **{**line_kwargs(method), "color": colours[method]}, markerfacecolor="white",
                markersize=3, linewidth=0.8, zorder=3, gid="difference")
        ax.plot([first, megabatches], [late.mean()] * 2, color=colours[method], linestyle="--", linewidth=1.4,
                zorder=2, gid="late mean")
        ax.set_title(panel_title(method, late, first, megabatches, reference), fontsize=7)
        steps_axis(ax, megabatches)
        ax.tick_params(labelsize=6)
    close_panels(axes, len(order), "megabatch t", fontsize=8)  # no empty panel; an x axis under each column
    for ax in axes[:, 0]:
        ax.set_ylabel(f"gap − {reference}'s (points)", fontsize=7)
    fig.suptitle(f"generalisation gap (train − val) minus {reference}'s, per megabatch: {block_label(block)}\n"
                 f"one seed each (hollow); dashed: the mean over t = {first}-{megabatches}, to be read against the "
                 "sd of the differences; one y-scale", fontsize=8)
    return fig
