"""The per-cell job every backend calls: run one cell under its lock and write its result or failure record.

loky, Dask and Ray workers and Slurm tasks all run run_and_store, so the same files come out wherever a cell ran.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from almabench.cell.checkpoint import OtherThreads
from almabench.cell.config import RunConfig, RunOptions
from almabench.cell.run import run_cell
from almabench.grid.locks import cell_lock
from almabench.grid.watch import CellWatch, Events, LogTarget
from almabench.results.store import (
    StorageError,
    checkpoint_path,
    json_safe,
    move_aside,
    result_path,
    result_state,
    temp_files,
    write_json_atomic,
)
from almabench.safe_paths import OutsideFolder, remove


def run_and_store(config: RunConfig, options: RunOptions, out: Path, owner: str = "", events: Events | None = None,
                  logs: tuple[LogTarget, ...] = ()) -> dict[str, Any]:
    """Run one cell in a worker and write its result; a failure writes a failure record instead.

    The cell runs under its lock (almabench.grid.locks.cell_lock), taken here, in the process that runs it: if
    another run holds it, nothing is touched and the outcome is "busy"; once held, the file is looked at
    again, since another run may have finished the cell after this grid was planned ("done": kept as is).
    A corrupt file is moved aside under the lock, so two runs never both move it.

    The cell checkpoints after every megabatch in out/.checkpoints/ and resumes from there if it was killed;
    the checkpoint is deleted once the result is written (a failed cell keeps it: a rerun after an
    out-of-memory error goes on from the last good megabatch). A write the disk refuses (StorageError) is
    not the cell's failure: it propagates, no failure record is attempted, and the checkpoint stays.
    events (almabench.grid.watch) hears of its start and megabatches (None: their lines are printed here); logs are
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
