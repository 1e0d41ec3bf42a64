"""`almabench status RESULTS`: what a results folder holds, per method and per spec, and what is failed or corrupt."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from almabench.cell.config import RunOptions
from almabench.cli.options import load_plugins_for
from almabench.errors import AlmabenchError
from almabench.names import one_line, quoted


@click.command()
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--spec", "specs", multiple=True, metavar="FILE.toml",
              help="Count this spec's cells as done / failed / missing (repeatable). Default: every shipped spec "
                   "with at least one cell in RESULTS.")
def status(results: Path, specs: tuple[str, ...]) -> None:
    """Done / failed / missing cells in a results folder, per spec and per method, dataset and architecture."""
    from almabench.extend.stale import mark_changed
    from almabench.grid.plan import folder_states
    from almabench.grid.specs import load_spec, resolve_configs, shipped_specs
    from almabench.results.store import CHECKPOINT_DIR, cell_files
    from almabench.safe_paths import outside

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
        load_plugins_for((), spec.plugins, name)  # a plugin method's scope (Method.default_scope) names its cells
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
    from almabench.backends.slurm import status_lines

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

    from almabench.results.store import checkpoint_progress, load_checkpoint

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


