"""Per-layer density of a block: which layers each method's masks empty and when, every method of the block in
one figure (a layer × megabatch panel per method and pruner, one colour scale, one layer axis), so that
comparing methods is reading across a row of panels, not flipping between files."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, and no window pops up in a terminal session

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .blocks import block_label  # noqa: E402
from .paper import base_method, method_order  # noqa: E402

PRUNER_ORDER = ("snip", "magnitude", "random", "grasp", "synflow")
PANELS_PER_ROW = 6  # more panels than this wrap onto further rows (12 methods: two rows of six)
CMAP = "viridis"


def pruner_order(pruners: Sequence[str] | pd.Series) -> list[str]:
    """Distinct pruners, the shipped ones in PRUNER_ORDER, others after them alphabetically."""
    return sorted(set(pruners), key=lambda p: (PRUNER_ORDER.index(p) if p in PRUNER_ORDER else 99, p))


def layer_labels(names: Sequence[str]) -> list[str]:
    """Heatmap rows: each weight's name without the '.weight' every row has (and a DataParallel 'module.').
    A model built as one flat nn.Sequential (convnet) names its weights '0.weight', '4.weight', ...: cut to
    '0', '4' they would read as row numbers, so those keep the full name and say which prunable layer they are
    ('4.weight (layer 2)')."""
    labels = []
    for i, name in enumerate(names, start=1):
        short = name.removeprefix("module.").removesuffix(".weight")
        labels.append(f"{name} (layer {i})" if re.fullmatch(r"[\d.]*", short) else short)
    return labels


def uses_pruner(method: str) -> bool:
    """Whether a method's masks come from the config's pruner (osp, app: yes; gmp, imp, rigl, set: no, they
    ignore it; dense prunes nothing). A method almabench does not know is taken to use it."""
    from almabench.methods import METHODS  # here, not at the top: the methods import torch, the report need not

    name = base_method(method)
    if name not in METHODS.names():
        return True
    cls = METHODS.get(name)
    return bool(cls.prunes) and "pruner" not in cls.ignores


def layer_panels(layers: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(method, pruner, rows) per panel, methods in display order and each method's pruners in PRUNER_ORDER;
    a method that ignores the pruner is one panel whatever pruner its configs named."""
    panels = []
    for method in method_order(layers["method"]):
        rows = layers[layers["method"] == method]
        if not uses_pruner(method):
            panels.append((method, "", rows))
            continue
        panels += [(method, p, rows[rows["pruner"] == p]) for p in pruner_order(rows["pruner"])]
    return panels


def panel_title(method: str, pruner: str, seeds: int) -> str:
    """'app · snip\\nn = 3': the pruner only where the method uses it (rigl's panel is not a SNIP panel)."""
    return f"{method} · {pruner}\nn = {seeds}" if pruner else f"{method}\nn = {seeds}"


def density_grid(rows: pd.DataFrame, names: Sequence[str], steps: int) -> np.ndarray:
    """Layer × megabatch mean density over seeds (NaN where a layer or megabatch was not recorded)."""
    grid = rows.pivot_table(index="layer", columns="step", values="layer_density", aggfunc="mean")
    return grid.reindex(index=list(names), columns=range(1, steps + 1)).to_numpy(float)


def _annotate_final(ax: plt.Axes, grid: np.ndarray, steps: int) -> None:
    """The final megabatch's densities written on its column: the numbers the panels are compared by."""
    for row, value in enumerate(grid[:, -1]):
        if not math.isnan(value):
            ax.text(steps, row, f"{value:.2f}", ha="center", va="center", fontsize=4.5, gid="final",
                    color="white" if value < 0.55 else "black")


def layer_figure(layers: pd.DataFrame, group: dict) -> plt.Figure:
    """Every prunable layer's density (rows) after each megabatch (columns), mean over seeds, one panel per
    method (and pruner, for a method that uses one) of the block, PANELS_PER_ROW to a row, all on one colour
    scale (0 to 1) and the block's layer order; the final megabatch's values are written on their column where
    the cells are wide enough. A panel of one seed says so (n = 1, title in grey, its frame dashed)."""
    names = list(dict.fromkeys(layers["layer"]))  # model order, as the result file lists them
    steps = int(layers["step"].max())
    panels = layer_panels(layers)
    columns = min(len(panels), PANELS_PER_ROW)
    rows_of_panels = math.ceil(len(panels) / columns)
    panel_w = min(2.6, max(1.1, 0.16 * steps + 0.3))
    panel_h = max(1.0, 0.13 * len(names) + 0.6)
    label_w = 0.06 * max(len(s) for s in layer_labels(names)) + 0.5
    fig, axes = plt.subplots(rows_of_panels, columns, squeeze=False, sharex=True, sharey=True, layout="constrained",
                             figsize=(panel_w * columns + label_w + 0.9, panel_h * rows_of_panels + 0.9))
    annotate = steps <= 12 and len(names) <= 30
    images = []
    for ax, (method, pruner, rows) in zip(axes.flat, panels):
        grid = density_grid(rows, names, steps)
        image = ax.imshow(grid, aspect="auto", cmap=CMAP, vmin=0, vmax=1, interpolation="nearest",
                          extent=(0.5, steps + 0.5, len(names) - 0.5, -0.5))
        image.set_gid(f"{method}|{pruner}")
        images.append(image)
        seeds = rows["config_hash"].nunique()
        ax.set_title(panel_title(method, pruner, seeds), fontsize=7, color="black" if seeds > 1 else "0.45")
        if seeds < 2:
            for spine in ax.spines.values():
                spine.set(linestyle="--", edgecolor="0.45")
        if annotate:
            _annotate_final(ax, grid, steps)
        ax.grid(False)
    for ax in axes.flat[len(panels):]:
        ax.remove()  # no empty panels
    _layer_axes(axes, len(panels), names, steps)
    fig.colorbar(images[0], ax=list(axes.flat[:len(panels)]), label="density (kept fraction)", aspect=30)
    final = "; numbers: the final megabatch" if annotate else ""
    fig.suptitle(f"per-layer density: {block_label(group)}\nmean over seeds (n per panel){final}", fontsize=8)
    return fig


def _layer_axes(axes: np.ndarray, drawn: int, names: Sequence[str], steps: int) -> None:
    """Every layer named on the first column (all of them: matplotlib would thin a tall axis), the megabatches
    under every drawn panel (a wrapped row's last panels have none below them)."""
    axes[0][0].set_yticks(range(len(names)), layer_labels(names))
    axes[0][0].xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(steps, 8)))
    for row in axes:
        row[0].tick_params(axis="y", labelsize=6 if len(names) <= 30 else 4)
    for ax in axes.flat[:drawn]:
        ax.tick_params(axis="x", labelbottom=True, labelsize=6)
    axes[0][0].figure.supxlabel("megabatch t", fontsize=8)
    axes[0][0].figure.supylabel("layer (weight name)", fontsize=8)
