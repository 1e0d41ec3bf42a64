"""`almabench list`, `check-method` and `new-method`: what can run, and your own method checked and scaffolded."""

from __future__ import annotations

from pathlib import Path

import click

from almabench.cli.options import load_plugins_for, plugin_option


@click.command(name="list")
@click.argument("method", required=False)
@plugin_option
def list_(method: str | None, plugins: tuple[str, ...]) -> None:
    """Print the methods, datasets, architectures, pruners and specs that exist; a plugin's entries say where they
    come from (package and version, or file). With METHOD: that method and the settings a grid may vary."""
    from almabench.analysis.export import WRITERS
    from almabench.cell.models import ARCHS
    from almabench.cell.protocol import PROTOCOLS
    from almabench.cell.sparsity import PRUNERS, SCOPES
    from almabench.cell.stream import REPLAYS
    from almabench.data import DATASETS
    from almabench.extend.plugins import describe_origin
    from almabench.grid.specs import shipped_specs
    from almabench.methods import METHODS

    load_plugins_for(plugins)
    if method is not None:
        click.echo("\n".join(_method_lines(method)))
        return

    def named(registry) -> str:
        return ", ".join(f"{name} {describe_origin(registry, name)}".strip() for name in registry)

    click.echo("methods:")
    for name in METHODS:
        origin = describe_origin(METHODS, name)
        click.echo(f"  {name:14} {METHODS.get(name).summary}{' ' + origin if origin else ''}")
    click.echo(f"datasets:       {named(DATASETS)}, or a path to an .npz file or an ImageFolder tree")
    click.echo(f"architectures:  {named(ARCHS)}")
    click.echo(f"pruners:        {named(PRUNERS)}")
    click.echo(f"scopes:         {', '.join(SCOPES)} (unset: the method's own; rigl and set: erk-dense-first)")
    click.echo(f"replay:         {', '.join(REPLAYS)}")
    click.echo(f"protocols:      {', '.join(PROTOCOLS)} (--set protocol=released: the released code's harness)")
    click.echo(f"specs:          {', '.join(shipped_specs())}")
    click.echo(f"export formats: {named(WRITERS)}")


def _method_lines(name: str) -> list[str]:
    """`almabench list METHOD`: what it does, where it comes from, and its settings."""
    from almabench.extend.plugins import describe_origin
    from almabench.methods import METHODS

    cls = METHODS.get(name)
    lines = [f"{name}: {cls.summary}", f"  from: {describe_origin(METHODS, name) or 'almabench'} ({cls.__module__})"]
    if not cls.settings:
        return [*lines, "  settings: none"]
    lines.append("  settings (--set NAME=VALUE, or a spec's [config] / [grid] NAME = [...]):")
    for s in cls.settings:
        lines.append(f"    {s.name:16} default {s.default:<8g} {s.describe_range():28} {s.help}")
    return lines


@click.command(name="check-method")
@click.argument("name")
@plugin_option
@click.option("--seed", type=int, default=0, show_default=True, help="The seed of the tiny stream.")
@click.option("--timeout", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds before the check stops (a hook that never returns); the built-ins take seconds.")
def check_method_(name: str, plugins: tuple[str, ...], seed: int, timeout: float) -> None:
    """Check that method NAME keeps the contract that makes its numbers comparable (declared density held,
    pruned weights zero, paired with dense, exact resume, a valid record, deterministic) on a tiny stream: the
    embedded digits, T = 3, 1 epoch; a few seconds. Exit 1 where a check fails."""
    from almabench.extend.contract import check_method

    report = check_method(name, load_plugins_for(plugins), seed=seed, timeout=timeout)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        raise SystemExit(1)


@click.command(name="new-method")
@click.argument("name")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Folder the package's folder (almabench-NAME) is written into.")
@click.option("--kind", type=click.Choice(["prune", "perturb"]), default="prune", show_default=True,
              help="prune: a method that sets masks (magnitude pruning to APP's schedule); perturb: one that changes "
                   "the weights (shrink and perturb before each megabatch, with two settings a grid can sweep).")
def new_method_(name: str, dest: Path, kind: str) -> None:
    """Write a package for a new method NAME: pyproject with its entry point, the method (a small commented
    example), a test that runs its contract check, and a README with the commands that install and benchmark it."""
    from almabench.extend.scaffold import new_method

    folder = new_method(name, dest, kind)
    click.echo(f"wrote {folder}/ (the method: {folder}/{name.replace('-', '_')}/method.py); next:")
    click.echo(f"  cd {folder} && pip install -e . && almabench check-method {name}")
    click.echo(f"  almabench run --methods {name},app,dense && almabench report results/")



