"""`almabench report RESULTS_DIR`: the click command. Heavy imports (pandas, matplotlib) happen inside the
command, so registering it in the main CLI costs nothing for the other subcommands."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING

import click

from almabench.names import one_line, quoted

from .figure_sets import SWEEP_BLOCKS

if TYPE_CHECKING:
    from .report import Report

DEFAULT_GROUP_BY = "dataset,arch,megabatches,pruner,tau"
TERMINAL_MODES = ("auto", "tables", "summary")
SUMMARY_FROM = 6  # blocks: `--terminal auto` prints the summary (analysis.summary) from this many on


def _shared_folder(folders: tuple[Path, ...]) -> Path:
    """The deepest folder that holds every one of folders (a report over several lands in its report/)."""
    import os

    return Path(os.path.commonpath([f.resolve() for f in folders]))


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


@click.command("report")
@click.argument("results_dirs", metavar="RESULTS_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder (default: RESULTS_DIR/report; with several folders, report/ in the folder "
                   "they share).")
@click.option("--format", "formats", default="png,pdf", show_default=True,
              help="Figure formats, comma-separated: png, pdf, svg.")
@click.option("--group-by", default=DEFAULT_GROUP_BY, show_default=True,
              help="Config keys that define a table block; a leading '+' adds keys to the default. Unless the "
                   "list is given whole, cells of different protocols always get their own blocks.")
@click.option("--methods", default=None, help="Only these methods, comma-separated (e.g. app,osp,dense).")
@click.option("--highlight", default=None,
              help="Methods the curve figures put first (their accuracy and gap panels) and the density figure draws "
                   "in colour, comma-separated (as the tables name them, e.g. 'app,osp,rigl (erk-dense-first)'); "
                   "the density figure's others grey and thin. Default: the paper's methods (dense, osp, app, "
                   "app-released) in colour, once more than 5 lines share the density figure.")
@click.option("--reference", "references", multiple=True, metavar="METHOD",
              help="Show each other method's difference from METHOD (as the tables name it, or a registered name "
                   "for every label of it) in the delta tables, forest and paired figures, e.g. --reference "
                   "shrink-perturb for 'shrink-perturb − dense'. Repeatable or comma-separated. Default: APP's "
                   "variants against the rest; the regime map stays APP's.")
@click.option("--plugin", "plugins", multiple=True, metavar="FILE.py|MODULE",
              help="Import a plugin (as `run --plugin` does), so that cells made by other code than it are named. "
                   "Installed packages' entry points need no flag. Repeatable.")
@click.option("--dataset", default=None, help="Only cells on this dataset.")
@click.option("--arch", default=None, help="Only cells with this architecture.")
@click.option("--megabatches", type=int, default=None, help="Only cells with this stream length T.")
@click.option("--figures", "figures", default="default", show_default=True,
              help="Which figures, comma-separated: 'default' (the forest plots; each block's accuracy and gap "
                   "curves, and the gap's difference from dense where every method has one seed, up to "
                   f"{SWEEP_BLOCKS} blocks; the cross-block figures), 'all' (adds paired differences, density, cer "
                   "and the per-layer densities 'layers'), 'none', or kinds, e.g. 'default,cer'.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes drawing the figures (default: every core this process may use; 1: in this process). "
                   "The files are the same at any count.")
@click.option("--terminal", type=click.Choice(list(TERMINAL_MODES)), default="auto", show_default=True,
              help=f"What the terminal shows: every block's tables, or a summary (one line per block, each warning "
                   f"once with its count); auto: the summary from {SUMMARY_FROM} blocks on.")
def report(results_dirs: tuple[Path, ...], out: Path | None, formats: str, group_by: str, methods: str | None,
           highlight: str | None, references: tuple[str, ...], plugins: tuple[str, ...], dataset: str | None,
           arch: str | None, megabatches: int | None, figures: str, jobs: int | None, terminal: str) -> None:
    """Tables (terminal, tables.md/.csv/.tex), figures and report.md from the result files in RESULTS_DIR (and
    its subfolders). Several folders, or a folder of folders, make one report: where their blocks differ in
    stream size, epochs or T (rungs), it adds the regime map (APP's paired differences against dense's gap)."""
    from almabench.errors import AlmabenchError
    from almabench.results.store import StorageError
    from almabench.safe_paths import inside

    from .blocks import datasets_apart, parse_group_by, scope_in_method, with_varying_splits
    from .figure_files import FORMATS
    from .figure_sets import figure_kinds
    from .load import filter_results, load_results, results_folder
    from .report import build_report

    try:
        for folder in results_dirs:
            results_folder(folder)
        if plugins:
            from almabench.extend.plugins import load_plugins
            from almabench.grid.specs import plugin_path

            load_plugins(tuple(plugin_path(p, Path.cwd()) for p in plugins))
    except AlmabenchError as err:  # the command runs on its own too (tests, almabench.analysis.report)
        raise click.ClickException(str(err)) from None
    results_dir = results_dirs[0] if len(results_dirs) == 1 else _shared_folder(results_dirs)
    fmts = _split(formats)
    bad = [f for f in fmts if f not in FORMATS]
    if not fmts or bad:
        raise click.ClickException(f"unknown --format {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}")
    try:
        figure_kinds(figures)  # a word it does not know: one line before any file is read
    except AlmabenchError as err:
        raise click.ClickException(str(err)) from None

    notes: list[str] = []  # the loader's warnings, listed again in report.md

    def echo_warning(message: str) -> None:
        click.echo(f"warning: {one_line(message)}", err=True)  # a name with a newline must not forge a line

    def warn(message: str) -> None:
        notes.append(message)
        echo_warning(message)

    frame = load_results(results_dirs, warn)
    held: list[str] = []  # the report's own warnings, printed after it: each once, with a count, in a summary
    result: Report | None = None
    if frame.empty:
        raise click.ClickException(f"no finished results (*.json with status ok) found under "
                                   f"{', '.join(map(str, results_dirs))}")
    found = sorted(map(quoted, frame["method"].unique()))
    frame = filter_results(frame, _split(methods), dataset, arch, megabatches)
    if frame.empty:
        raise click.ClickException(f"no results under {results_dir} match the filters "
                                   f"(methods found there: {', '.join(found)})")
    frame = datasets_apart(frame)  # after the filters, which take the names as written
    labels = set(scope_in_method(frame)["method"])
    unknown = [m for m in _split(highlight) if m not in labels]
    if unknown:
        raise click.ClickException(f"--highlight names method(s) not in the report: {', '.join(unknown)} "
                                   f"(its methods: {', '.join(sorted(labels))})")
    refs = [r for value in references for r in _split(value)]
    unknown = [r for r in refs if r not in labels and r not in {label.split(" (", 1)[0] for label in labels}]
    if unknown:
        raise click.ClickException(f"--reference names method(s) not in the report: {', '.join(unknown)} "
                                   f"(its methods: {', '.join(sorted(labels))})")
    try:
        keys = parse_group_by(group_by, frame.columns)
        if group_by == DEFAULT_GROUP_BY or group_by.startswith("+"):  # an explicit list is taken as given
            keys = with_varying_splits(keys, frame)
        target = out or inside(results_dir, results_dir / "report")  # a link there does not stretch RESULTS
        source = results_dir if len(results_dirs) == 1 else ", ".join(map(str, results_dirs))
        result = build_report(frame, target, fmts, keys, warn=held.append, source=source, notes=notes,
                              highlight=_split(highlight) if highlight is not None else None, references=refs,
                              figures=figures, jobs=jobs)
    except (StorageError, OSError) as err:  # a read-only results folder (an archive, a mount), a quota, a full disk
        reason = err.reason if isinstance(err, StorageError) else (err.strerror or str(err)).lower()
        if isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG:  # another folder would not help
            raise click.ClickException(f"cannot write the report into {quoted(target)}/: a file name made from the "
                                       f"results' names is too long for this file system: "
                                       f"{quoted(Path(err.filename or '?').name)}") from None
        raise click.ClickException(f"cannot write the report into {quoted(target)}/: {reason}; pass --out FOLDER "
                                   f"to write it into another folder") from None
    except AlmabenchError as err:
        raise click.ClickException(str(err)) from None
    finally:
        if result is None:  # the warnings of a report that stopped half-way, as they came
            for message in held:
                echo_warning(message)
    assert result is not None  # build_report returned or raised
    summary = terminal == "summary" or (terminal == "auto" and result.blocks >= SUMMARY_FROM)
    for message in result.grouped_warnings if summary else held:
        echo_warning(message)
    click.echo(result.overview if summary else result.text)
    click.echo(f"wrote {result.out}: report.md, tables.md/.csv/.tex, {len(result.plots)} figures "
               f"({', '.join(fmts)})")
