"""Grid specs (TOML) -> a list of RunConfigs -> the missing cells run with joblib, one JSON file each.

A spec has two tables: [grid], whose values are lists and form the cartesian product, and [config], scalar
settings shared by every cell. Any RunConfig field may appear in either; plural spellings (methods, seeds,
...) are accepted in [grid].

Cells run in-process, in joblib's loky worker processes, or on a Dask or Ray cluster (the same files come
out). A cell is done when its result file is; failed and missing cells are run again, a corrupt file is moved
aside (never deleted) and its cell run again, and a cell killed midway resumes from its last megabatch.
Each cell runs under its own lock (almabench.locks), so two runs into one folder share the work instead of
doing it twice; a full disk stops the grid with one line and keeps every finished file.
"""

from __future__ import annotations

import errno
import itertools
import json
import math
import os
import tempfile
import time
import tomllib
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from joblib import Parallel, delayed

from almabench.backends import BACKENDS, check_backend
from almabench.channel import Receiver
from almabench.checkpoint import OtherThreads, check_resumes
from almabench.config import RunConfig, RunOptions
from almabench.data import Dataset, augmentation_of, is_known_dataset, load_dataset
from almabench.errors import AlmabenchError
from almabench.locks import cell_lock, describe_owner, this_run
from almabench.methods import METHODS
from almabench.models import ARCHS, build_model
from almabench.names import quoted
from almabench.progress import GridProgress, step_passes, stream_note
from almabench.protocol import PROTOCOLS
from almabench.run import resolve_device, run_cell
from almabench.sparsity import PRUNERS, SCOPES, prunable_parameters
from almabench.store import (
    StorageError,
    checkpoint_path,
    json_safe,
    move_aside,
    result_path,
    result_state,
    temp_files,
    write_json_atomic,
)
from almabench.stream import REPLAYS, check_stream
from almabench.train import resolve_precision
from almabench.watch import CellWatch, Events, LogTarget

FIELDS = {f.name: f for f in fields(RunConfig)}
ALIASES = {
    "methods": "method", "datasets": "dataset", "archs": "arch", "architectures": "arch", "seeds": "seed",
    "pruners": "pruner", "taus": "tau", "replays": "replay", "scopes": "scope", "megabatch": "megabatches",
    "protocols": "protocol",
}
DEFAULT_SPEC = "quick"


@dataclass(frozen=True)
class GridSpec:
    """Axes (field -> values, expanded as a product) and fixed settings shared by every cell."""

    axes: dict[str, tuple[Any, ...]]
    fixed: dict[str, Any]
    source: str = ""

    def with_overrides(self, axes: dict[str, tuple[Any, ...]], fixed: dict[str, Any]) -> GridSpec:
        """Command-line values replace the spec's, whichever table the spec had them in; the source says what
        is left of the spec (nothing: "the command line")."""
        kept_axes = {k: v for k, v in self.axes.items() if k not in fixed and k not in axes}
        kept_fixed = {k: v for k, v in self.fixed.items() if k not in axes and k not in fixed}
        if not axes and not fixed:
            source = self.source
        elif kept_axes:
            source = f"{self.source} and the command line"
        elif kept_fixed:
            settings = ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in kept_fixed.items())
            source = f"the command line, with {settings} from {self.source}"
        else:
            source = "the command line"
        return GridSpec({**kept_axes, **axes}, {**kept_fixed, **fixed}, source)

    def configs(self) -> list[RunConfig]:
        """The cells of the grid, each once: a method that never prunes (dense) gets the default pruning
        keys, and one that ignores some (gmp, rigl, set and imp: the pruner) those, so crossing it with several
        pruners or τ runs it once, not once per pruner; an unset scope is the method's own."""
        names = list(self.axes)
        cells = []
        for values in itertools.product(*(self.axes[n] for n in names)):
            cells.append(for_method(RunConfig.from_dict({**self.fixed, **dict(zip(names, values))})))
        return list(dict.fromkeys(cells))


PRUNING_KEYS = ("pruner", "tau", "scope", "sample_fraction", "prune_linear")


