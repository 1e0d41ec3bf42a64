"""The report folder: tables (md, csv, tex), figures, and report.md that ties them to the exact cells used.

report.md names every cell by its config hash and file, lists the config values shared by all cells and those
that vary, and the data fingerprints, so any number in a table can be traced to the runs behind it. Nothing in
it depends on the clock, so two reports over the same files are identical.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import almabench
from almabench.results.store import write_atomic

from .blocks import (
    BLOCK_KEYS,
    assign_blocks,
    block_label,
    check_code,
    check_environment,
    check_homogeneous,
    scope_in_method,
)
from .figure_index import figure_index
from .figure_pool import render as render_figures
from .figure_sets import FIGURE_SETS, figure_kinds, left_out
from .load import CONFIG_KEYS, Warn, cells, printable_labels, warn_stderr
from .paper import method_order
from .plots import Plot, plan_figures, regime_jobs
from .regime import VERSUS_DENSE, drawn_settings, regime_table, regime_trends, rung_label, varying_rung_keys
from .render import (
    aligned,
    block_tables,
    markdown_table,
    regime_display,
    to_latex,
    to_markdown,
    to_text,
    trends_display,
)
from .summary import grouped_warnings, summary_text
from .tables import csv_frame, delta_table, summary_table

FIGURES = "figures"
ENV_COLUMNS = ("env_almabench", "env_code", "env_git_commit", "env_torch", "env_device", "env_device_name",
               "env_torch_threads", "env_precision", "env_compile")


@dataclass
class Report:
    """What build_report wrote, and the terminal rendering of its tables."""

    out: Path
    text: str
    files: list[Path] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    blocks: int = 0
    overview: str = ""  # the terminal's summary of many blocks (summary.summary_text)
    grouped_warnings: list[str] = field(default_factory=list)  # this report's warnings, each once (with a count)


def _check_plugin_code(cell_rows: pd.DataFrame, warn: Warn) -> None:
    """One warning per cell made by other plugin code than the code registered in this process under the same
    name (an installed package, or a --plugin file imported here): its numbers are not the installed code's."""
    if "env_plugins" not in cell_rows.columns or cell_rows["env_plugins"].isna().all():
        return  # no plugin made a cell: nothing to compare, and no reason to import the registries (and torch)
    from almabench.extend.stale import installed_code_changes

    for _, row in cell_rows.iterrows():
        change = installed_code_changes(row["env_plugins"])
        if change:
            warn(f"{row['method']} seed {row['seed']} ({row['config_hash']}): made by other plugin code than the "
                 f"code installed now: {change}")


