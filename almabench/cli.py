"""The `almabench` command: run the grid, list what exists, report on results."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path
from typing import Any

import click

from almabench.backends import BACKENDS, check_backend
from almabench.config import RunOptions
from almabench.errors import AlmabenchError
from almabench.names import one_line, quoted


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
        except RecursionError:  # tomllib recurses once per nested list
            raise AlmabenchError(f"--set {key.strip()}: nested too deeply") from None
    return out


def _list_option(*names: str, help: str) -> Any:
    return click.option(*names, default=None, metavar="A,B,...", help=help)


_plugin_option = click.option(
    "--plugin", "plugins", multiple=True, metavar="FILE.py|MODULE",
    help="Import a method (or pruner, architecture, dataset) from a file or module that is not an installed "
         "package; every worker imports it too. Repeatable.")


def _load_plugins(plugins: tuple[str, ...], spec_plugins: tuple[str, ...] = (), source: str = "") -> tuple[str, ...]:
    """Import the spec's and the command line's --plugin values here; returns them as every process imports them
    (files by absolute path). A spec's plugins are code that runs, though a spec reads as settings: each is named
    on stderr before it is imported (`--dry-run` and `status` import them too, to name the cells)."""
    from almabench.plugins import is_file_spec, is_loaded, load_plugins
    from almabench.specs import plugin_path

    for plugin in plugins:
        if is_file_spec(plugin) and not Path(plugin).expanduser().is_file():
            raise AlmabenchError(f"--plugin {plugin}: no such file ({Path(plugin).expanduser().resolve()}); give a "
                                 f".py file that registers a method, or an importable module name")
    for plugin in spec_plugins:
        if not is_loaded(plugin):
            click.echo(f"importing plugin code named by the spec{f' {source}' if source else ''}: {quoted(plugin)}",
                       err=True)
    resolved = tuple(dict.fromkeys((*spec_plugins, *(plugin_path(p, Path.cwd()) for p in plugins))))
    load_plugins(resolved)
    return resolved


@main.command()
@click.option("--spec", default=None, metavar="FILE.toml",
              help="Grid spec: a TOML file or a shipped name (default: quick). Flags below override it.")
@_list_option("--methods", "--method", "methods", help="Methods, e.g. app,osp,dense (see `almabench list`).")
@_list_option("--datasets", "--dataset", "datasets", help="Dataset names, or paths to an .npz / ImageFolder.")
@_list_option("--archs", "--arch", "archs", help="Architectures, e.g. convnet,resnet20.")
@_list_option("--megabatches", "--megabatch", "megabatches", help="Numbers of megabatches T, e.g. 8,100.")
@_list_option("--seeds", "--seed", "seeds", help="Seeds, e.g. 0,1,2.")
@_list_option("--pruner", "--pruners", "pruners", help="Pruning criteria: snip, magnitude, random, grasp, synflow.")
@_list_option("--scope", "--scopes", "scopes", help="How a density is shared among layers: global, layer, erk, "
                                                    "erk-dense-first (default: each method's own).")
@_list_option("--tau", "--taus", "taus", help="APP's final exponent τ (kept fraction 0.8^τ); default 4.5.")
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
@_plugin_option
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
    from almabench.busy import busy_hint
    from almabench.execute import busy_message, run_grid
    from almabench.gpu import default_jobs
    from almabench.locks import describe_owner
    from almabench.progress import GridProgress
    from almabench.specs import canonical_key, describe, load_spec
    from almabench.watch import LogTarget

    axes = {
        "method": _split(methods, "--methods"),
        "dataset": _split(datasets, "--datasets"),
        "arch": _split(archs, "--archs"),
        "megabatches": _split(megabatches, "--megabatches", int),
        "seed": _split(seeds, "--seeds", int),
        "pruner": _split(pruners, "--pruner"),
        "scope": _split(scopes, "--scope"),
        "tau": _split(taus, "--tau", float),
    }
    fixed = {"epochs": epochs, "batch_size": batch_size}
    loaded = load_spec(spec)
    plugins = _load_plugins(plugins, loaded.plugins, loaded.source)  # before any name is looked up
    grid = loaded.with_overrides(
        {k: v for k, v in axes.items() if v is not None},
        {**{k: v for k, v in fixed.items() if v is not None},
         **{canonical_key(k, "--set"): v for k, v in _parse_set(settings).items()}},
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
        from almabench.slurm import detached

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
    from almabench.slurm import SlurmSettings

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
    from almabench.plan import plan_grid
    from almabench.specs import describe

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
        from almabench.slurm import describe_plan

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


@main.command()
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--spec", "specs", multiple=True, metavar="FILE.toml",
              help="Count this spec's cells as done / failed / missing (repeatable). Default: every shipped spec "
                   "with at least one cell in RESULTS.")
def status(results: Path, specs: tuple[str, ...]) -> None:
    """Done / failed / missing cells in a results folder, per spec and per method, dataset and architecture."""
    from almabench.names import one_line, quoted
    from almabench.plan import folder_states
    from almabench.safe_paths import outside
    from almabench.specs import load_spec, resolve_configs, shipped_specs
    from almabench.stale import mark_changed
    from almabench.store import CHECKPOINT_DIR, cell_files

    if not results.exists():
        raise AlmabenchError(f"results folder {results} does not exist")
    if not results.is_dir():
        raise AlmabenchError(f"{results} is not a folder")
    rows = folder_states(results)
    shown_as = _datasets_apart(rows)
    groups: dict[tuple, dict[str, int]] = {}
    for _, state, _, config, _ in rows:
        key = (quoted(str(config.get("method", "?"))), quoted(shown_as[str(config.get("dataset", "?"))]),
               quoted(str(config.get("arch", "?"))), config.get("megabatches", "?")) if config else (
            "(unreadable)", "", "", "")
        groups.setdefault(key, {"done": 0, "failed": 0, "corrupt": 0})[state] += 1
    totals = {s: sum(g[s] for g in groups.values()) for s in ("done", "failed", "corrupt")}
    click.echo(f"{results}/: {len(rows)} result file(s): {totals['done']} done, {totals['failed']} failed, "
               f"{totals['corrupt']} corrupt")
    if groups:
        _print_groups(groups)
    names = list(specs) or shipped_specs()
    present = {path.name for path, *_ in rows}
    shown = 0
    for name in names:
        spec = load_spec(name)
        _load_plugins((), spec.plugins, name)  # a plugin method's scope (Method.default_scope) names its cells
        cells = mark_changed(cell_files(resolve_configs(spec.configs(), RunOptions(), strict=False), results))
        if not specs and not any(c.path.name in present for c in cells):
            continue  # a shipped spec with nothing here yet
        counts = {s: sum(c.state == s for c in cells) for s in ("done", "failed", "corrupt", "missing")}
        if shown == 0:
            click.echo("per spec:")
        shown += 1
        changed = [c for c in cells if c.changed]
        other = f" ({len(changed)} by other plugin code)" if changed else ""
        click.echo(f"  {name:20} {len(cells):4} cells: {counts['done']} done{other}, {counts['failed']} failed, "
                   f"{counts['corrupt']} corrupt, {counts['missing']} missing")
        for cell in changed:
            click.echo(f"    {cell.path.name}: made by other plugin code than the code installed now: "
                       f"{one_line(str(cell.changed))}")
    checkpoints = results / CHECKPOINT_DIR
    if outside(results, checkpoints) is None:
        _print_checkpoints(sorted(checkpoints.glob("*.pt")))
    else:  # a link does not stretch the folder: what lies elsewhere is not read
        warnings.warn(f"skipped {checkpoints}: a link to {checkpoints.resolve()}, outside {results}", stacklevel=2)
    from almabench.slurm import status_lines

    for line in status_lines(results):
        click.echo(line)
    problems = [(path, state, detail) for path, state, detail, *_ in rows if state in ("failed", "corrupt")]
    if problems:
        click.echo("failed and corrupt files (a rerun of their grid runs them again; corrupt ones are moved aside):")
        for path, state, detail in problems:
            click.echo(f"  {state:7} {quoted(path.name)}: {one_line(detail)}")


def _datasets_apart(rows: list[tuple]) -> dict[str, str]:
    """Each dataset name in the folder -> how the table shows it: two that render alike (café.npz composed and
    decomposed) with their escaped code points and data fingerprint (almabench.names.labels_apart)."""
    from almabench.names import labels_apart

    names = [str(config.get("dataset", "?")) for *_, config, _ in rows if config]
    prints: dict[str, set[str]] = {}
    for *_, config, fingerprint in rows:
        if config and fingerprint:
            prints.setdefault(str(config.get("dataset", "?")), set()).add(fingerprint)
    return labels_apart(names, {name: next(iter(fps)) for name, fps in prints.items() if len(fps) == 1})


def _print_groups(groups: dict[tuple, dict[str, int]]) -> None:
    """The per (method, dataset, arch, T) counts; text columns as wide as their longest entry, never cut
    (two .npz files of one name in sibling folders must not read as one dataset)."""
    from almabench.names import columns, pad

    rows = sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])))
    widths = [max(len(header), *(columns(str(key[i])) for key, _ in rows))
              for i, header in enumerate(("method", "dataset", "arch"))]
    m, d, a = widths
    click.echo(f"  {'method':{m}} {'dataset':{d}} {'arch':{a}} {'T':>4} {'done':>5} {'failed':>6} {'corrupt':>7}")
    for (method, dataset, arch, t), g in rows:
        click.echo(f"  {pad(str(method), m)} {pad(str(dataset), d)} {pad(str(arch), a)} {str(t):>4} {g['done']:>5} "
                   f"{g['failed']:>6} {g['corrupt']:>7}")


def _print_checkpoints(checkpoints: list[Path]) -> None:
    """Checkpoints a rerun resumes from, and, apart, those it cannot read (that cell starts over)."""
    import datetime as dt

    from almabench.store import checkpoint_progress, load_checkpoint

    readable, unreadable = [], []
    for path in checkpoints:
        try:
            saved = dt.datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        except OSError:
            continue  # its cell finished (and removed it) since the folder was listed
        progress = checkpoint_progress(path)
        if progress is None:
            try:
                load_checkpoint(path)
                why = "unreadable"
            except ValueError as exc:  # why a rerun will not resume it, in load_checkpoint's words
                why = str(exc)
            unreadable.append(f"  {path.stem}.json: {why}, saved {saved}")
        else:
            readable.append(f"  {path.stem}.json: {progress[0]} of {progress[1]} megabatches done, saved {saved}")
    if readable:
        click.echo(f"{len(readable)} cell(s) checkpointed mid-stream (a rerun goes on from there):")
        click.echo("\n".join(readable))
    if unreadable:
        click.echo(f"{len(unreadable)} checkpoint(s) unreadable, a rerun starts that cell over:")
        click.echo("\n".join(unreadable))


@main.command(name="list")
@click.argument("method", required=False)
@_plugin_option
def list_(method: str | None, plugins: tuple[str, ...]) -> None:
    """Print the methods, datasets, architectures, pruners and specs that exist; a plugin's entries say where they
    come from (package and version, or file). With METHOD: that method and the settings a grid may vary."""
    from almabench.analysis.export import WRITERS
    from almabench.data import DATASETS
    from almabench.methods import METHODS
    from almabench.models import ARCHS
    from almabench.plugins import describe_origin
    from almabench.protocol import PROTOCOLS
    from almabench.sparsity import PRUNERS, SCOPES
    from almabench.specs import shipped_specs
    from almabench.stream import REPLAYS

    _load_plugins(plugins)
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
    from almabench.methods import METHODS
    from almabench.plugins import describe_origin

    cls = METHODS.get(name)
    lines = [f"{name}: {cls.summary}", f"  from: {describe_origin(METHODS, name) or 'almabench'} ({cls.__module__})"]
    if not cls.settings:
        return [*lines, "  settings: none"]
    lines.append("  settings (--set NAME=VALUE, or a spec's [config] / [grid] NAME = [...]):")
    for s in cls.settings:
        lines.append(f"    {s.name:16} default {s.default:<8g} {s.describe_range():28} {s.help}")
    return lines


@main.command(name="check-method")
@click.argument("name")
@_plugin_option
@click.option("--seed", type=int, default=0, show_default=True, help="The seed of the tiny stream.")
@click.option("--timeout", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds before the check stops (a hook that never returns); the built-ins take seconds.")
def check_method_(name: str, plugins: tuple[str, ...], seed: int, timeout: float) -> None:
    """Check that method NAME keeps the contract that makes its numbers comparable (declared density held,
    pruned weights zero, paired with dense, exact resume, a valid record, deterministic) on a tiny stream: the
    embedded digits, T = 3, 1 epoch; a few seconds. Exit 1 where a check fails."""
    from almabench.contract import check_method

    report = check_method(name, _load_plugins(plugins), seed=seed, timeout=timeout)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        raise SystemExit(1)


@main.command(name="new-method")
@click.argument("name")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Folder the package's folder (almabench-NAME) is written into.")
@click.option("--kind", type=click.Choice(["prune", "perturb"]), default="prune", show_default=True,
              help="prune: a method that sets masks (magnitude pruning to APP's schedule); perturb: one that changes "
                   "the weights (shrink and perturb before each megabatch, with two settings a grid can sweep).")
def new_method_(name: str, dest: Path, kind: str) -> None:
    """Write a package for a new method NAME: pyproject with its entry point, the method (a small commented
    example), a test that runs its contract check, and a README with the commands that install and benchmark it."""
    from almabench.scaffold import new_method

    folder = new_method(name, dest, kind)
    click.echo(f"wrote {folder}/ (the method: {folder}/{name.replace('-', '_')}/method.py); next:")
    click.echo(f"  cd {folder} && pip install -e . && almabench check-method {name}")
    click.echo(f"  almabench run --methods {name},app,dense && almabench report results/")


from almabench.analysis.cli import report  # noqa: E402  (the command lives in analysis/, almabench.analysis)
from almabench.analysis.export.cli import export  # noqa: E402

main.add_command(report)
main.add_command(export)


if __name__ == "__main__":  # python -m almabench.cli, as the tests start a second run
    main()
