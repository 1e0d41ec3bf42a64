"""`almabench report RESULTS_DIR`: the click command. Heavy imports (pandas, matplotlib) happen inside the
command, so registering it in the main CLI costs nothing for the other subcommands."""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_GROUP_BY = "dataset,arch,megabatches,pruner,tau"


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


@click.command("report")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder (default: RESULTS_DIR/report).")
@click.option("--format", "formats", default="png,pdf", show_default=True,
              help="Figure formats, comma-separated: png, pdf, svg.")
@click.option("--group-by", default=DEFAULT_GROUP_BY, show_default=True,
              help="Config keys that define a table block; a leading '+' adds keys to the default. Unless the "
                   "list is given whole, cells of different protocols always get their own blocks.")
@click.option("--methods", default=None, help="Only these methods, comma-separated (e.g. app,osp,dense).")
@click.option("--dataset", default=None, help="Only cells on this dataset.")
@click.option("--arch", default=None, help="Only cells with this architecture.")
@click.option("--megabatches", type=int, default=None, help="Only cells with this stream length T.")
def report(results_dir: Path, out: Path | None, formats: str, group_by: str, methods: str | None,
           dataset: str | None, arch: str | None, megabatches: int | None) -> None:
    """Tables (terminal, tables.md/.csv/.tex), figures and report.md from the result files in RESULTS_DIR."""
    from almabench.errors import AlmabenchError
    from almabench.names import quoted
    from almabench.store import StorageError

    from .blocks import datasets_apart, parse_group_by, with_varying_splits
    from .load import filter_results, load_results, results_folder
    from .plots import FORMATS
    from .report import build_report

    try:
        results_folder(results_dir)
    except AlmabenchError as err:  # the command runs on its own too (tests, almabench.analysis.report)
        raise click.ClickException(str(err)) from None
    fmts = _split(formats)
    bad = [f for f in fmts if f not in FORMATS]
    if not fmts or bad:
        raise click.ClickException(f"unknown --format {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}")

    notes: list[str] = []  # the loader's warnings, listed again in report.md

    def echo_warning(message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    def warn(message: str) -> None:
        notes.append(message)
        echo_warning(message)

    frame = load_results(results_dir, warn)
    if frame.empty:
        raise click.ClickException(f"no finished results (*.json with status ok) found under {results_dir}")
    found = sorted(frame["method"].unique())
    frame = filter_results(frame, _split(methods), dataset, arch, megabatches)
    if frame.empty:
        raise click.ClickException(f"no results under {results_dir} match the filters "
                                   f"(methods found there: {', '.join(found)})")
    frame = datasets_apart(frame)  # after the filters, which take the names as written
    try:
        keys = parse_group_by(group_by, frame.columns)
        if group_by == DEFAULT_GROUP_BY or group_by.startswith("+"):  # an explicit list is taken as given
            keys = with_varying_splits(keys, frame)
        target = out or results_dir / "report"
        result = build_report(frame, target, fmts, keys, warn=echo_warning, source=results_dir, notes=notes)
    except (StorageError, OSError) as err:  # a read-only results folder (an archive, a mount), a quota, a full disk
        reason = err.reason if isinstance(err, StorageError) else (err.strerror or str(err)).lower()
        raise click.ClickException(f"cannot write the report into {quoted(target)}/: {reason}; pass --out FOLDER "
                                   f"to write it into another folder") from None
    except AlmabenchError as err:
        raise click.ClickException(str(err)) from None
    click.echo(result.text)
    click.echo(f"wrote {result.out}: report.md, tables.md/.csv/.tex, {len(result.plots)} figures "
               f"({', '.join(fmts)})")