def build_report(frame: pd.DataFrame, out: str | Path, formats: Sequence[str] = ("png", "pdf"),
                 keys: Sequence[str] = BLOCK_KEYS, warn: Warn = warn_stderr, source: str | Path | None = None,
                 notes: Sequence[str] = (), highlight: Sequence[str] | None = None,
                 references: Sequence[str] = (), figures: frozenset[str] | str = FIGURE_SETS["all"],
                 jobs: int | None = 1) -> Report:
    """Write tables, figures and report.md for a loaded results frame (load.load_results) into out.

    notes are earlier warnings (e.g. files the loader skipped) to list in report.md next to the new ones;
    highlight the methods whose accuracy and gap panels come first and whose density lines are coloured
    (figure_kit.emphasis; None: the default rule); references
    the methods whose differences the delta tables, forest and paired figures show (default: APP's). The regime
    map stays APP's. figures are the kinds drawn (figure_sets), or a --figures value (figure_sets.figure_kinds: its
    `default` depends on the number of blocks), on `jobs` processes (figure_pool.render; None: every core).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    warnings = list(notes)

    def record(message: str) -> None:
        warnings.append(message)
        warn(message)

    keys = list(keys)
    frame = scope_in_method(printable_labels(frame))
    cell_rows = assign_blocks(cells(frame), keys)
    check_homogeneous(cell_rows, keys, record)
    check_environment(cell_rows, keys, record)
    check_code(cell_rows, keys, record)
    _check_plugin_code(cells(frame), record)
    _check_fingerprints(cells(frame), record)
    _check_plugins(cells(frame), record)
    summary, deltas = summary_table(cell_rows, keys), delta_table(cell_rows, keys, references)
    tables = block_tables(summary, deltas, keys)

    regime = regime_table(summary, delta_table(cell_rows, keys) if references else deltas, keys)
    settings = drawn_settings(regime, keys)
    controls = [m for m, _ in VERSUS_DENSE]
    versus_dense = drawn_settings(regime_table(summary, delta_table(cell_rows, keys, controls), keys, VERSUS_DENSE)
                                  if settings else regime.iloc[0:0], keys)
    regime_md = _regime_markdown(settings, keys)

    own = warnings[len(notes):]
    if isinstance(figures, str):
        left_out_line = left_out(figures, len(tables))
        figures = figure_kinds(figures, len(tables))
    else:
        left_out_line = ""
    regime_line = (f"regime map{'s' if len(settings) > 1 else ''} of {len(settings)} setting"
                   f"{'s' if len(settings) > 1 else ''}: {out}/tables.md, regime.csv\n") if settings else ""
    figures_line = f"{left_out_line}\n" if left_out_line else ""
    report = Report(out=out, text=to_text(tables) + _regime_text(settings, keys) + figures_line, blocks=len(tables),
                    overview=summary_text(tables, deltas, keys, own, str(out)) + regime_line + figures_line,
                    grouped_warnings=grouped_warnings(own, [t.label for t in tables]))
    outputs = [("tables.md", to_markdown(tables, level=2) + regime_md + "\n"), ("tables.tex", to_latex(tables) + "\n"),
               ("tables.csv", csv_frame(summary, deltas, keys).to_csv(index=False))]
    if settings:
        outputs.append(("regime.csv", pd.concat([rows for _, rows in settings]).to_csv(index=False)))
    if versus_dense:
        outputs.append(("regime-vs-dense.csv", pd.concat([rows for _, rows in versus_dense]).to_csv(index=False)))
    for name, content in outputs:
        write_text(out / name, content, out)
        report.files.append(out / name)

    figure_jobs = plan_figures(assign_blocks(frame, keys), cell_rows, keys, out / FIGURES, formats, deltas,
                               highlight, references, figures)
    if "regime" in figures:
        figure_jobs += regime_jobs(settings, keys, out / FIGURES, formats)
    if "regime-vs-dense" in figures:
        figure_jobs += regime_jobs(versus_dense, keys, out / FIGURES, formats, versus_dense=True)
    report.plots = render_figures(figure_jobs, jobs)
    report.files += [p for plot in report.plots for p in plot.paths]
    if report.plots:
        write_text(out / FIGURES / "README.md", figure_index(report.plots, out / FIGURES), out)
        report.files.append(out / FIGURES / "README.md")
    report.warnings = warnings
    md = report_markdown(frame, tables_md=to_markdown(tables, level=3) + regime_md, plots=report.plots, out=out,
                         source=source, warnings=warnings, left_out=left_out_line)
    write_text(out / "report.md", md, out)
    report.files.append(out / "report.md")
    return report


REGIME_NOTE = ("Each rung (a block that differs from the others only in stream size, epochs or T) is placed at "
               "dense's mean generalisation gap there (mean ± std over dense's seeds, n); the deltas are the "
               "tables' paired deltas. The trend is the least-squares line through the rungs' mean deltas "
               "(each rung weighs the same): where it would meet zero if it held, not a model.")


def _namer(rows: pd.DataFrame, keys: Sequence[str]) -> Callable[[pd.Series], str]:
    """A setting's rung labels, naming the keys that tell its rungs apart."""
    shown = varying_rung_keys(rows, keys)
    return lambda row: rung_label(row, shown)