def for_method(config: RunConfig) -> RunConfig:
    """The config as its method reads it: the pruning keys it ignores at their defaults, and an unset scope
    resolved to the method's own (Method.default_scope). An unknown method is left to check_config."""
    if config.method not in METHODS:
        return config
    method = METHODS.get(config.method)
    unused = method.ignores if method.prunes else PRUNING_KEYS
    config = config.replace(**{k: FIELDS[k].default for k in unused}) if unused else config
    return config.replace(scope=method.default_scope) if config.scope is None else config


def canonical_key(key: str, where: str) -> str:
    name = ALIASES.get(key, key)
    if name not in FIELDS:
        valid = ", ".join(sorted(FIELDS))
        raise AlmabenchError(f"{where}: unknown key {key!r}; valid keys: {valid}")
    return name


def spec_path(spec: str | None) -> Path:
    """A spec file by path, or by the name of one shipped in benchmarks/ (e.g. 'quick')."""
    spec = spec or DEFAULT_SPEC
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    shipped = resources.files("almabench.benchmarks") / f"{spec.removesuffix('.toml')}.toml"
    if shipped.is_file():
        return Path(str(shipped))
    raise AlmabenchError(f"spec {spec!r} not found; shipped specs: {', '.join(shipped_specs())}")


def shipped_specs() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files("almabench.benchmarks").iterdir()
                  if p.name.endswith(".toml"))


