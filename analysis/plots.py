"""The paper's figures from the tidy frame: one small figure per block, sized for a paper column.

Each plot function returns the files it wrote (one per format) so the report can link them; all styling lives
in `_style` so the figures share fonts, colours per method and legend placement (outside the axes, so a
legend never hides a curve).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, and no window pops up in a terminal session

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .blocks import block_label, block_slug, iter_blocks  # noqa: E402
from .load import layer_densities  # noqa: E402
from .paper import method_order  # noqa: E402

WIDTH, HEIGHT = 3.5, 2.5  # inches: one column of a two-column paper
FORMATS = ("png", "pdf", "svg")
PRUNER_ORDER = ("snip", "magnitude", "random", "grasp", "synflow")


@dataclass(frozen=True)
class Plot:
    """One figure written to disk in one or more formats."""

    kind: str
    title: str
    paths: tuple[Path, ...]


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """Paper-sized fonts, a light grid, editable text in PDFs; restored afterwards."""
    rc = {"pdf.fonttype": 42, "savefig.dpi": 200, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
          "legend.title_fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7}
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"), plt.rc_context(rc):
        yield


def palette(methods: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """Fixed colour per method (by the global method order) so a method looks the same in every figure."""
    colours = sns.color_palette("colorblind", 10)
    picks = [0, 1, 2, 4, 3, 5, 6, 7, 8, 9]  # blue, orange, green, purple first: APP variants stay distinct
    return {m: colours[picks[i % len(picks)]] for i, m in enumerate(methods)}


def _save(fig: plt.Figure, out: Path, name: str, formats: Sequence[str]) -> tuple[Path, ...]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        fig.savefig(path, bbox_inches="tight", metadata={"Software": None} if fmt == "png" else None)
        paths.append(path)
    plt.close(fig)
    return tuple(paths)


def _legend_outside(ax: plt.Axes, title: str | None = "method") -> None:
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title=title)


def _seed_note(rows: pd.DataFrame, spread: str) -> str:
    """E.g. 'band: mean ± std over 3 seeds' (spread names what shows it), or a note that nothing can."""
    n = rows.groupby("method")["config_hash"].nunique()
    if n.max() < 2:
        return "one seed per method (no spread shown)"
    counts = str(n.min()) if n.min() == n.max() else f"{n.min()}-{n.max()}"
    return spread.format(f"std over {counts} seeds")


def _steps_axis(ax: plt.Axes, megabatches: int) -> None:
    ax.set_xlabel("megabatch t")
    ax.set_xlim(0.7, megabatches + 0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(megabatches, 10)))


def plot_curve(rows: pd.DataFrame, y: str, ylabel: str, block: dict, kind: str, out: Path,
               formats: Sequence[str], colours: dict) -> Plot:
    """A per-step metric vs megabatch, one line per method, band = std over seeds."""
    order = method_order(rows["method"])
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    sns.lineplot(data=rows, x="step", y=y, hue="method", hue_order=order, palette=colours, errorbar="sd",
                 marker="o", markersize=3, linewidth=1.2, ax=ax)
    _steps_axis(ax, int(rows["step"].max()))
    ax.set_ylabel(ylabel)
    ax.set_title(f"{block_label(block)}\n{_seed_note(rows, 'band: mean ± {}')}")
    _legend_outside(ax)
    return Plot(kind, block_label(block), _save(fig, out, f"{kind}_{block_slug(block)}", formats))


def plot_density(rows: pd.DataFrame, block: dict, out: Path, formats: Sequence[str], colours: dict) -> Plot:
    """Measured global density (solid) against each method's target schedule (dashed)."""
    order = method_order(rows["method"])
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    sns.lineplot(data=rows, x="step", y="density", hue="method", hue_order=order, palette=colours,
                 errorbar="sd", marker="o", markersize=3, linewidth=1.2, ax=ax)
    target = rows.groupby(["method", "step"], sort=False)["target_density"].mean().reset_index()
    for method, t in target.groupby("method", sort=False):
        ax.plot(t["step"], t["target_density"], linestyle="--", linewidth=1.2, color=colours[method], zorder=3)
    _steps_axis(ax, int(rows["step"].max()))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("density (fraction of\nprunable weights kept)")
    ax.set_title(block_label(block))
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="grey", linestyle="--", linewidth=0.9))
    labels.append("target")
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="method")
    return Plot("density", block_label(block), _save(fig, out, f"density_{block_slug(block)}", formats))


def plot_cer(block_cells: pd.DataFrame, block: dict, out: Path, formats: Sequence[str], colours: dict) -> Plot:
    """CER per method: bar = mean over seeds, whisker = std, dots = the individual seeds."""
    order = method_order(block_cells["method"])
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    sns.barplot(data=block_cells, x="method", y="cer", hue="method", order=order, hue_order=order,
                palette=colours, saturation=1, errorbar="sd", capsize=0.2, err_kws={"linewidth": 1}, legend=False,
                ax=ax)
    for i, method in enumerate(order):  # seeds spread evenly, not jittered at random: same file every run
        values = block_cells.loc[block_cells["method"] == method, "cer"].to_numpy()
        offsets = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(i + offsets, values, color="black", s=6, zorder=3)
    steps = int(block_cells["megabatches"].iloc[0])
    ax.set_xlabel("")
    ax.set_ylabel(f"CER (test errors summed\nover {steps} megabatches)")
    ax.set_title(f"{block_label(block)}\n{_seed_note(block_cells, 'bar: mean, whisker: {}, dots: seeds')}")
    ax.tick_params(axis="x", labelrotation=20)
    return Plot("cer", block_label(block), _save(fig, out, f"cer_{block_slug(block)}", formats))


