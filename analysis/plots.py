"""The paper's figures from the tidy frame: one small figure per block, sized for a paper column.

Each plot function returns the files it wrote (one per format) so the report can link them; all styling lives
in `_style` so the figures share fonts, colours per method and legend placement (outside the axes, so a
legend never hides a curve). One FigureWriter per report gives every figure its own file name.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, and no window pops up in a terminal session

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from almabench.names import cut_bytes
from almabench.results.store import write_atomic  # noqa: E402

from .blocks import block_label, block_slug, iter_blocks  # noqa: E402
from .figure_pool import render  # noqa: E402
from .figure_sets import COSTS, FIGURE_SETS  # noqa: E402
from .forest import MAX_COLUMNS, forest_figure  # noqa: E402
from .load import layer_densities  # noqa: E402
from .paired import counted, paired_figure, paired_panels  # noqa: E402
from .paper import METHOD_ORDER, base_method, method_order  # noqa: E402
from .regime import regime_figure  # noqa: E402
from .style import line_kwargs, style  # noqa: E402
from .tables import delta_table  # noqa: E402

WIDTH, HEIGHT = 3.5, 2.5  # inches: one column of a two-column paper
FORMATS = ("png", "pdf", "svg")
PRUNER_ORDER = ("snip", "magnitude", "random", "grasp", "synflow")


@dataclass(frozen=True)
class Plot:
    """One figure written to disk in one or more formats."""

    kind: str
    title: str
    paths: tuple[Path, ...]


@dataclass
class FigureWriter:
    """Saves every figure of one report, each under a name no other figure of it has.

    Two blocks can slug alike (blocks.block_slug hashes lossy names, but a user may still pick colliding ones);
    a second figure must then get its own file, or the report would count it and link to the first one's.
    Names are compared case-folded: on macOS and Windows `App.png` overwrites `app.png`.
    """

    out: Path
    formats: Sequence[str]
    taken: set[str] = field(default_factory=set)

    def unique(self, name: str) -> str:
        """name, or name-2, name-3, ... if an earlier figure of this report already has it."""
        candidate, i = name, 1
        while candidate.casefold() in self.taken:
            i += 1
            candidate = f"{name}-{i}"
        self.taken.add(candidate.casefold())
        return candidate

    def save(self, fig: plt.Figure, name: str) -> tuple[Path, ...]:
        """Write fig in every format under a unique name and close it."""
        return save_figure(fig, self.out, self.unique(name), self.formats)

    def job(self, kind: str, title: str, name: str, draw: Callable[..., plt.Figure], *args: Any,
            folder: str = "") -> FigureJob:
        """A figure to draw later (FigureJob.render), its unique name taken now: names follow the order the
        jobs are planned in, whichever process draws them and in whatever order. folder: the study's subfolder
        (study_folder), "" for the figures folder itself."""
        return FigureJob(kind, title, self.unique(name), draw, args, self.out / folder if folder else self.out,
                         tuple(self.formats))


def study_folder(rows: pd.DataFrame, several: bool) -> str:
    """The subfolder of figures/ a figure of these rows goes into: the results folder (study) its cells' files
    lie in, where the report spans several studies and these rows lie in one; "" otherwise (one study: no
    subfolder; rows across studies: the figures folder itself)."""
    if not several or "path" not in rows.columns:
        return ""
    studies = {Path(p).parent.name for p in rows["path"].dropna().unique()}
    return cut_bytes(re.sub(r"[^\w.+-]+", "-", studies.pop()).strip("-.") or "study", 100) if len(studies) == 1 \
        else ""


def several_studies(rows: pd.DataFrame) -> bool:
    """Whether the rows' files lie in more than one results folder (a report over docs/results)."""
    return "path" in rows.columns and rows["path"].map(lambda p: str(Path(p).parent)).nunique() > 1


def save_figure(fig: plt.Figure, out: Path, name: str, formats: Sequence[str]) -> tuple[Path, ...]:
    """Write fig as out/name.FORMAT for every format and close it."""
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        metadata = {"Software": None} if fmt == "png" else None  # a link at path is replaced, not written through
        # the report folder is the root: a figures/ that leads out of it is one line, nothing written
        save = partial(fig.savefig, format=fmt, bbox_inches="tight", metadata=metadata)
        write_atomic(path, save, out.parent)
        paths.append(path)
    plt.close(fig)
    return tuple(paths)


