"""The `almabench` command: run the grid, list what exists, report on results. Each subcommand lives in its own
module here; this one is the group that gathers them."""

from __future__ import annotations

import warnings
from typing import Any

import click

from almabench.errors import AlmabenchError
from almabench.names import one_line


class _Group(click.Group):
    """Bad input becomes one line ("Error: ...") and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        warnings.showwarning = lambda message, *args, **kwargs: click.echo(f"warning: {message}", err=True)
        try:
            return super().invoke(ctx)
        except AlmabenchError as exc:
            raise click.ClickException(one_line(str(exc))) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="almabench")
def main() -> None:
    """almabench: APP, Anytime OSP and dense training on ALMA streams, over a grid, with reports."""



from almabench.analysis.cli import report  # noqa: E402  (the command lives in analysis/, almabench.analysis)
from almabench.analysis.export.cli import export  # noqa: E402
from almabench.cli.methods import check_method_, list_, new_method_  # noqa: E402
from almabench.cli.run import run  # noqa: E402
from almabench.cli.status import status  # noqa: E402

for command in (run, status, list_, check_method_, new_method_, report, export):
    main.add_command(command)
