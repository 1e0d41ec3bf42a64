"""Per-layer density: which layers a method's masks empty, as a heatmap of layer × megabatch per pruner."""

from __future__ import annotations

import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, and no window pops up in a terminal session

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .blocks import block_label  # noqa: E402
from .paired import counted  # noqa: E402
from .paper import base_method  # noqa: E402

PRUNER_ORDER = ("snip", "magnitude", "random", "grasp", "synflow")


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


def layer_figure(layers: pd.DataFrame, group: dict) -> plt.Figure:
    """Per-layer density (layer x megabatch, mean over seeds), one panel per pruner, shared colour scale.
    Every row is labelled with its layer (seaborn would thin the labels of a tall heatmap). A group without a
    `pruner` (a method that ignores it) titles its one panel by its seed count alone."""
    pruners = pruner_order(layers["pruner"])
    names = list(dict.fromkeys(layers["layer"]))  # model order, as the result file lists them
    steps = int(layers["step"].max())
    panel_w = max(1.8, 0.3 * steps + 0.8)
    height = max(2.2, 0.13 * len(names) + 1.2)
    fig, axes = plt.subplots(1, len(pruners), figsize=(panel_w * len(pruners) + 0.8, height), sharey=True,
                             squeeze=False)
    annotate = steps * len(names) <= 80
    seeds = layers.groupby("pruner")["config_hash"].nunique()
    for i, (ax, pruner) in enumerate(zip(axes[0], pruners)):
        grid = (layers[layers["pruner"] == pruner]
                .pivot_table(index="layer", columns="step", values="layer_density", aggfunc="mean")
                .reindex(names))
        sns.heatmap(grid, ax=ax, vmin=0, vmax=1, cmap="viridis", annot=annotate, fmt=".2f",
                    annot_kws={"fontsize": 5}, cbar=i == len(pruners) - 1, yticklabels=layer_labels(names),
                    cbar_kws={"label": "density (kept fraction)", "shrink": min(1.0, 4.0 / height)},
                    linewidths=0.3, linecolor="white")
        ax.set_title(f"{pruner} ({counted(seeds[pruner], 'seed')})" if "pruner" in group
                     else counted(seeds[pruner], "seed"))
        ax.set_xlabel("megabatch t")
        ax.set_ylabel("layer (weight name)" if i == 0 else "")
        ax.tick_params(axis="y", labelsize=6 if len(names) <= 30 else 4, rotation=0)
        ax.tick_params(axis="x", rotation=0)
    counts = str(seeds.min()) if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
    fig.suptitle(f"per-layer density: {block_label(group)}\nmean over {counts} seed{'' if counts == '1' else 's'}",
                 fontsize=8)
    fig.tight_layout()
    return fig