def _regime_markdown(settings: list[tuple[dict, pd.DataFrame]], keys: Sequence[str]) -> str:
    """The regime map's tables (regime.py) as a Markdown section of tables.md; empty without two rungs."""
    parts = []
    for setting, rows in settings:
        parts += [f"## Regime map: {block_label(setting) if setting else 'all cells'}", "", REGIME_NOTE, "",
                  markdown_table(regime_display(rows, _namer(rows, keys))), ""]
        trends = trends_display(regime_trends(rows, keys))
        if not trends.empty:
            parts += [markdown_table(trends), ""]
    return "\n" + "\n".join(parts) if parts else ""


def _regime_text(settings: list[tuple[dict, pd.DataFrame]], keys: Sequence[str]) -> str:
    """The regime tables for the terminal, after the blocks' tables."""
    parts = []
    for setting, rows in settings:
        parts += [f"== regime map: {block_label(setting) if setting else 'all cells'} ==",
                  aligned(regime_display(rows, _namer(rows, keys))), ""]
    return "\n".join(parts)


def write_text(path: Path, text: str, root: Path | None = None) -> None:
    """As the result files are written (a temp file renamed over the name): a link already at the name is
    replaced, never written through to a file elsewhere; a folder that leads out of root is one line."""
    write_atomic(path, lambda f: f.write(text.encode()), root)


PLUGIN_MARK = "†"


def _check_plugins(cell_rows: pd.DataFrame, warn: Warn) -> None:
    """Cells made in a process that imported plugin code: that code ran beside almabench's and may have changed
    what any cell computes (a plugin can patch a built-in method), so the report names them."""
    if "plugin_code" not in cell_rows:
        return
    marked = cell_rows[cell_rows["plugin_code"].astype(str) != ""]
    if len(marked):
        warn(f"{len(marked)} cell(s) were made in a process that imported plugin code, which may change what any "
             f"cell computes: {', '.join(marked['config_hash'])} (marked {PLUGIN_MARK} under Configurations)")


def _check_fingerprints(cell_rows: pd.DataFrame, warn: Warn) -> None:
    """Two fingerprints under one dataset name means different data was mixed into one table."""
    if "data_fingerprint" not in cell_rows:
        return
    prints = cell_rows.groupby("dataset")["data_fingerprint"].unique()
    for dataset, values in prints.items():
        if len(values) > 1:
            warn(f"dataset {dataset}: cells were run on different data (fingerprints {', '.join(map(str, values))})")