@dataclass(frozen=True)
class FigureJob:
    """One figure of a report, planned in the report's process and drawn wherever render runs (a worker of
    figure_pool, or here): draw(*args) makes it, in the report's style, saved as out/name.FORMAT."""

    kind: str
    title: str
    name: str
    draw: Callable[..., plt.Figure]
    args: tuple[Any, ...]
    out: Path
    formats: tuple[str, ...]

    @property
    def cost(self) -> float:
        """Its kind's rough drawing time (figure_sets.COSTS), to hand out costly figures first."""
        return COSTS.get(self.kind, 1.0)

    def render(self) -> Plot:
        """Draw and save the figure; its Plot."""
        with _style():
            return Plot(self.kind, self.title, save_figure(self.draw(*self.args), self.out, self.name, self.formats))


# Fonts with CJK glyphs, used where installed for text DejaVu Sans lacks (a dataset named データ.npz).
FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Source Han Sans", "WenQuanYi Zen Hei",
                  "Droid Sans Fallback", "Hiragino Sans", "Microsoft YaHei", "MS Gothic", "Arial Unicode MS")


def _font_family() -> list[str]:
    """sans-serif first, then each installed fallback font (matplotlib >= 3.6 falls back glyph by glyph)."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ["sans-serif", *(f for f in FALLBACK_FONTS if f in installed)]


@contextlib.contextmanager
def _style() -> Iterator[None]:
    """Paper-sized fonts, a light grid, editable text in PDFs; restored afterwards. A glyph no installed
    font has is drawn as a box; matplotlib's warning for it (one per glyph and figure) is silenced, since the
    file names and report.md carry the full names anyway. Text is never parsed as mathtext: a method or dataset
    named `$\\foo$` is drawn as written, not handed to a parser that raises."""
    rc = plt.rc_context({"text.parse_math": False, "pdf.fonttype": 42, "savefig.dpi": 200, "axes.titlesize": 8,
                         "axes.labelsize": 8,
                         "legend.fontsize": 7, "legend.title_fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7})
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"), rc, warnings.catch_warnings():
        plt.rcParams["font.family"] = _font_family()
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
        yield


def palette(methods: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """Each method's fixed colour (style.STYLES), whatever other methods a figure holds."""
    return {m: style(m).colour for m in methods}


TARGET_COLOUR = "black"  # the density schedule: not a method's colour, drawn over the measured lines


def _legend_outside(ax: plt.Axes, title: str | None = "method") -> None:
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title=title)


def _seed_counts(rows: pd.DataFrame, by: tuple[str, ...] = ("method",)) -> str:
    """How many seeds (cells) each group (a method, by default) has: '3', or '2-3' where groups differ."""
    n = rows.groupby(list(by))["config_hash"].nunique()
    return str(n.min()) if n.min() == n.max() else f"{n.min()}-{n.max()}"


def _seed_note(rows: pd.DataFrame, spread: str, by: tuple[str, ...] = ("method",), unit: str = "method") -> str:
    """E.g. 'band: mean ± std over 3 seeds' (spread names what shows it), or a note that nothing can; the
    seeds are counted per group of `by` (a figure's unit: a method's line, or a (method, τ) point)."""
    if rows.groupby(list(by))["config_hash"].nunique().max() < 2:
        return f"one seed per {unit} (no spread shown)"
    return spread.format(f"std over {_seed_counts(rows, by)} seeds")


def _steps_axis(ax: plt.Axes, megabatches: int) -> None:
    ax.set_xlabel("megabatch t")
    ax.set_xlim(0.7, megabatches + 0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(megabatches, 10)))


MANY_METHODS = 5  # more methods than this on one axis: the highlighted ones in colour, the others grey and thin
FADED = "0.62"  # the colour of a method not highlighted


def emphasis(methods: Sequence[str], highlight: Sequence[str] | None = None) -> set[str]:
    """The methods a curve figure draws in grey and thin (no band): none where at most MANY_METHODS share
    the axis and no highlight was chosen; otherwise every method but the highlighted ones (the paper's methods,
    paper.METHOD_ORDER, by default)."""
    if highlight is None and len(methods) <= MANY_METHODS:
        return set()
    chosen = set(METHOD_ORDER if highlight is None else highlight)
    faded = {m for m in methods if m not in chosen}
    return faded if len(faded) < len(methods) else set()


def _faded_note(faded: set[str]) -> str:
    return "; grey, thin, no band: other methods" if faded else ""


