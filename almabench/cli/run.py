"""`almabench run`: the grid from a spec and the command line, its plan (--dry-run), and its run on a backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from almabench.backends import BACKENDS, check_backend
from almabench.cell.config import RunOptions
from almabench.cli.options import list_option, load_plugins_for, parse_set, plugin_option, split_option
from almabench.errors import AlmabenchError


@click.command()
@click.option("--spec", default=None, metavar="FILE.toml",
              help="Grid spec: a TOML file or a shipped name (default: quick). Flags below override it.")
@list_option("--methods", "--method", "methods", help="Methods, e.g. app,osp,dense (see `almabench list`).")
@list_option("--datasets", "--dataset", "datasets", help="Dataset names, or paths to an .npz / ImageFolder.")
@list_option("--archs", "--arch", "archs", help="Architectures, e.g. convnet,resnet20.")
@list_option("--megabatches", "--megabatch", "megabatches", help="Numbers of megabatches T, e.g. 8,100.")
@list_option("--seeds", "--seed", "seeds", help="Seeds, e.g. 0,1,2.")
@list_option("--pruner", "--pruners", "pruners", help="Pruning criteria: snip, magnitude, random, grasp, synflow.")
@list_option("--scope", "--scopes", "scopes", help="How a density is shared among layers: global, layer, erk, "
                                                    "erk-dense-first (default: each method's own).")
@list_option("--tau", "--taus", "taus", help="APP's final exponent τ (kept fraction 0.8^τ); default 4.5.")
@click.option("--epochs", type=int, default=None, help="Epochs per megabatch (paper: 50).")
@click.option("--batch-size", type=int, default=None, help="Training batch size (paper: 64).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any other config key, e.g. --set replay=none --set milestones=[20,40]. Repeatable.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 autocast on CUDA, fp32 on CPU. bf16 on a CPU needs AVX512-BF16 to be fast.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the training steps.")
@click.option("--jobs", type=int, default=None,
              help="Cells run at once (default with loky: 1 on CPU, as many as fit on a GPU; with dask or ray, every "
                   "worker of the cluster).")
@click.option("--threads", type=int, default=None,
              help="torch threads per cell (default: the cores divided by --jobs). Files are identical only at the "
                   "same thread count, so pin it to compare runs made with different --jobs.")
@click.option("--backend", type=click.Choice(BACKENDS.names()), default="loky", show_default=True,
              help="Where cells run: loky (processes on this machine), dask or ray (a cluster), slurm (a job array; "
                   "optional extras).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Dask scheduler (tcp://host:8786) or Ray cluster address; default: a local cluster.")
@click.option("--slurm", "slurm_pairs", multiple=True, metavar="KEY=VALUE",
              help="With --backend slurm: what each cell's job asks for, e.g. --slurm partition=gpu --slurm "
                   "time=4:00:00 --slurm gpus_per_node=1 (also cpus_per_task, mem, account, qos, constraint, "
                   "max_timeouts, signal_delay; or a [slurm] table in the spec). Repeatable.")
@click.option("--detach", is_flag=True, help="With --backend slurm: submit, print the job ids, and exit.")
@click.option("--rerun-changed", is_flag=True,
              help="Run again the finished cells whose result was made by other plugin code than the code installed "
                   "now (run and --dry-run name them); their old files are moved aside to <name>.replaced.")
@click.option("--dry-run", is_flag=True,
              help="Print the cells, which are done / failed / missing in --out, and the compute left; run nothing.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results"), show_default=True,
              help="Folder the result files land in.")
@click.option("--data-root", default="",
              help="Where CIFAR lives (default: $ALMABENCH_DATA or ~/.cache/almabench/data).")
@click.option("--download", is_flag=True, help="Fetch CIFAR's official files if missing (needs a network).")
@plugin_option
@click.option("--log", "logs", multiple=True, metavar="FORMAT[:DIR]",
              help="Log every megabatch as it finishes: tensorboard or wandb (offline), into DIR (default: "
                   "--out/FORMAT), the layout `almabench export` writes. Repeatable. Needs the extra: "
                   "pip install 'almabench[FORMAT]'.")
def run(spec, methods, datasets, archs, megabatches, seeds, pruners, scopes, taus, epochs, batch_size, settings,
        device, precision, compile_, jobs, threads, backend, scheduler, slurm_pairs, detach, rerun_changed, dry_run,
        out, data_root, download, plugins, logs) -> None:
    """Run the grid; cells whose result already exists in --out are skipped, failed ones run again.

    A line per finished megabatch and per cell; on a terminal, a progress bar over the grid's training
    image-passes below them (cells done / running / left, and the time left at this run's rate)."""
    from almabench.grid.busy import busy_hint
    from almabench.grid.execute import busy_message, run_grid
    from almabench.grid.gpu import default_jobs
    from almabench.grid.locks import describe_owner
    from almabench.grid.progress import GridProgress
    from almabench.grid.specs import canonical_key, describe, load_spec
    from almabench.grid.watch import LogTarget

    axes = {
        "method": split_option(methods, "--methods"),
        "dataset": split_option(datasets, "--datasets"),
        "arch": split_option(archs, "--archs"),
        "megabatches": split_option(megabatches, "--megabatches", int),
        "seed": split_option(seeds, "--seeds", int),
        "pruner": split_option(pruners, "--pruner"),
        "scope": split_option(scopes, "--scope"),
        "tau": split_option(taus, "--tau", float),
    }
    fixed = {"epochs": epochs, "batch_size": batch_size}
    loaded = load_spec(spec)
    plugins = load_plugins_for(plugins, loaded.plugins, loaded.source)  # before any name is looked up
    grid = loaded.with_overrides(
        {k: v for k, v in axes.items() if v is not None},
        {**{k: v for k, v in fixed.items() if v is not None},
         **{canonical_key(k, "--set"): v for k, v in parse_set(settings).items()}},
    )
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise AlmabenchError(f"--threads must be between 1 and {MAX_THREADS} (torch threads per cell), got {threads}")
    configs = grid.configs()
    options = RunOptions(device=device, data_root=data_root, download=download, precision=precision,
                         compile=compile_, threads=threads or 0, plugins=plugins)
    if jobs is None:
        jobs = default_jobs(configs, options) if backend == "loky" else -1
    elif jobs < 1:
        raise AlmabenchError(f"--jobs must be at least 1, got {jobs}")
    slurm = _slurm_settings(backend, slurm_pairs, detach, grid)
    check_backend(backend, scheduler)
    targets = tuple(LogTarget.parse(value, out) for value in logs)
    if dry_run:
        _print_plan(configs, options, out, grid.source, jobs, slurm)
        return
    if detach:
        from almabench.backends.slurm import detached

        click.echo(detached(configs, options, out, jobs, slurm, targets))
        return

    def on_start(cells: int, todo: int, threads: int) -> None:
        click.echo(f"{cells} cell(s) from {grid.source}, results in {out}/: {cells - todo} done, {todo} to run")
        hint = busy_hint(threads) if todo else None
        if hint is not None:
            click.echo(hint, err=True)

    progress = GridProgress()

    def on_done(i: int, n: int, done: dict[str, Any]) -> None:
        result = done["result"]
        resumed = f", resumed after step {done['resumed_after']}" if done.get("resumed_after") else ""
        if done["status"] == "busy":
            progress.write(f"[{i}/{n}] {describe(done['config'])}: skipped, another almabench run "
                           f"({describe_owner(done['holder'])}) is running it")
        elif done["status"] == "done":
            progress.write(f"[{i}/{n}] {describe(done['config'])}: already done by another almabench run; kept")
        elif done["status"] == "ok":
            progress.write(f"[{i}/{n}] {describe(done['config'])}: accuracy {result['final_test_accuracy']:.2f} %, "
                           f"CER {result['cer']}, density {result['final_density']:.3f} ({result['seconds']:.1f} s"
                           f"{resumed})")
        else:
            progress.write(f"[{i}/{n}] {describe(done['config'])}: FAILED {result['error']}{resumed}", err=True)

    with progress:
        outcome = run_grid(configs, options, out, jobs, on_done, backend=backend, scheduler=scheduler,
                           on_start=on_start, watch=progress, logs=targets, settings=slurm,
                           rerun_changed=rerun_changed, on_changed=_say_changed(progress))
    busy = f", {len(outcome.busy)} left to another run" if outcome.busy else ""
    click.echo(f"{outcome.ran} ran, {outcome.skipped} already done, {len(outcome.failed)} failed{busy}; "
               f"results in {out}/")
    problems = []
    if outcome.busy:
        problems.append(busy_message(outcome.busy, out))
    if outcome.failed:
        problems.append(f"{len(outcome.failed)} cell(s) failed; their records: {', '.join(outcome.failed)}")
    if outcome.corrupt:
        problems.append(f"{len(outcome.corrupt)} corrupt result file(s) were moved aside and their cells run again; "
                        f"inspect, then delete: {', '.join(outcome.corrupt)}")
    if problems:
        raise click.ClickException("; ".join(problems))


MAX_THREADS = 4096  # torch takes an int32; no machine almabench runs on has more cores than this


def _say_changed(progress: Any) -> Any:
    """run_grid's on_changed: its lines (the cells made by other plugin code) on stderr, above the progress bar."""
    def say(lines: list[str]) -> None:
        if lines:
            progress.write("\n".join(lines), err=True)

    return say


def _slurm_settings(backend: str, pairs: tuple[str, ...], detach: bool, grid: Any) -> Any:
    """--backend slurm's settings (the spec's [slurm] table, --slurm over it); the options are for it alone."""
    if backend != "slurm":
        if pairs or detach:
            raise AlmabenchError(f"{'--slurm' if pairs else '--detach'} is for --backend slurm, not {backend}")
        return None
    from almabench.backends.slurm import SlurmSettings

    return SlurmSettings.parse(grid.slurm, pairs, grid.source)


def _toml(value: Any) -> str:
    """A value as a user would write it in a spec or after --set."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _print_plan(configs, options: RunOptions, out: Path, source: str, jobs: int, slurm: Any = None) -> None:
    """almabench run --dry-run: the cells, their state in --out, and the compute still to spend."""
    from almabench.grid.plan import plan_grid
    from almabench.grid.specs import describe

    plan = plan_grid(configs, options, out)
    click.echo(f"{len(plan.cells)} cell(s) from {source}, results in {out}/ "
               f"(dry run: nothing runs, nothing is written)")
    for cell in plan.cells:
        passes = plan.passes[cell.config]
        cost = "" if passes is None or cell.state == "done" else f"  {passes:,} image-passes"
        detail = f"  ({cell.detail})" if cell.detail else ""
        click.echo(f"  {cell.state:8} {describe(cell.config):44} {cell.path.name}{cost}{detail}")
        if cell.changed:
            click.echo(f"           made by other plugin code than the code installed now: {cell.changed} "
                       f"(--rerun-changed runs it again)")
        if cell.config.resolved:
            changed = ", ".join(f"{k}={_toml(v)}" for k, v in cell.config.differences_from_paper().items())
            click.echo(f"           not the paper's: {changed}" if changed else "           the paper's recipe")
        else:
            click.echo("           settings unknown until its data loads (flip, crop_padding, milestones)")
    counts = plan.counts()
    other = sum(bool(c.changed) for c in plan.cells)
    click.echo(f"{counts['done']} done{f' ({other} by other plugin code)' if other else ''}, {counts['failed']} "
               f"failed, {counts['corrupt']} corrupt, {counts['missing']} missing: {len(plan.todo)} cell(s) to run")
    if plan.todo:
        _print_compute_left(plan, out, jobs)
    if slurm is not None and plan.todo:
        from almabench.backends.slurm import describe_plan

        click.echo(describe_plan([c.config for c in plan.todo], slurm, jobs, out))
    if plan.unreadable:  # the run would stop here: say so as its error, with what makes the data
        raise AlmabenchError(f"the run would stop before any cell: {'; '.join(plan.unreadable)}")


def _print_compute_left(plan, out: Path, jobs: int) -> None:
    """The image-passes and, at measured rates, the time that the cells still to run would take."""
    known = [plan.passes[c.config] for c in plan.todo if plan.passes[c.config] is not None]
    unknown = len(plan.todo) - len(known)
    if not known:
        click.echo(f"compute left: unknown until the data of its {unknown} cell(s) is there (below)")
        return
    click.echo(f"compute left: {sum(known):,} training image-passes (epochs x sum over steps of |train_t|, "
               f"the replay set)"
               + (f", plus {unknown} cell(s) whose data is not there yet (below)" if unknown else ""))
    timed = [plan.seconds[c.config] for c in plan.todo if plan.seconds[c.config] is not None]
    used = {plan.keys[c.config] for c in plan.todo if plan.seconds[c.config] is not None}
    for key in sorted(used):
        rate, n = plan.rates[key]
        arch, channels, size, device = key
        click.echo(f"  measured: {rate:,.0f} images/s end to end (pruning and evaluation included) in {n} finished "
                   f"{arch} result(s) on {channels}x{size[0]}x{size[1]} images, {device}, in {out}/")
    if timed:
        total = sum(timed)
        lanes = max(1, jobs)
        click.echo(f"time left: about {_duration(total)} of one cell after another at those rates"
                   + (f", about {_duration(total / lanes)} with --jobs {jobs} if the cells do not slow each other"
                      if lanes > 1 else ""))
    missing_rate = len(known) - len(timed)
    if missing_rate:
        click.echo(f"time left: unknown for {missing_rate} cell(s): no finished result of the same architecture, "
                   f"image size and device in {out}/ to measure a rate from; only the image count above")