def plot_layer_heatmap(layers: pd.DataFrame, group: dict, out: Path, formats: Sequence[str]) -> Plot:
    """Per-layer density (layer x megabatch, mean over seeds), one panel per pruner, shared colour scale."""
    pruners = sorted(layers["pruner"].unique(), key=lambda p: (PRUNER_ORDER.index(p) if p in PRUNER_ORDER else 99, p))
    names = list(dict.fromkeys(layers["layer"]))  # model order, as the result file lists them
    steps = int(layers["step"].max())
    panel_w = max(1.8, 0.3 * steps + 0.8)
    height = max(2.2, 0.13 * len(names) + 1.2)
    fig, axes = plt.subplots(1, len(pruners), figsize=(panel_w * len(pruners) + 0.8, height), sharey=True,
                             squeeze=False)
    annotate = steps * len(names) <= 80
    for i, (ax, pruner) in enumerate(zip(axes[0], pruners)):
        grid = (layers[layers["pruner"] == pruner]
                .pivot_table(index="layer", columns="step", values="layer_density", aggfunc="mean")
                .reindex(names))
        grid.index = [n.removesuffix(".weight") for n in grid.index]
        sns.heatmap(grid, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=annotate, fmt=".2f",
                    annot_kws={"fontsize": 5}, cbar=i == len(pruners) - 1,
                    cbar_kws={"label": "density (kept fraction)", "shrink": min(1.0, 4.0 / height)},
                    linewidths=0.3, linecolor="white")
        ax.set_title(pruner)
        ax.set_xlabel("megabatch t")
        ax.set_ylabel("layer" if i == 0 else "")
        ax.tick_params(axis="y", labelsize=6 if len(names) <= 30 else 4, rotation=0)
        ax.tick_params(axis="x", rotation=0)
    label = block_label(group)
    fig.suptitle(f"per-layer density: {label}", fontsize=8)
    fig.tight_layout()
    return Plot("layer_density", label, _save(fig, out, f"layers_{block_slug(group)}", formats))


def plot_gap_vs_T(group_cells: pd.DataFrame, group: dict, out: Path, formats: Sequence[str],
                  colours: dict) -> Plot:
    """Final and mean generalisation gap as a function of the stream length T."""
    order = method_order(group_cells["method"])
    fig, axes = plt.subplots(1, 2, figsize=(2 * WIDTH * 0.8, HEIGHT), sharey=True)
    for ax, (col, name) in zip(axes, [("final_gap", "final gap"), ("mean_gap", "mean gap over steps")]):
        sns.lineplot(data=group_cells, x="megabatches", y=col, hue="method", hue_order=order, palette=colours,
                     errorbar="sd", err_style="bars", err_kws={"capsize": 2}, marker="o", markersize=4,
                     linewidth=1.2, ax=ax, legend=ax is axes[-1])
        ax.set_xlabel("megabatches T")
        ax.set_ylabel("train - val accuracy (points)")
        ax.set_title(name)
        ax.set_xticks(sorted(group_cells["megabatches"].unique()))
    _legend_outside(axes[-1])
    label = block_label(group)
    fig.suptitle(f"gap vs T: {label}\n{_seed_note(group_cells, 'point: mean, whisker: {}')}", fontsize=8)
    fig.tight_layout()
    return Plot("gap_vs_T", label, _save(fig, out, f"gap_vs_T_{block_slug(group)}", formats))


def make_plots(steps: pd.DataFrame, cell_rows: pd.DataFrame, keys: Sequence[str], out: Path,
               formats: Sequence[str]) -> list[Plot]:
    """Every figure, from step rows and cell rows already assigned to blocks (blocks.assign_blocks)."""
    colours = palette(method_order(steps["method"]))
    plots: list[Plot] = []
    with _style():
        for block, rows in iter_blocks(steps, keys):
            plots.append(plot_curve(rows, "test_accuracy", "test accuracy (%)", block, "accuracy", out, formats,
                                    colours))
            plots.append(plot_curve(rows, "gap", "generalisation gap\n(train - val accuracy, points)", block,
                                    "gap", out, formats, colours))
            plots.append(plot_density(rows, block, out, formats, colours))
            plots.append(plot_cer(_select(cell_rows, block), block, out, formats, colours))
        layers = layer_densities(steps[steps["prunes"]])
        if not layers.empty:
            for group, rows in iter_blocks(layers, [k for k in keys if k != "pruner"] + ["method"]):
                plots.append(plot_layer_heatmap(rows, group, out, formats))
        t_keys = [k for k in keys if k != "megabatches"]
        for group, rows in (iter_blocks(cell_rows, t_keys) if t_keys else [({}, cell_rows)]):
            if rows["megabatches"].nunique() > 1:
                plots.append(plot_gap_vs_T(rows, group, out, formats, colours))
    return plots


def _select(frame: pd.DataFrame, block: dict) -> pd.DataFrame:
    """The rows of frame whose key columns equal the block's values."""
    mask = pd.Series(True, index=frame.index)
    for key, value in block.items():
        mask &= frame[key] == value
    return frame[mask]
