"""Which figures a report draws, planned as FigureJobs: per block (curves, CER, paired), per forest group, per
block's layers, and across blocks (gap over T, accuracy against density, the regime maps). figure_pool draws
them; each figure's code lives in its own module (curves, gap_difference, layer_figure, cross_block, forest, paired,
regime)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from .blocks import block_label, block_slug, iter_blocks
from .cross_block import accuracy_density_figure, gap_vs_T_figure
from .curves import cer_figure, curve_figure, density_figure, gap_figure
from .figure_files import FigureJob, FigureWriter, Plot, several_studies, study_folder
from .figure_kit import HEIGHT, WIDTH, palette
from .figure_pool import render
from .figure_sets import FIGURE_SETS
from .forest import MAX_COLUMNS, forest_figure
from .gap_difference import gap_difference_figure, one_seed_block
from .layer_figure import layer_figure
from .load import layer_densities
from .paired import paired_figure, paired_panels
from .paper import method_order
from .regime import regime_figure
from .tables import delta_table, identical_pairs

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
               references: Sequence[str], folder: str = "", same: Sequence[tuple[str, str]] = ()) -> list[FigureJob]:
    """One block's figures among kinds, in the report's order: accuracy, gap (and, in a block of one seed a method,
    its difference from dense), density, CER, paired differences; same: the block's comparisons the delta table
    marks one computation (tables.identical_pairs), drawn once."""
    label, slug = block_label(block), block_slug(block)
    planned = {
        "accuracy": lambda: (curve_figure, rows, "test_accuracy", "test accuracy (%)", block, colours, (0.0, 100.0),
                             highlight, same),
        "gap": lambda: (gap_figure, rows, block, colours, "dense", same),
        # one seed a method: no interval anywhere, so the gap is drawn as the difference from dense it is read for
        "gap_difference": lambda: (gap_difference_figure, rows, block, colours) if one_seed_block(rows) else None,
        "density": lambda: (density_figure, rows, block, colours, highlight, same),
        "cer": lambda: (cer_figure, block_cells, block, colours, same),
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
    curves = kinds & {"accuracy", "gap", "density", "cer"}  # these say which methods are one computation
    deltas = delta_table(cell_rows, keys, references) if deltas is None and ("forest" in kinds or curves) else deltas
    colours = palette(method_order(steps["method"]))
    writer = FigureWriter(out, formats)
    several = several_studies(cell_rows)
    jobs: list[FigureJob] = []
    if "forest" in kinds and deltas is not None:
        jobs += forest_jobs(deltas, keys, writer, cell_rows if several else None)
    if kinds & {"accuracy", "gap", "gap_difference", "density", "cer", "paired"}:
        for block, rows in iter_blocks(steps, keys):
            cells_of = _select(cell_rows, block) if "cer" in kinds else cell_rows.iloc[0:0]
            same = identical_pairs(_select(deltas, block)) if curves and deltas is not None else []
            jobs += block_jobs(rows, cells_of, block, writer, colours, kinds, highlight, references,
                               study_folder(rows, several), same)
    if "layer_density" in kinds:
        layers = layer_densities(steps[steps["prunes"]])
        if not layers.empty:
            # one figure per block, every method's panels in it; the pruner is a panel's, not the block's
            for group, rows in _groups(layers, [k for k in keys if k != "pruner"]):
                jobs.append(writer.job("layer_density", block_label(group) if group else "all cells",
                                       f"layers_{block_slug(group)}", layer_figure, rows, group,
                                       folder=study_folder(rows, several)))
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


def _select(frame: pd.DataFrame, block: dict) -> pd.DataFrame:
    """The rows of frame whose key columns equal the block's values (an unset value, NaN, matches NaN)."""
    mask = pd.Series(True, index=frame.index)
    for key, value in block.items():
        mask &= frame[key].isna() if pd.isna(value) else frame[key] == value
    return frame[mask]