def _shared_and_varying(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[dict[str, object], list[str]]:
    """Split columns into those with one value across frame (with that value) and those that vary."""
    present = [c for c in columns if c in frame.columns]
    counts = frame[present].astype(str).nunique()
    shared = {c: frame[c].iloc[0] for c in present if counts[c] == 1}
    return shared, [c for c in present if counts[c] > 1]


def _fmt(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _relative(path: str, start: Path) -> str:
    """path relative to start, with '/' on every system."""
    try:
        return Path(os.path.relpath(path, start)).as_posix()
    except ValueError:  # another drive on Windows
        return path


def report_markdown(frame: pd.DataFrame, tables_md: str, plots: Sequence[Plot], out: Path,
                    source: str | Path | None, warnings: Sequence[str], left_out: str = "") -> str:
    """report.md: summary line, tables, figures by block (and which the default left out), data fingerprints,
    configs and warnings."""
    cell_rows = cells(frame)
    methods = method_order(cell_rows["method"])
    where = f" in `{source}`" if source is not None else ""
    parts = [
        "# almabench report", "",
        f"{len(cell_rows)} cells{where} ({', '.join(methods)}), {len(frame)} steps in all; "
        f"written by almabench {almabench.__version__}.", "",
        "## Tables", "", tables_md,
        "## Figures", "", *([left_out + ".", ""] if left_out else []),
    ]
    by_title: dict[str, list[Plot]] = {}
    for plot in plots:
        by_title.setdefault(plot.title, []).append(plot)
    for title, group in by_title.items():
        parts += [f"### {title}", ""]
        for plot in group:
            image = next((p for p in plot.paths if p.suffix in (".png", ".svg")), plot.paths[0])
            link = image.relative_to(out).as_posix()
            if image.suffix == ".pdf":
                parts.append(f"- [{plot.kind}]({link})")
            else:
                others = ", ".join(f"[{p.suffix[1:]}]({p.relative_to(out).as_posix()})" for p in plot.paths
                                   if p != image)
                parts += [f"![{plot.kind}: {title}]({link})" + (f" ({others})" if others else ""), ""]
        parts.append("")
    parts += ["## Data", "", markdown_table(_data_table(cell_rows)), ""]
    parts += _config_section(cell_rows, source)
    if warnings:
        parts += ["## Warnings", "", *[f"- {w}" for w in warnings], ""]
    return "\n".join(parts)


def _data_table(cell_rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, fingerprint): where the data came from and how many cells used it."""
    columns = {"data_source": "source", "data_fingerprint": "fingerprint", "data_n_train": "n_train",
               "data_n_test": "n_test", "data_checksum_ok": "checksum ok"}
    present = [c for c in columns if c in cell_rows.columns]
    table = (cell_rows.groupby(["dataset", *present], dropna=False).size().rename("cells").reset_index()
             .rename(columns=columns))
    return table.astype(object).where(table.notna(), "-").astype(str)


def results_root(paths: Sequence[str], source: str | Path | None) -> Path | None:
    """The folder report.md names the cells' files relative to: the results folder (source) where it is one,
    else (several folders, or none given) the deepest folder holding every file."""
    if source is not None and Path(source).is_dir():
        return Path(source)
    return Path(os.path.commonpath([str(Path(p).parent) for p in paths])) if len(paths) else None


def _config_section(cell_rows: pd.DataFrame, source: str | Path | None) -> list[str]:
    """Shared config/environment values once, then one line per cell with what varies and its file (relative
    to the results folder, as the reader finds it there, not to the report's folder)."""
    config_cols = [c for c in CONFIG_KEYS if c in cell_rows.columns]
    shared, varying = _shared_and_varying(cell_rows, config_cols)
    env_shared, env_varying = _shared_and_varying(cell_rows, ENV_COLUMNS)
    lines = ["## Configurations", "",
             "Shared by every cell: " + ", ".join(f"`{k}={_fmt(v)}`" for k, v in shared.items()) + ".", ""]
    if env_shared:
        lines += ["Environment of every cell: "
                  + ", ".join(f"`{k.removeprefix('env_')}={_fmt(v)}`" for k, v in env_shared.items()) + ".", ""]
    rank = {m: i for i, m in enumerate(method_order(cell_rows["method"]))}
    order = [c for c in ("dataset", "arch", "megabatches", "pruner", "tau", "method", "seed") if c in varying]
    cell_rows = cell_rows.sort_values(order, key=lambda s: s.map(rank) if s.name == "method" else s,
                                      kind="stable") if order else cell_rows
    marked = "plugin_code" in cell_rows and bool((cell_rows["plugin_code"].astype(str) != "").any())
    table = cell_rows[["config_hash", *varying, *env_varying, "final_test_accuracy", "cer", "path",
                       *(["plugin_code"] if marked else [])]].copy()
    if marked:  # every cell made beside plugin code, whatever its method, and the code it ran beside
        table["plugin_code"] = table["plugin_code"].map(lambda code: f"{PLUGIN_MARK} {code}" if code else "")
        lines += [f"{PLUGIN_MARK}: made in a process that imported plugin code (named in the last column), which "
                  f"runs beside almabench's own and may change what any cell computes.", ""]
    table["final_test_accuracy"] = table["final_test_accuracy"].map(lambda v: f"{v:.2f}")
    root = results_root(list(table["path"]), source)
    table["path"] = table["path"].map(lambda p: _relative(p, root) if root is not None else p)
    table = table.rename(columns={"final_test_accuracy": "final acc %", "path": "file", "plugin_code": "plugin code"})
    table.columns = [c.removeprefix("env_") for c in table.columns]
    lines += [markdown_table(table.map(_fmt)), ""]
    return lines