def _mean_lines(ax: plt.Axes, rows: pd.DataFrame, y: str, order: Sequence[str], colours: dict,
                bounds: tuple[float, float] | None, faded: frozenset[str] | set[str] = frozenset()) -> list[Line2D]:
    """Per method: mean over seeds per step (line, dots) and a mean ± std band clipped to bounds (an accuracy
    band past 100 % or a density band below 0 shows values no run can have). A faded method is grey, thin,
    bandless and drawn below the others. Returns the legend handles."""
    stats = rows.groupby(["method", "step"])[y].agg(["mean", "std"]).reset_index()
    handles = []
    for method in order:
        m = stats[stats["method"] == method]
        kwargs = {**line_kwargs(method), "color": colours[method]}
        if method in faded:
            kwargs["color"] = FADED
            handles += ax.plot(m["step"], m["mean"], markersize=2.5, linewidth=0.7, label=method, zorder=1.5,
                               gid="faded", **kwargs)
            continue
        low, high = m["mean"] - m["std"].fillna(0), m["mean"] + m["std"].fillna(0)
        if bounds is not None:
            low, high = low.clip(*bounds), high.clip(*bounds)
        ax.fill_between(m["step"], low, high, color=colours[method], alpha=0.2, linewidth=0, zorder=1)
        handles += ax.plot(m["step"], m["mean"], markersize=3.5, linewidth=1.2, label=method, zorder=3, **kwargs)
    return handles


def _legend_right(ax: plt.Axes, handles: list) -> None:
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="method",
              handlelength=2.6)


def curve_figure(rows: pd.DataFrame, y: str, ylabel: str, block: dict, colours: dict,
                 bounds: tuple[float, float] | None = None, highlight: Sequence[str] | None = None) -> plt.Figure:
    """A per-step metric vs megabatch, one line per method, band = std over seeds (clipped to bounds); with many
    methods (or a highlight chosen) the others grey and thin (emphasis)."""
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    order = method_order(rows["method"])
    faded = emphasis(order, highlight)
    handles = _mean_lines(ax, rows, y, order, colours, bounds, faded)
    _steps_axis(ax, int(rows["step"].max()))
    ax.set_ylabel(ylabel)
    clipped = f", clipped to [{bounds[0]:g}, {bounds[1]:g}]" if bounds is not None else ""
    ax.set_title(f"{block_label(block)}\n{_seed_note(rows, 'band: mean ± {}' + clipped)}{_faded_note(faded)}")
    _legend_right(ax, handles)
    return fig


GAP_COLUMNS = 5  # panels per row of the gap figure


