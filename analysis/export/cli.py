"""`almabench export RESULTS_DIR --to FORMAT`: the click command. The writer's package is imported only
when it runs, so a missing optional extra costs the other commands nothing."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from . import WRITERS


@click.command("export")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--to", "to", default="parquet", show_default=True, metavar="FORMAT",
              help="parquet, tensorboard, wandb, mlflow (or a plugin's: `almabench list`): tidy tables (parquet), one "
                   "run per cell (tensorboard, offline wandb runs, an mlflow sqlite store). Each needs its extra: pip "
                   "install 'almabench[FORMAT]'.")
@click.option("--dest", type=click.Path(path_type=Path), default=None,  # dest.check_dest says what is wrong
              help="Folder to write into (default: RESULTS_DIR/FORMAT). A cell exported again replaces its earlier "
                   "export there.")
def export(results_dir: Path, to: str, dest: Path | None) -> None:
    """Write the finished results in RESULTS_DIR in a format other tools read: the same files and checks as
    `almabench report` (a file that is not a finished result is skipped with one warning line)."""
    from almabench.errors import AlmabenchError

    from ..load import read_results, result_files, results_folder
    from .dest import check_dest, default_dest, trackers_kept_in

    try:
        writer = WRITERS.get(to)
        module = writer.load(to)
        results_folder(results_dir)
    except AlmabenchError as err:
        raise click.ClickException(str(err)) from None
    def warn(message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    results = read_results(result_files(results_dir, warn), warn)
    if not results:
        raise click.ClickException(f"no finished results (*.json with status ok) found under {results_dir}")
    try:
        dest = dest if dest is not None else default_dest(results_dir, to)  # a link there is one line
        check_dest(dest, "--dest FOLDER")  # before anything is written: one line, never a tracker's fallback folder
        # the trackers' own deprecation notices are not the user's to act on; their files stay under dest
        with warnings.catch_warnings(), trackers_kept_in(dest):
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            wrote = module.export(results, results_dir, dest)
    except AlmabenchError as err:  # a destination refused, a link leading out, a store that is not one
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {dest}: {wrote}")
    click.echo(f"view: {writer.view.format(dest=dest)}")
