"""Running a grid: the cells still to do, run and stored, one JSON file each.

Cells run in-process, in joblib's loky worker processes, on a Dask or Ray cluster, or as Slurm jobs (the same
files come out). A cell is done when its result file is; failed and missing cells are run again, a corrupt file is moved
aside (never deleted) and its cell run again, and a cell killed midway resumes from its last megabatch.
Each cell runs under its own lock (almabench.grid.locks), so two runs into one folder share the work instead of
doing it twice; a full disk stops the grid with one line and keeps every finished file.
"""

from __future__ import annotations

import errno
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from joblib import Parallel, delayed

from almabench.backends import BACKENDS
from almabench.cell.checkpoint import OtherThreads
from almabench.cell.config import RunConfig, RunOptions
from almabench.errors import AlmabenchError
from almabench.extend.stale import changed_lines
from almabench.grid.channel import Receiver
from almabench.grid.job import run_and_store
from almabench.grid.locks import cell_lock, describe_owner, this_run
from almabench.grid.prepare import prepare_grid
from almabench.grid.progress import GridProgress, stream_note
from almabench.grid.specs import describe
from almabench.grid.watch import Events, LogTarget
from almabench.results.store import StorageError, temp_files


@dataclass(frozen=True)
class GridOutcome:
    total: int
    skipped: int
    ran: int
    failed: list[str]
    corrupt: list[str] = field(default_factory=list)  # where corrupt files were moved aside to
    busy: dict[str, str] = field(default_factory=dict)  # result path -> owner of the run that holds its lock


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
    `scheduler`, or a local one) or slurm (a job array; settings: its almabench.backends.slurm.SlurmSettings). jobs = -1
    with dask or ray: as many cells at once as the cluster has workers; with slurm: as Slurm allows.
    A corrupt file in out/ is moved aside to <name>.corrupt (with a warning) and its cell rerun.
    on_start(cells, cells to run, torch threads a cell uses or 0 where only its worker knows) is called once
    every check has passed, before the first cell runs, then on_changed with the lines that name the finished cells
    made by other plugin code (almabench.extend.stale; rerun_changed runs them again).
    A cell another run is running (its lock is held) is skipped and listed in GridOutcome.busy. A write the
    disk refuses stops the grid with one AlmabenchError line; every finished file stays as it is.
    watch (almabench.grid.progress) hears of every cell's start and megabatches, from whichever process runs it;
    logs are the live logs every cell writes (almabench.grid.watch).
    """
    cells, todo, options, threads = prepare_grid(configs, options, out, jobs, BACKENDS.get(backend), backend,
                                                 scheduler, rerun_changed)
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
