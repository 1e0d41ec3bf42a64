"""The `almabench` command: run the grid, list what exists, report on results."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path
from typing import Any

import click

from almabench.config import REPLAYS, RunOptions
from almabench.errors import AlmabenchError


class _Group(click.Group):
    """Bad input becomes one line ("Error: ...") and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        warnings.showwarning = lambda message, *args, **kwargs: click.echo(f"warning: {message}", err=True)
        try:
            return super().invoke(ctx)
        except AlmabenchError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="almabench")
def main() -> None:
    """almabench: APP, Anytime OSP and dense training on ALMA streams, over a grid, with reports."""


def _split(value: str | None, option: str, kind: type = str) -> tuple[Any, ...] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise AlmabenchError(f"{option} needs at least one value")
    try:
        return tuple(kind(v) for v in items)
    except ValueError:
        raise AlmabenchError(f"{option} expects comma-separated {kind.__name__} values, got {value!r}") from None


def _parse_set(pairs: tuple[str, ...]) -> dict[str, Any]:
    """--set key=value, the value read as TOML (so 0.1, true, [20, 40] work) or else as a plain string."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise AlmabenchError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw
    return out


def _list_option(*names: str, help: str) -> Any:
    return click.option(*names, default=None, metavar="A,B,...", help=help)


@main.command()
@click.option("--spec", default=None, metavar="FILE.toml",
              help="Grid spec: a TOML file or a shipped name (default: quick). Flags below override it.")
@_list_option("--methods", "--method", "methods", help="Methods, e.g. app,osp,dense (see `almabench list`).")
@_list_option("--datasets", "--dataset", "datasets", help="Dataset names, or paths to an .npz / ImageFolder.")
@_list_option("--archs", "--arch", "archs", help="Architectures, e.g. convnet,resnet20.")
@_list_option("--megabatches", "--megabatch", "megabatches", help="Numbers of megabatches T, e.g. 8,100.")
@_list_option("--seeds", "--seed", "seeds", help="Seeds, e.g. 0,1,2.")
@_list_option("--pruner", "--pruners", "pruners", help="Pruning criteria: snip, magnitude, random.")
@_list_option("--tau", "--taus", "taus", help="APP's final exponent τ (kept fraction 0.8^τ); default 4.5.")
@click.option("--epochs", type=int, default=None, help="Epochs per megabatch (paper: 50).")
@click.option("--batch-size", type=int, default=None, help="Training batch size (paper: 64).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any other config key, e.g. --set replay=none --set milestones=[20,40]. Repeatable.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 autocast on CUDA, fp32 on CPU. bf16 on a CPU needs AVX512-BF16 to be fast.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the training steps.")
@click.option("--jobs", type=int, default=1, show_default=True, help="Cells run in parallel (joblib).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder the result files land in.")
@click.option("--data-root", default="", help="Where CIFAR lives (default: $ALMABENCH_DATA or ~/.cache/almabench/data).")
@click.option("--download", is_flag=True, help="Fetch CIFAR's official files if missing (needs a network).")
def run(spec, methods, datasets, archs, megabatches, seeds, pruners, taus, epochs, batch_size, settings,
        device, precision, compile_, jobs, out, data_root, download) -> None:
    """Run the grid; cells whose result already exists in --out are skipped."""
    from almabench.grid import canonical_key, describe, load_spec, run_grid

    axes = {
        "method": _split(methods, "--methods"),
        "dataset": _split(datasets, "--datasets"),
        "arch": _split(archs, "--archs"),
        "megabatches": _split(megabatches, "--megabatches", int),
        "seed": _split(seeds, "--seeds", int),
        "pruner": _split(pruners, "--pruner"),
        "tau": _split(taus, "--tau", float),
    }
    fixed = {"epochs": epochs, "batch_size": batch_size}
    grid = load_spec(spec).with_overrides(
        {k: v for k, v in axes.items() if v is not None},
        {**{k: v for k, v in fixed.items() if v is not None},
         **{canonical_key(k, "--set"): v for k, v in _parse_set(settings).items()}},
    )
    configs = grid.configs()
    options = RunOptions(device=device, data_root=data_root, download=download, precision=precision,
                         compile=compile_)
    click.echo(f"{len(configs)} cells from {grid.source}, results in {out}/")

    def on_done(i: int, n: int, done: dict[str, Any]) -> None:
        result = done["result"]
        if done["status"] == "ok":
            click.echo(f"[{i}/{n}] {describe(done['config'])}: accuracy {result['final_test_accuracy']:.2f} %, "
                       f"CER {result['cer']}, density {result['final_density']:.3f} ({result['seconds']:.1f} s)")
        else:
            click.echo(f"[{i}/{n}] {describe(done['config'])}: FAILED {result['error']}", err=True)

    outcome = run_grid(configs, options, out, jobs, on_done)
    click.echo(f"{outcome.ran} ran, {outcome.skipped} already done, {len(outcome.failed)} failed; results in {out}/")
    if outcome.failed:
        raise click.ClickException(f"{len(outcome.failed)} cell(s) failed; their records: {', '.join(outcome.failed)}")


@main.command(name="list")
def list_() -> None:
    """Print the methods, datasets, architectures, pruners and specs that exist."""
    from almabench.data import DATASETS
    from almabench.grid import shipped_specs
    from almabench.methods import METHODS
    from almabench.models import ARCHS
    from almabench.sparsity import PRUNERS

    click.echo("methods:")
    for name in METHODS:
        click.echo(f"  {name:14} {METHODS.get(name).summary}")
    click.echo(f"datasets:       {', '.join(DATASETS)}, or a path to an .npz file or an ImageFolder tree")
    click.echo(f"architectures:  {', '.join(ARCHS)}")
    click.echo(f"pruners:        {', '.join(PRUNERS)}")
    click.echo(f"replay:         {', '.join(REPLAYS)}")
    click.echo(f"specs:          {', '.join(shipped_specs())}")


try:  # the report command lives in analysis/ (almabench.analysis)
    from almabench.analysis.cli import report

    main.add_command(report)
except ImportError:  # pragma: no cover - only while analysis is being written
    pass