def gap_figure(rows: pd.DataFrame, block: dict, colours: dict, reference: str = "dense") -> plt.Figure:
    """The generalisation gap after each megabatch as small multiples: a panel per method, dense drawn grey in
    each as the reference, every panel on one y-scale. One axis of ten overlapping ± std bands could not be read;
    here each method is seen against dense alone. A method of one seed has a thin line with hollow markers, no
    band, and says n = 1."""
    order = [m for m in method_order(rows["method"]) if m != reference] or [reference]
    stats = rows.groupby(["method", "step"])["gap"].agg(["mean", "std"]).reset_index()
    seeds = rows.groupby("method")["config_hash"].nunique()
    ncols = min(GAP_COLUMNS, len(order))
    nrows = math.ceil(len(order) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.75 * ncols + 0.4, 1.45 * nrows + 0.8), sharex=True,
                             sharey=True, squeeze=False, layout="constrained")
    base = stats[stats["method"] == reference]
    for ax, method in zip(axes.flat, order):
        if not base.empty and method != reference:
            ax.fill_between(base["step"], base["mean"] - base["std"].fillna(0), base["mean"] + base["std"].fillna(0),
                            color="0.88", linewidth=0, zorder=1)
            ax.plot(base["step"], base["mean"], color="black", linewidth=0.9, zorder=2, gid="reference")
        m = stats[stats["method"] == method]
        kwargs = {**line_kwargs(method), "color": colours[method]}
        if seeds.get(method, 0) < 2:
            kwargs |= {"markerfacecolor": "white", "linewidth": 0.8}
            ax.text(0.04, 0.93, "n = 1", transform=ax.transAxes, fontsize=6, va="top", color="0.3", gid="n = 1")
        else:
            ax.fill_between(m["step"], m["mean"] - m["std"], m["mean"] + m["std"], color=colours[method],
                            alpha=0.25, linewidth=0, zorder=2)
        ax.plot(m["step"], m["mean"], markersize=3, zorder=3, gid="mean", label=method, **{"linewidth": 1.3, **kwargs})
        ax.set_title(method if len(method) <= 22 else method.replace(" (", "\n("), fontsize=7)
        ax.tick_params(labelsize=6, pad=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5))
    for ax in axes.flat[len(order):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("gap (points)", fontsize=6)
    for ax in axes[-1, :]:
        ax.set_xlabel("megabatch t", fontsize=6)
    against = f"black, grey band: {reference}; " if not base.empty else ""
    fig.suptitle(f"generalisation gap (train − validation accuracy): {block_label(block)}\n{against}colour: the "
                 f"method; {_seed_note(rows, 'band: mean ± {}')}; one y-scale", fontsize=8)
    return fig


OFF_TARGET = 0.5  # a method whose final density is below this fraction of its target has its target marked


def density_figure(rows: pd.DataFrame, block: dict, colours: dict,
                   highlight: Sequence[str] | None = None) -> plt.Figure:
    """Measured global density per method (coloured, band = std) over the target schedules, drawn once each in
    black dashes under the measured lines (a method on schedule hides its target). A method that falls far below
    its target (app-released's compounding) gets its target marked in its colour with crosses and its final
    numbers written. A log axis where the densities span a decade."""
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    order = method_order(rows["method"])
    faded = emphasis(order, highlight)
    handles = _mean_lines(ax, rows, "density", order, colours, (0.0, 1.0), faded)
    dashes: dict[str, Any] = {"color": TARGET_COLOUR, "linestyle": (0, (3, 2)), "linewidth": 0.8}
    target = rows.groupby(["method", "step"])["target_density"].mean().reset_index()
    schedules = {tuple(t["target_density"].round(6)): t for _, t in target.groupby("method", sort=False)}
    for t in schedules.values():
        ax.plot(t["step"], t["target_density"], zorder=0.5, gid="target", **dashes)
    handles.append(Line2D([], [], label="target\n(schedule)", **dashes))
    for method in order:
        per_step = rows.loc[rows["method"] == method].groupby("step")[["density", "target_density"]].mean()
        measured, aimed = per_step.iloc[-1]
        if aimed > 0 and measured < OFF_TARGET * aimed:
            t = target[target["method"] == method]
            ax.plot(t["step"], t["target_density"], color=colours[method], linestyle="none", marker="x",
                    markersize=3.5, markeredgewidth=0.9, zorder=4, gid="off-target")
            ax.annotate(f"{method}: {measured:.3f}\n(target {aimed:.3f}, ×)", (t["step"].iloc[-1], measured),
                        xytext=(-6, -3), textcoords="offset points", ha="right", va="top", fontsize=5.5,
                        color=colours[method], zorder=5)
    _steps_axis(ax, int(rows["step"].max()))
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
    note = _seed_note(rows, "coloured: measured mean, band: {}")
    ax.set_title(f"{block_label(block)}\n{note}{_faded_note(faded)}")
    _legend_right(ax, handles)
    return fig


def cer_figure(block_cells: pd.DataFrame, block: dict, colours: dict) -> plt.Figure:
    """CER per method as points: mean (large dot, labelled) ± std (whiskers), seeds as small dots, on an axis
    fitted to the values. Bars from 0 made 160, 163 and 165 look alike; the differences are what matters, so
    the axis does not start at 0 (the title says so) and each mean is written out, with its difference to
    dense where the block has it."""
    order = method_order(block_cells["method"])
    stats = block_cells.groupby("method")["cer"].agg(["mean", "std"]).reindex(order)
    reference = stats.loc["dense", "mean"] if "dense" in stats.index else None
    seeds = block_cells.groupby("method")["config_hash"].nunique()
    ticks = [tick_label(m, int(seeds[m])) for m in order]
    column = max(0.55, 0.065 * max(len(line) for t in ticks for line in t.split("\n")))  # inches: a tick's width
    fig, ax = plt.subplots(figsize=(max(WIDTH, column * len(order) + 1.6), HEIGHT))
    if reference is not None:
        ax.axhline(reference, color=colours["dense"], linestyle=":", linewidth=0.8, zorder=1)
    for i, method in enumerate(order):  # seeds spread evenly, not jittered at random: same file every run
        values = block_cells.loc[block_cells["method"] == method, "cer"].to_numpy(dtype=float)
        if len(values) > 1:  # one seed is its mean: no second dot
            ax.scatter(i + 0.22 + np.linspace(-0.12, 0.12, len(values)), values, color=colours[method], s=7,
                       alpha=0.6, linewidths=0, zorder=2)
        mean, std = stats.loc[method, "mean"], stats.loc[method, "std"]
        ax.errorbar(i, mean, yerr=0 if pd.isna(std) else std, fmt=style(method).marker, color=colours[method],
                    markersize=5, capsize=3, elinewidth=1, zorder=3)
        diff = f"\n({mean - reference:+,.0f})" if reference is not None and method != "dense" else ""
        # dense's label sits just above its own dotted line, not on it; any other label the line crosses hides
        # it behind an opaque box (drawn above the line), so no number is struck through
        on_line = method == "dense" and reference is not None
        ax.annotate(f"{mean:,.0f}{diff}", (i, mean), xytext=(-6, 2 if on_line else 0), textcoords="offset points",
                    ha="right", va="bottom" if on_line else "center", fontsize=6, linespacing=1.0, zorder=4,
                    bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"})
    ax.set_xticks(range(len(order)), ticks)
    ax.set_xlim(-0.8, len(order) - 0.4)
    ax.margins(y=0.2)
    steps = int(block_cells["megabatches"].iloc[0])
    ax.set_ylabel(f"CER (test errors summed\nover {steps} megabatches)")
    note = _seed_note(block_cells, "mean ± {} (small dots: seeds)")
    labels = "label: mean (its difference to dense, dotted)" if reference is not None else "label: mean"
    ax.set_title(f"{block_label(block)}\n{note}\n{labels}; y-axis does not start at 0")
    return fig


def tick_label(method: str, seeds: int) -> str:
    """A method's tick under a column of points: its scope on a line of its own ('rigl\n(erk-dense-first)'), so
    neighbouring labels do not run into each other, and 'n = 1' where one seed is all it has."""
    return method.replace(" (", "\n(") + ("\nn = 1" if seeds == 1 else "")


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
    from almabench.methods import METHODS

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


DODGE = 0.035  # log10 units between the points of methods at one τ (about 8 % of a density apart)


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
              .agg(density=("density", "mean"), **{f"{c}_mean": (c, "mean") for c, _ in columns},
                   **{f"{c}_std": (c, "std") for c, _ in columns})
              .reset_index())
    points = points.assign(_r=points["method"].map(rank)).sort_values(["_r", "density"]).drop(columns="_r")
    points = points.reset_index(drop=True)
    points["x"] = dodged(points)
    fig, axes = plt.subplots(1, 2, figsize=(2 * WIDTH, HEIGHT + 0.2))
    handles = []
    for ax, (col, name) in zip(axes, columns):
        for method in order:
            p = points[points["method"] == method]
            kwargs = {**line_kwargs(method), "color": colours[method]}
            container = ax.errorbar(p["x"], p[f"{col}_mean"], yerr=p[f"{col}_std"].fillna(0), markersize=4,
                                    linewidth=1.2, capsize=2, elinewidth=0.9, label=method, **kwargs)
            if ax is axes[-1]:
                handles.append(container)
        dense = rows.loc[rows["method"] == "dense", col]
        if not dense.empty:
            ax.axhline(dense.mean(), color=colours["dense"], linestyle=":", linewidth=0.8, zorder=0)
        ax.set_xscale("log")
        ticks = sorted(points.groupby(density_clusters(points["density"]))["density"].mean())
        ax.set_xticks(ticks, [f"{t:.3g}" if i == 0 or t / ticks[i - 1] > 1.3 else "" for i, t in enumerate(ticks)])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.tick_params(axis="x", labelsize=6)
        ax.set_xlim(min(ticks) / 1.5, max(ticks) * 1.5)
        for t, at in points[points["tau"].notna()].groupby("tau"):
            ax.annotate(f"τ={t:g}", (at["density"].median(), 1.0), xycoords=("data", "axes fraction"),
                        xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=6)
        ax.set_xlabel("final density (log; ticks: as measured)")
        ax.set_ylabel(name)
    axes[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title="method")
    note = _seed_note(rows, "point: mean, whisker: {}", by=("method", "tau"), unit="point")
    fig.suptitle(f"accuracy vs density: {block_label(group)}\n{note}; points at one density dodged sideways",
                 fontsize=8)
    fig.tight_layout()
    return fig


def _dash(method: str) -> str | tuple:
    """seaborn's dash spec of the method's line style: '' for solid, the on/off lengths otherwise."""
    linestyle = style(method).linestyle
    return "" if linestyle == "-" else linestyle[1]


FOREST_GROUP = ("dataset", "arch", "megabatches", "stream_images")  # a forest figure's blocks share these


def forest_jobs(deltas: pd.DataFrame, keys: Sequence[str], writer: FigureWriter,
                cell_rows: pd.DataFrame | None = None) -> list[FigureJob]:
    """forest.forest_figure for each (dataset, arch, T) of the deltas, its blocks side by side (at most
    MAX_COLUMNS to a figure), saved as forest_<group>[-k]; into the study folder of its blocks' cells where
    cell_rows (the report's, spanning several studies) are given."""
    deltas = deltas[deltas["delta"].notna()]
    if deltas.empty:
        return []
    group_keys = [k for k in keys if k in FOREST_GROUP]
    column_keys = [k for k in keys if k not in FOREST_GROUP]
    jobs = []
    for group, rows in _groups(deltas, group_keys):
        blocks = [block for block, _ in iter_blocks(rows, keys)]
        for start in range(0, len(blocks), MAX_COLUMNS):
            name = f"forest_{block_slug(group) if group else 'all'}"
            label = block_label(group) if group else "all cells"
            chunk = blocks[start:start + MAX_COLUMNS]
            folder = "" if cell_rows is None else study_folder(
                pd.concat([_select(cell_rows, b) for b in chunk]), several=True)
            jobs.append(writer.job("forest", label, name, forest_figure, rows, chunk, group, column_keys,
                                   folder=folder))
    return jobs


def block_jobs(rows: pd.DataFrame, block_cells: pd.DataFrame, block: dict, writer: FigureWriter, colours: dict,
               kinds: frozenset[str], highlight: Sequence[str] | None,
               references: Sequence[str], folder: str = "") -> list[FigureJob]:
    """One block's figures among kinds, in the report's order: accuracy, gap, density, CER, paired differences."""
    label, slug = block_label(block), block_slug(block)
    planned = {
        "accuracy": lambda: (curve_figure, rows, "test_accuracy", "test accuracy (%)", block, colours, (0.0, 100.0),
                             highlight),
        "gap": lambda: (gap_figure, rows, block, colours),
        "density": lambda: (density_figure, rows, block, colours, highlight),
        "cer": lambda: (cer_figure, block_cells, block, colours),
        # a paired figure needs a comparison with a seed both methods ran
        "paired": lambda: (paired_figure, rows, label, references) if paired_panels(rows, references) else None,
    }
    jobs = []
    for kind, plan in planned.items():
        drawn = plan() if kind in kinds else None
        if drawn is not None:
            jobs.append(writer.job(kind, label, f"{kind}_{slug}", *drawn, folder=folder))
    return jobs


def _groups(frame: pd.DataFrame, keys: Sequence[str]) -> Iterator[tuple[dict, pd.DataFrame]]:
    """iter_blocks over keys, or the whole frame as one group where no key is left."""
    return iter_blocks(frame, keys) if keys else iter([({}, frame)])


def plan_figures(steps: pd.DataFrame, cell_rows: pd.DataFrame, keys: Sequence[str], out: Path,
                 formats: Sequence[str], deltas: pd.DataFrame | None = None,
                 highlight: Sequence[str] | None = None, references: Sequence[str] = (),
                 kinds: frozenset[str] = frozenset(FIGURE_SETS["all"])) -> list[FigureJob]:
    """The figures of kinds (figure_sets), planned from step rows and cell rows already assigned to blocks
    (blocks.assign_blocks); deltas are the report's delta table (computed here where not given); references the
    methods whose differences the forest and paired figures show (paper.comparisons; default APP's)."""
    deltas = delta_table(cell_rows, keys, references) if deltas is None and "forest" in kinds else deltas
    colours = palette(method_order(steps["method"]))
    writer = FigureWriter(out, formats)
    several = several_studies(cell_rows)
    jobs: list[FigureJob] = []
    if "forest" in kinds and deltas is not None:
        jobs += forest_jobs(deltas, keys, writer, cell_rows if several else None)
    if kinds & {"accuracy", "gap", "density", "cer", "paired"}:
        for block, rows in iter_blocks(steps, keys):
            cells_of = _select(cell_rows, block) if "cer" in kinds else cell_rows.iloc[0:0]
            jobs += block_jobs(rows, cells_of, block, writer, colours, kinds, highlight, references,
                               study_folder(rows, several))
    if "layer_density" in kinds:
        layers = layer_densities(steps[steps["prunes"]])
        if not layers.empty:
            for group, rows in iter_blocks(layers, [k for k in keys if k != "pruner"] + ["method"]):
                group = _with_pruners(group, keys, rows["pruner"])
                jobs.append(writer.job("layer_density", block_label(group), f"layers_{block_slug(group)}",
                                       layer_figure, rows, group, folder=study_folder(rows, several)))
    if "gap_vs_T" in kinds:
        for group, rows in _groups(cell_rows, [k for k in keys if k != "megabatches"]):
            if rows["megabatches"].nunique() > 1:
                jobs.append(writer.job("gap_vs_T", block_label(group), f"gap_vs_T_{block_slug(group)}",
                                       gap_vs_T_figure, rows, group, colours, folder=study_folder(rows, several)))
    if "accuracy_vs_density" in kinds:
        for group, rows in _groups(cell_rows, [k for k in keys if k != "tau"]):
            if rows.loc[rows["prunes"], "tau"].nunique() > 1:
                jobs.append(writer.job("accuracy_vs_density", block_label(group),
                                       f"accuracy_vs_density_{block_slug(group)}", accuracy_density_figure, rows,
                                       group, colours, folder=study_folder(rows, several)))
    return jobs


def make_plots(steps: pd.DataFrame, cell_rows: pd.DataFrame, keys: Sequence[str], out: Path,
               formats: Sequence[str], deltas: pd.DataFrame | None = None,
               highlight: Sequence[str] | None = None, references: Sequence[str] = (),
               kinds: frozenset[str] = frozenset(FIGURE_SETS["all"]), jobs: int = 1) -> list[Plot]:
    """Every figure of kinds (plan_figures), drawn on `jobs` processes (figure_pool.render)."""
    return render(plan_figures(steps, cell_rows, keys, out, formats, deltas, highlight, references, kinds), jobs)


def regime_jobs(settings: Sequence[tuple[dict, pd.DataFrame]], keys: Sequence[str], out: Path,
                formats: Sequence[str], versus_dense: bool = False) -> list[FigureJob]:
    """regime.regime_figure for each setting regime.drawn_settings found, saved as regime_<setting> (or, of each
    method against dense, regime-vs-dense_<setting>)."""
    writer = FigureWriter(out, formats)
    kind, what = ("regime-vs-dense", "each method − dense") if versus_dense else ("regime", "regime map")
    return [writer.job(kind, f"{what}: {block_label(setting) if setting else 'all cells'}",
                       f"{kind}_{block_slug(setting) if setting else 'all'}", regime_figure, rows, setting, keys,
                       WIDTH * 1.3, HEIGHT, versus_dense)
            for setting, rows in settings]


def plot_regimes(settings: Sequence[tuple[dict, pd.DataFrame]], keys: Sequence[str], out: Path,
                 formats: Sequence[str], versus_dense: bool = False) -> list[Plot]:
    """regime_jobs, drawn here."""
    return render(regime_jobs(settings, keys, out, formats, versus_dense))


def _with_pruners(group: dict, keys: Sequence[str], pruners: pd.Series) -> dict:
    """A heatmap's group with the pruners of its panels ('snip+magnitude') where the block keys have `pruner`
    (at the end otherwise), so its title and file name say which pruners it shows; without one for a method that
    ignores the pruner (rigl's heatmap is not a SNIP heatmap)."""
    if not uses_pruner(str(group["method"])):
        return {k: v for k, v in group.items() if k != "pruner"}
    order = [*keys, "method"] if "pruner" in keys else [*keys, "method", "pruner"]
    joined = {**group, "pruner": "+".join(pruner_order(pruners))}
    return {k: joined[k] for k in order if k in joined}


def _select(frame: pd.DataFrame, block: dict) -> pd.DataFrame:
    """The rows of frame whose key columns equal the block's values (an unset value, NaN, matches NaN)."""
    mask = pd.Series(True, index=frame.index)
    for key, value in block.items():
        mask &= frame[key].isna() if pd.isna(value) else frame[key] == value
    return frame[mask]
