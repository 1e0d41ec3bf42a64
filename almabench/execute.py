"""Running a grid: the cells still to do, run and stored, one JSON file each.

Cells run in-process, in joblib's loky worker processes, on a Dask or Ray cluster, or as Slurm jobs (the same
files come out). A cell is done when its result file is; failed and missing cells are run again, a corrupt file is moved
aside (never deleted) and its cell run again, and a cell killed midway resumes from its last megabatch.
Each cell runs under its own lock (almabench.locks), so two runs into one folder share the work instead of
doing it twice; a full disk stops the grid with one line and keeps every finished file.
"""

from __future__ import annotations

import errno
import os
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from joblib import Parallel, delayed

from almabench.backends import BACKENDS, check_backend
from almabench.channel import Receiver
from almabench.checkpoint import OtherThreads, check_resumes
from almabench.config import RunConfig, RunOptions
from almabench.data import load_dataset
from almabench.device import resolve_device
from almabench.errors import AlmabenchError
from almabench.locks import LOCK_DIR, cell_lock, describe_owner, this_run
from almabench.progress import GridProgress, stream_note
from almabench.run import run_cell
from almabench.safe_paths import OutsideFolder, inside, remove
from almabench.slurm import SLURM_DIR
from almabench.specs import check_grid, describe
from almabench.stale import changed_lines, mark_changed, move_replaced
from almabench.store import (
    CHECKPOINT_DIR,
    CellFile,
    StorageError,
    cell_files,
    checkpoint_path,
    json_safe,
    move_aside,
    read_json,
    result_path,
    result_state,
    temp_files,
    write_json_atomic,
)
from almabench.train import resolve_precision
from almabench.watch import CellWatch, Events, LogTarget


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

        def on_resume(k: int) -> None:
            resumed.append(k)
            watch.resumed(k)

        try:
            result = run_cell(config, options, progress=watch.step, checkpoint=checkpoint, on_resume=on_resume)
            write_json_atomic(path, result)  # inside: a value JSON cannot hold (NaN) fails this cell only
            watch.finish(result)
        finally:
            watch.close()
    except (StorageError, OtherThreads, OutsideFolder):  # not the cell's failure: no record, the run stops
        raise
    except Exception as exc:  # noqa: BLE001 - one failed cell must not stop the others
        result = failure_record(config, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        write_json_atomic(path, result)
    if result["status"] == "ok":
        remove(out, checkpoint)
    return result, resumed[0] if resumed else 0


def failure_record(config: RunConfig, error: str, trace: str = "", **extra: Any) -> dict[str, Any]:
    """A cell's failure record: what a rerun reads as "failed" (and runs again), with why."""
    # json_safe: whatever floats the config holds (an API caller may skip the checks)
    return json_safe({"status": "failed", "config_hash": config.hash(), "config": config.to_dict(), "error": error,
                      "traceback": trace, **extra})


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
    for sub in (LOCK_DIR, CHECKPOINT_DIR, SLURM_DIR):  # before anything is written: no link out of out/ there
        inside(out, out / sub)
    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise AlmabenchError(f"results folder {out} is not writable: {exc.strerror or exc}") from None


def run_grid(
    configs: list[RunConfig],
    options: RunOptions,
    out: Path,
    jobs: int = 1,
    on_done: Callable[[int, int, dict[str, Any]], None] | None = None,
    backend: str = "loky",
    scheduler: str | None = None,
    on_start: Callable[[int, int, int], None] | None = None,
    watch: GridProgress | None = None,
    logs: tuple[LogTarget, ...] = (),
    settings: Any = None,
    rerun_changed: bool = False,
    on_changed: Callable[[list[str]], None] | None = None,
) -> GridOutcome:
    """Run every cell whose result file is missing or failed, `jobs` at a time, results in out/.

    backend: loky (joblib's worker processes on this machine; jobs = 1 runs in-process), dask (a Dask
    distributed cluster at `scheduler`, or a LocalCluster of `jobs` workers) or ray (a Ray cluster at
    `scheduler`, or a local one) or slurm (a job array; settings: its almabench.slurm.SlurmSettings). jobs = -1
    with dask or ray: as many cells at once as the cluster has workers; with slurm: as Slurm allows.
    A corrupt file in out/ is moved aside to <name>.corrupt (with a warning) and its cell rerun.
    on_start(cells, cells to run, torch threads a cell uses or 0 where only its worker knows) is called once
    every check has passed, before the first cell runs, then on_changed with the lines that name the finished cells
    made by other plugin code (almabench.stale; rerun_changed runs them again).
    A cell another run is running (its lock is held) is skipped and listed in GridOutcome.busy. A write the
    disk refuses stops the grid with one AlmabenchError line; every finished file stays as it is.
    watch (almabench.progress) hears of every cell's start and megabatches, from whichever process runs it;
    logs are the live logs every cell writes (almabench.watch).
    """
    cells, todo, options, threads = prepare_grid(configs, options, out, jobs, backend, scheduler, rerun_changed)
    if on_start is not None:
        on_start(len(cells), len(todo), threads)
    if on_changed is not None:
        on_changed(changed_lines(cells, rerun_changed))
    tally = _Tally(skipped=len(cells) - len(todo))
    in_process = _in_process(backend, jobs, len(todo))
    if watch is not None:
        watch.begin(todo, options, None if in_process else stream_note(backend, scheduler,
                                                                       BACKENDS.get(backend).yields_as_done))
    try:
        # a backend that submits cells itself reads their progress from the folder: no socket to open
        with _event_channel(watch, in_process or BACKENDS.get(backend).submit is not None) as events:
            for i, done in enumerate(_execute(todo, options, out, jobs, backend, scheduler, this_run(), events, logs,
                                              settings), start=1):
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


def prepare_grid(configs: list[RunConfig], options: RunOptions, out: Path, jobs: int, backend: str = "loky",
                 scheduler: str | None = None, rerun_changed: bool = False,
                 ) -> tuple[list[CellFile], list[RunConfig], RunOptions, int]:
    """Every check before a cell runs (or is submitted), and the folder made: (the cells' files, the cells to
    run, the options they run with, the torch threads a cell uses or 0 where only its worker knows). Finished
    cells made by other plugin code (almabench.stale) are marked; with rerun_changed their files are moved aside
    and they run again."""
    if jobs < 1 and not (jobs == -1 and BACKENDS.get(backend).cluster):
        raise AlmabenchError(f"--jobs must be at least 1, got {jobs}")
    check_backend(backend, scheduler)
    configs = check_grid(configs, options)
    precision = resolve_precision(options.precision, resolve_device(options.device))
    prepare_out(out)
    cells = mark_changed(cell_files(configs, out))
    check_same_data(cells, options)
    if rerun_changed:
        for cell in cells:
            if cell.changed:
                move_replaced(cell)
    todo = [cell.config for cell in cells if cell.state != "done" or (rerun_changed and cell.changed)]
    _warn_other_precision(cells, precision)
    if jobs > 1 and options.threads == 0 and BACKENDS.get(backend).submit is None:
        options = RunOptions(**{**options.__dict__, "threads": max(1, (os.cpu_count() or 1) // jobs)})
    threads = options.threads or (0 if BACKENDS.get(backend).cluster else torch.get_num_threads())  # 0: unknown
    if threads:
        check_resumes(todo, options, out, threads)
    return cells, todo, options, threads


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


def check_same_data(cells: list[CellFile], options: RunOptions) -> None:
    """A done cell is only done for the data it ran on: a file at the same path (or another copy of CIFAR)
    holding other pixels or labels must not count as done, nor be overwritten. Stops with one line instead."""
    for cell in cells:
        if cell.state != "done":
            continue
        try:
            recorded = read_json(cell.path, cell.path.parent)["data"]["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an older or partial record: nothing to compare
        current = load_dataset(cell.config.dataset, options.data_root, options.download).fingerprint
        if recorded != current:
            raise AlmabenchError(
                f"{cell.path} was computed on other data than {cell.config.dataset} holds now (data fingerprint "
                f"{recorded}, now {current}); run into another --out, or move that file away to recompute it")


def _warn_other_precision(cells: list[CellFile], precision: str) -> None:
    """Precision is not part of a cell's name (bf16 and fp32 are two roundings of one computation), so a
    cell done in the other one is kept: say so, rather than let the tables mix them unnoticed."""
    other = Counter(cell.detail for cell in cells if cell.state == "done" and cell.detail not in ("", precision))
    for recorded, count in sorted(other.items()):
        warnings.warn(f"{count} cell(s) in this folder were run in {recorded} and are kept; this run computes in "
                      f"{precision} (another --out runs them again in {precision})", stacklevel=4)


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
             logs: tuple[LogTarget, ...] = (), settings: Any = None) -> Iterator[dict[str, Any]]:
    """Each cell's outcome as it ends. owner ("<pid> <host>" of this run) goes into the lock files the
    workers take, so that another run names this one, not a loky worker's pid, when it finds a cell busy."""
    if not todo:
        return
    chosen = BACKENDS.get(backend)
    if chosen.submit is not None:
        yield from chosen.submit(todo, options, out, jobs, settings, events, logs)
        return
    if _in_process(backend, jobs, len(todo)):
        yield from (run_and_store(c, options, out, owner, events, logs) for c in todo)
        return
    tasks: Iterable = (delayed(run_and_store)(c, options, out, owner, events, logs) for c in todo)
    n_jobs = min(jobs, len(todo)) if jobs > 0 else jobs
    with chosen.connect(scheduler, jobs if jobs > 0 else (os.cpu_count() or 1)):
        return_as = "generator_unordered" if chosen.yields_as_done else "list"
        yield from Parallel(n_jobs=n_jobs, return_as=return_as)(tasks)