def load_spec(spec: str | None) -> GridSpec:
    path = spec_path(spec)
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise AlmabenchError(f"{quoted(path)}: not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - {"grid", "config", "description"})
    if unknown:
        raise AlmabenchError(f"{quoted(path)}: unknown table(s) {', '.join(unknown)}; a spec has [grid] and [config]")
    for table in ("grid", "config"):
        if not isinstance(doc.get(table, {}), dict):
            raise AlmabenchError(f"{quoted(path)}: {table} must be a table ([{table}] with key = value lines)")
    if not isinstance(doc.get("description", ""), str):
        raise AlmabenchError(f"{quoted(path)}: description must be a string")
    axes = {}
    for key, values in doc.get("grid", {}).items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise AlmabenchError(f"{quoted(path)}: [grid] {key} is an empty list")
        axes[canonical_key(key, f"{quoted(path)} [grid]")] = tuple(values)
    fixed = {canonical_key(k, f"{quoted(path)} [config]"): v for k, v in doc.get("config", {}).items()}
    both = sorted(set(axes) & set(fixed))
    if both:
        raise AlmabenchError(f"{quoted(path)}: {', '.join(both)} set in both [grid] and [config]")
    try:
        spec_ = GridSpec(axes, fixed, str(path))
        spec_.configs()  # type errors surface now, with the file's name
    except (TypeError, ValueError) as exc:
        raise AlmabenchError(f"{quoted(path)}: bad value ({exc})") from None
    except AlmabenchError as exc:
        raise AlmabenchError(f"{quoted(path)}: {exc}") from None
    return spec_


def check_config(config: RunConfig) -> None:
    """Everything about one cell that can be checked without running it (data sizes included)."""
    for registry, name in ((METHODS, config.method), (ARCHS, config.arch), (PRUNERS, config.pruner)):
        registry.get(name)
    REPLAYS.get(config.replay)
    PROTOCOLS.get(config.protocol)
    if config.scope is not None:  # unset: the method's own
        SCOPES.get(config.scope)
    if not is_known_dataset(config.dataset):
        from almabench.data import DATASETS

        raise AlmabenchError(DATASETS.unknown(config.dataset) + ", or a path to an .npz file or an ImageFolder tree")
    for name, value in config.to_dict().items():  # inf passes every range check below, and JSON cannot hold it
        if isinstance(value, float) and not math.isfinite(value):
            raise AlmabenchError(f"{name} must be a finite number, got {value}")
    method = METHODS.get(config.method)
    milestones = config.milestones or ()
    checks = [
        (config.tau > 0, f"tau must be > 0, got {config.tau}"),
        (config.tau <= 0 or 0.8 ** config.tau > 0,
         f"tau = {config.tau} keeps 0.8^tau = 0 of the weights (the kept fraction must be in (0, 1]); use a "
         f"smaller tau"),
        (not (method.prunes and method.shrinks) or config.tau >= 1,
         f"tau must be >= 1 for {config.method}: its kept fraction 0.8^δ_t with δ = linspace(1, tau, T) must not "
         f"grow, since its masks only shrink; got {config.tau}"),
        (config.megabatches >= 1, f"megabatches must be at least 1, got {config.megabatches}"),
        (config.epochs >= 1, f"epochs must be at least 1, got {config.epochs}"),
        (all(1 <= m <= config.epochs for m in milestones),
         f"milestones must be epochs in 1..{config.epochs} (the learning rate drops after them), got "
         f"{list(milestones)}"),
        (config.batch_size >= 2, f"batch_size must be at least 2, got {config.batch_size}"),
        (config.lr > 0, f"lr must be > 0, got {config.lr}"),
        (config.lr_gamma > 0, f"lr_gamma must be > 0 (the factor the learning rate is multiplied by at each "
                              f"milestone), got {config.lr_gamma}"),
        (config.momentum >= 0, f"momentum must be >= 0, got {config.momentum}"),
        (config.weight_decay >= 0, f"weight_decay must be >= 0, got {config.weight_decay}"),
        (config.crop_padding >= -1, f"crop_padding must be a number of pixels >= 0 (or -1: the dataset's), got "
                                    f"{config.crop_padding}"),
        (0 <= config.seed < 2**63, f"seed must be an integer in 0..2^63-1 (it seeds 64-bit generators), got "
                                   f"{config.seed}"),
        (0 < config.sample_fraction <= 1, f"sample_fraction must be in (0, 1], got {config.sample_fraction}"),
        (0 < config.val_fraction < 1, f"val_fraction must be in (0, 1), got {config.val_fraction}"),
    ]
    for ok, message in checks:
        if not ok:
            raise AlmabenchError(message)


def resolve_configs(configs: list[RunConfig], options: RunOptions, strict: bool = True) -> list[RunConfig]:
    """Each cell with the flip, crop padding, scope and milestones it will use (the dataset's, the method's and the
    epochs' wherever unset), each distinct cell once: cells are named by these values. strict=False leaves a cell
    whose data cannot be read, or whose method is unknown, as it is (its name then matches no result file)."""
    recipes = {}
    for name in dict.fromkeys(c.dataset for c in configs):
        try:
            recipes[name] = augmentation_of(name, options.data_root, options.download)
        except AlmabenchError:
            if strict:
                raise
    return list(dict.fromkeys(
        c.resolve(recipes[c.dataset].flip, recipes[c.dataset].crop_padding, scope=METHODS.get(c.method).default_scope)
        if c.dataset in recipes and (strict or c.method in METHODS) else c
        for c in configs))


def check_resolved(config: RunConfig, data: Dataset) -> None:
    """What can only be checked against the data: the crop fits the image, and pruning keeps some weights."""
    size = min(data.image_size)
    if config.crop_padding >= size:
        raise AlmabenchError(f"{quoted(config.dataset)}: crop_padding = {config.crop_padding} px is as large as its "
                             f"{size} px images; use 0..{size - 1} (or -1: the dataset's, {data.crop_padding} px)")
    if METHODS.get(config.method).prunes:
        with torch.device("meta"):  # shapes only: no memory, no time
            model = build_model(config.arch, data.num_classes, data.channels, data.image_size[0])
        params = prunable_parameters(model, config.prune_linear)
        total = sum(p.numel() for p in params.values())
        lowest = min(0.8 ** config.tau, 0.8)  # δ runs from 1 to τ
        if round(lowest * total) < 1:
            raise AlmabenchError(f"tau = {config.tau} keeps 0.8^tau = {lowest:.3g} of {config.arch}'s {total:,} "
                                 f"prunable weights, i.e. none; use a smaller tau")
        try:  # a scope that keeps layers dense must leave them room in the budget
            SCOPES.get(config.scope or "global")({n: tuple(p.shape) for n, p in params.items()}, lowest)
        except AlmabenchError as exc:
            raise AlmabenchError(f"{config.method} on {config.arch}, scope {config.scope}: {exc}") from None


def check_grid(configs: list[RunConfig], options: RunOptions) -> list[RunConfig]:
    """Check every cell before any runs and return them resolved (each with the flip, crop padding, scope and
    milestones it will use: the dataset's, the method's and the epochs' wherever unset), each distinct cell once.

    Each dataset is loaded once, to check that the stream and the crop fit it."""
    if not configs:
        raise AlmabenchError("the grid is empty")
    for config in configs:
        check_config(config)
    datasets = {name: load_dataset(name, options.data_root, options.download)
                for name in dict.fromkeys(c.dataset for c in configs)}
    streams = {(c.dataset, c.megabatches, c.val_fraction, c.stream_images) for c in configs}
    for dataset, megabatches, val_fraction, stream_images in sorted(streams, key=repr):
        try:
            check_stream(datasets[dataset].n_train, megabatches, val_fraction, stream_images)
        except AlmabenchError as exc:
            raise AlmabenchError(f"{quoted(dataset)}: {exc}") from None
    resolved = resolve_configs(configs, options)
    for config in resolved:
        check_resolved(config, datasets[config.dataset])
    return list(dict.fromkeys(resolved))


DESCRIBED_WHEN_SET = ("stream_images", "pruner", "tau", "scope", "replay", "protocol")  # the axes the shipped specs vary


def describe(config: RunConfig) -> str:
    """A cell in one line: its main axes and epochs (always: two cells differing only in epochs must not read
    alike), plus those of DESCRIBED_WHEN_SET that differ from their defaults (an unset one is not shown)."""
    changed = config.named()
    extra = "".join(f" {k}={changed[k]}" for k in DESCRIBED_WHEN_SET if changed.get(k) is not None)
    return (f"{config.method} {config.dataset} {config.arch} T={config.megabatches} epochs={config.epochs} "
            f"seed={config.seed}{extra}")


def run_and_store(config: RunConfig, options: RunOptions, out: Path, owner: str = "", events: Events | None = None,
                  logs: tuple[LogTarget, ...] = ()) -> dict[str, Any]:
    """Run one cell in a worker and write its result; a failure writes a failure record instead.

    The cell runs under its lock (almabench.locks.cell_lock), taken here, in the process that runs it: if
    another run holds it, nothing is touched and the outcome is "busy"; once held, the file is looked at
    again, since another run may have finished the cell after this grid was planned ("done": kept as is).
    A corrupt file is moved aside under the lock, so two runs never both move it.

    The cell checkpoints after every megabatch in out/.checkpoints/ and resumes from there if it was killed;
    the checkpoint is deleted once the result is written (a failed cell keeps it: a rerun after an
    out-of-memory error goes on from the last good megabatch). A write the disk refuses (StorageError) is
    not the cell's failure: it propagates, no failure record is attempted, and the checkpoint stays.
    events (almabench.watch) hears of its start and megabatches (None: their lines are printed here); logs are
    the live logs (`run --log`) it writes each megabatch to.
    """
    path = result_path(out, config)
    with cell_lock(out, config, owner) as holder:
        if holder is not None:
            return {"config": config, "path": str(path), "status": "busy", "holder": holder, "result": None}
        state, detail = result_state(path)
        if state == "done":
            return {"config": config, "path": str(path), "status": "done", "result": None}
        aside = str(move_aside(path)) if state == "corrupt" else None
        for stale in temp_files(out, config):  # left by a process killed mid-write; nobody else writes here
            stale.unlink(missing_ok=True)
        result, resumed = _run_and_write(config, options, out, events, logs)
    return {"config": config, "path": str(path), "status": result["status"], "result": result,
            "resumed_after": resumed, "moved_aside": aside, "corrupt_detail": detail if aside else ""}


def _run_and_write(config: RunConfig, options: RunOptions, out: Path, events: Events | None = None,
                   logs: tuple[LogTarget, ...] = ()) -> tuple[dict[str, Any], int]:
    """The cell's result (or failure record), written; (document, megabatches it resumed after)."""
    path = result_path(out, config)
    checkpoint = checkpoint_path(out, config)
    resumed: list[int] = []
    try:
        watch = CellWatch(config, checkpoint, events, logs)
        try:
            result = run_cell(config, options, progress=watch.step, checkpoint=checkpoint,
                              on_resume=lambda k: (resumed.append(k), watch.resumed(k)))
            write_json_atomic(path, result)  # inside: a value JSON cannot hold (NaN) fails this cell only
            watch.finish(result)
        finally:
            watch.close()
    except (StorageError, OtherThreads):  # not the cell's failure: no record, the run stops with one line
        raise
    except Exception as exc:  # noqa: BLE001 - one failed cell must not stop the others
        result = json_safe({
            "status": "failed",
            "config_hash": config.hash(),
            "config": config.to_dict(),
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        })
        write_json_atomic(path, result)  # whatever floats the config holds (an API caller may skip the checks)
    if result["status"] == "ok":
        checkpoint.unlink(missing_ok=True)
    return result, resumed[0] if resumed else 0


@dataclass(frozen=True)
class GridOutcome:
    total: int
    skipped: int
    ran: int
    failed: list[str]
    corrupt: list[str] = field(default_factory=list)  # where corrupt files were moved aside to
    busy: dict[str, str] = field(default_factory=dict)  # result path -> owner of the run that holds its lock


def prepare_out(out: Path) -> None:
    """Create the results folder and prove it takes a file (os.access says yes to root on a read-only one)."""
    if out.exists() and not out.is_dir():
        raise AlmabenchError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlmabenchError(f"cannot create results folder {out}: {exc.strerror or exc}") from None
    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise AlmabenchError(f"results folder {out} is not writable: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class CellState:
    config: RunConfig
    path: Path
    state: str  # done, failed, corrupt, missing (store.STATES)
    detail: str = ""  # the error of a failed cell, what is wrong with a corrupt file


def cell_states(configs: list[RunConfig], out: Path) -> list[CellState]:
    """The state of every (distinct) cell's file in out/, in grid order."""
    cells = []
    for config in dict.fromkeys(configs):
        path = result_path(out, config)
        state, detail = result_state(path)
        cells.append(CellState(config, path, state, detail))
    return cells


def run_grid(
    configs: list[RunConfig],
    options: RunOptions,
    out: Path,
    jobs: int = 1,
    on_done: Callable[[int, int, dict[str, Any]], None] | None = None,
    backend: str = "loky",
    scheduler: str | None = None,
    on_start: Callable[[int, int], None] | None = None,
    watch: GridProgress | None = None,
    logs: tuple[LogTarget, ...] = (),
) -> GridOutcome:
    """Run every cell whose result file is missing or failed, `jobs` at a time, results in out/.

    backend: loky (joblib's worker processes on this machine; jobs = 1 runs in-process), dask (a Dask
    distributed cluster at `scheduler`, or a LocalCluster of `jobs` workers) or ray (a Ray cluster at
    `scheduler`, or a local one). jobs = -1 with dask or ray: as many cells at once as the cluster has workers.
    A corrupt file in out/ is moved aside to <name>.corrupt (with a warning) and its cell rerun.
    on_start(cells, cells to run, torch threads a cell uses or 0 where only its worker knows) is called once
    every check has passed, before the first cell runs.
    A cell another run is running (its lock is held) is skipped and listed in GridOutcome.busy. A write the
    disk refuses stops the grid with one AlmabenchError line; every finished file stays as it is.
    watch (almabench.progress) hears of every cell's start and megabatches, from whichever process runs it;
    logs are the live logs every cell writes (almabench.watch).
    """
    if jobs < 1 and not (jobs == -1 and BACKENDS.get(backend).cluster):
        raise AlmabenchError(f"--jobs must be at least 1, got {jobs}")
    check_backend(backend, scheduler)
    configs = check_grid(configs, options)
    precision = resolve_precision(options.precision, resolve_device(options.device))
    prepare_out(out)
    cells = cell_states(configs, out)
    check_same_data(cells, options)
    todo = [cell.config for cell in cells if cell.state != "done"]
    _warn_other_precision(cells, precision)
    if jobs > 1 and options.threads == 0:
        options = RunOptions(**{**options.__dict__, "threads": max(1, (os.cpu_count() or 1) // jobs)})
    threads = options.threads or (0 if BACKENDS.get(backend).cluster else torch.get_num_threads())  # 0: unknown
    if threads:
        check_resumes(todo, options, out, threads)
    if on_start is not None:
        on_start(len(cells), len(todo), threads)
    tally = _Tally(skipped=len(cells) - len(todo))
    in_process = _in_process(backend, jobs, len(todo))
    if watch is not None:
        watch.begin(todo, options, None if in_process else stream_note(backend, scheduler,
                                                                       BACKENDS.get(backend).yields_as_done))
    try:
        with _event_channel(watch, in_process) as events:
            for i, done in enumerate(_execute(todo, options, out, jobs, backend, scheduler, this_run(), events, logs),
                                     start=1):
                if watch is not None:
                    watch.cell_done(done)
                tally.add(done)
                if on_done is not None:
                    on_done(i, len(todo), done)
    except StorageError as exc:
        _remove_temp_files(out, todo)
        raise AlmabenchError(storage_message(exc, out, tally.finished)) from None
    except OtherThreads as exc:  # a cluster's worker found it (its thread count is only known there)
        raise AlmabenchError(str(exc)) from None
    return tally.outcome(len(cells))


@dataclass
class _Tally:
    """What the cells of one run came to, as their outcomes arrive."""

    skipped: int
    ran: int = 0
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    busy: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        """Cells of the grid whose result is in the folder: done before, done by another run, or done now."""
        return self.skipped + self.ok

    def add(self, done: dict[str, Any]) -> None:
        if done["status"] == "busy":
            self.busy[done["path"]] = done["holder"]
            return
        if done["status"] == "done":  # another run finished it after this one was planned
            self.skipped += 1
            return
        self.ran += 1
        if done["status"] == "ok":
            self.ok += 1
        else:
            self.failed.append(done["path"])
        if done.get("moved_aside"):
            aside = Path(done["moved_aside"])
            self.corrupt.append(str(aside))
            warnings.warn(f"{done['path']} is not a result ({done['corrupt_detail']}); moved aside to {aside.name}, "
                          f"its cell ({describe(done['config'])}) runs again", stacklevel=4)

    def outcome(self, total: int) -> GridOutcome:
        return GridOutcome(total=total, skipped=self.skipped, ran=self.ran, failed=self.failed,
                           corrupt=self.corrupt, busy=self.busy)


def busy_message(busy: dict[str, str], out: Path) -> str:
    """The one line for cells skipped because another run holds their locks."""
    owners = sorted({describe_owner(owner) for owner in busy.values()})
    return f"{len(busy)} cell(s) are being run by another almabench run ({', '.join(owners)}) in {out}/; skipped"


def storage_message(exc: StorageError, out: Path, finished: int) -> str:
    """The one line for a write the disk refused: what, where, what is kept, and what to do."""
    try:
        where = str(Path(exc.path).relative_to(out))
    except ValueError:
        where = exc.path
    if exc.out_of_space:
        advice = "free space"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = f"make {out}/ writable"
    else:
        advice = "fix that"
    return (f"{exc.reason} under {out}/ (writing {where}): {finished} cell(s) finished and kept; "
            f"{advice} and rerun to continue")


def _remove_temp_files(out: Path, todo: list[RunConfig], wait: float = 2.0) -> None:
    """After a refused write, the temp files of cells whose loky workers joblib killed mid-write (it kills
    the other workers when one raises): each is removed under its cell's lock, which the kernel frees once
    the killed worker is gone (waited for a moment); a cell another run holds is left to that run."""
    ours = this_run()
    pending = [c for c in todo if temp_files(out, c)]
    deadline = time.monotonic() + wait
    while pending:
        still = []
        for config in pending:
            try:
                with cell_lock(out, config, ours) as holder:
                    if holder is None:
                        for stale in temp_files(out, config):
                            stale.unlink(missing_ok=True)
                    elif holder == ours:  # one of our killed workers, not yet reaped
                        still.append(config)
            except (StorageError, OSError):
                continue  # best effort: the next run removes them when it takes the cell
        if not still or time.monotonic() > deadline:
            return
        pending = still
        time.sleep(0.05)


def check_same_data(cells: list[CellState], options: RunOptions) -> None:
    """A done cell is only done for the data it ran on: a file at the same path (or another copy of CIFAR)
    holding other pixels or labels must not count as done, nor be overwritten. Stops with one line instead."""
    for cell in cells:
        if cell.state != "done":
            continue
        try:
            recorded = json.loads(cell.path.read_text())["data"]["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an older or partial record: nothing to compare
        current = load_dataset(cell.config.dataset, options.data_root, options.download).fingerprint
        if recorded != current:
            raise AlmabenchError(
                f"{cell.path} was computed on other data than {cell.config.dataset} holds now (data fingerprint "
                f"{recorded}, now {current}); run into another --out, or move that file away to recompute it")


def _warn_other_precision(cells: list[CellState], precision: str) -> None:
    """Precision is not part of a cell's name (bf16 and fp32 are two roundings of one computation), so a
    cell done in the other one is kept: say so, rather than let the tables mix them unnoticed."""
    other = Counter(cell.detail for cell in cells if cell.state == "done" and cell.detail not in ("", precision))
    for recorded, count in sorted(other.items()):
        warnings.warn(f"{count} cell(s) in this folder were run in {recorded} and are kept; this run computes in "
                      f"{precision} (another --out runs them again in {precision})", stacklevel=3)


def _in_process(backend: str, jobs: int, cells: int) -> bool:
    """Whether the cells run in this process: no worker start-up, same numbers."""
    return not BACKENDS.get(backend).cluster and (jobs == 1 or cells <= 1)


def _event_channel(watch: GridProgress | None, in_process: bool) -> AbstractContextManager[Events | None]:
    """Where cells send their events: straight to watch in-process, through a socket from workers."""
    if watch is None or in_process:
        return nullcontext(None if watch is None else watch.event)
    return Receiver(watch.event)


def _execute(todo: list[RunConfig], options: RunOptions, out: Path, jobs: int, backend: str = "loky",
             scheduler: str | None = None, owner: str = "", events: Events | None = None,
             logs: tuple[LogTarget, ...] = ()) -> Iterator[dict[str, Any]]:
    """Each cell's outcome as it ends. owner ("<pid> <host>" of this run) goes into the lock files the
    workers take, so that another run names this one, not a loky worker's pid, when it finds a cell busy."""
    if not todo:
        return
    chosen = BACKENDS.get(backend)
    if _in_process(backend, jobs, len(todo)):
        yield from (run_and_store(c, options, out, owner, events, logs) for c in todo)
        return
    tasks: Iterable = (delayed(run_and_store)(c, options, out, owner, events, logs) for c in todo)
    n_jobs = min(jobs, len(todo)) if jobs > 0 else jobs
    with chosen.connect(scheduler, jobs if jobs > 0 else (os.cpu_count() or 1)):
        return_as = "generator_unordered" if chosen.yields_as_done else "list"
        yield from Parallel(n_jobs=n_jobs, return_as=return_as)(tasks)


# ----------------------------------------------------------------------------------------------------------
# Planning: what a grid still costs (almabench run --dry-run) and what a results folder holds (status).


def image_passes(config: RunConfig, n_train: int) -> int:
    """Training images one cell processes: epochs × Σ_t |train_t| (the replay set of each step)."""
    return sum(step_passes(config, n_train))


def _rate_key(arch: str, channels: int, image_size: Any, device: str) -> tuple:
    return arch, int(channels), tuple(int(x) for x in image_size), device.split(":")[0]


def measured_rates(out: Path) -> dict[tuple, tuple[float, int]]:
    """End-to-end training images per second (pruning and evaluation included) of the finished results in
    out/, by (arch, channels, image size, device type): {key: (images/s, number of results)}."""
    totals: dict[tuple, list[float]] = {}
    for path in sorted(out.glob("*.json")) if out.is_dir() else []:
        state, _ = result_state(path)
        if state != "done":
            continue
        try:
            result = json.loads(path.read_text())
            data, env = result["data"], result["environment"]
            key = _rate_key(result["config"]["arch"], data["channels"], data["image_size"], env["device"])
            images = result["config"]["epochs"] * sum(s["train_size"] for s in result["steps"])
            seconds = float(result["seconds"])
        except (KeyError, TypeError, ValueError):
            continue
        if seconds > 0 and images > 0:
            entry = totals.setdefault(key, [0.0, 0.0, 0])
            entry[0] += images
            entry[1] += seconds
            entry[2] += 1
    return {k: (v[0] / v[1], int(v[2])) for k, v in totals.items()}


@dataclass
class Plan:
    cells: list[CellState]
    passes: dict[RunConfig, int | None]  # training image-passes of each cell, None where the data is unknown
    seconds: dict[RunConfig, float | None]  # estimated seconds of each cell still to run
    rates: dict[tuple, tuple[float, int]]  # rate key -> (images/s, results measured)
    keys: dict[RunConfig, tuple]
    unreadable: list[str]  # why a dataset of the grid cannot be read (missing CIFAR files, ...): the run would stop

    @property
    def todo(self) -> list[CellState]:
        return [c for c in self.cells if c.state != "done"]

    def counts(self) -> dict[str, int]:
        return {state: sum(c.state == state for c in self.cells) for state in ("done", "failed", "corrupt", "missing")}


def plan_grid(configs: list[RunConfig], options: RunOptions, out: Path) -> Plan:
    """What running the grid into out/ would do, without running or writing anything."""
    if not configs:
        raise AlmabenchError("the grid is empty")
    for config in configs:
        check_config(config)
    if out.exists() and not out.is_dir():
        raise AlmabenchError(f"--out {out} exists and is not a folder")
    device = resolve_device(options.device).type
    rates = measured_rates(out)
    unreadable, shapes, loaded = [], {}, {}
    for name in dict.fromkeys(c.dataset for c in configs):
        try:
            data = loaded[name] = load_dataset(name, options.data_root, options.download)
            shapes[name] = (data.n_train, data.channels, data.image_size)
        except AlmabenchError as exc:
            unreadable.append(str(exc))
    configs = resolve_configs(configs, options, strict=False)  # a cell's file name depends on its resolved values
    for config in configs:
        if config.dataset in loaded:
            check_resolved(config, loaded[config.dataset])
    cells = cell_states(configs, out)
    passes: dict[RunConfig, int | None] = {}
    seconds: dict[RunConfig, float | None] = {}
    keys: dict[RunConfig, tuple] = {}
    for cell in cells:
        c = cell.config
        if c.dataset not in shapes:
            passes[c] = seconds[c] = None
            continue
        n_train, channels, size = shapes[c.dataset]
        try:
            check_stream(n_train, c.megabatches, c.val_fraction, c.stream_images)
        except AlmabenchError as exc:
            raise AlmabenchError(f"{quoted(c.dataset)}: {exc}") from None
        passes[c] = image_passes(c, n_train)
        keys[c] = _rate_key(c.arch, channels, size, device)
        rate = rates.get(keys[c])
        seconds[c] = passes[c] / rate[0] if rate else None
    return Plan(cells, passes, seconds, rates, keys, unreadable)


def folder_states(out: Path) -> list[tuple[Path, str, str, dict[str, Any] | None, str | None]]:
    """Every <hash>.json in out/: (path, state, detail, config or None, data fingerprint or None)."""
    rows = []
    for path in sorted(out.glob("*.json")):
        state, detail = result_state(path)
        doc: Any = None
        if state in ("done", "failed"):
            try:
                doc = json.loads(path.read_text())
            except (OSError, ValueError):
                doc = None
        config = doc.get("config") if isinstance(doc, dict) else None
        data = doc.get("data") if isinstance(doc, dict) else None
        fingerprint = data.get("fingerprint") if isinstance(data, dict) else None
        rows.append((path, state, detail, config if isinstance(config, dict) else None,
                     fingerprint if isinstance(fingerprint, str) else None))
    return rows
