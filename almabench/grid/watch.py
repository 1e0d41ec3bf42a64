"""What a cell tells the world while it runs, from the process that runs it: its progress to the grid's
parent (almabench.grid.progress, through almabench.grid.channel), or its lines printed where no parent listens, and its
scalars to the live logs asked for with `almabench run --log` (TensorBoard, W&B).

A live log is the export's run (almabench.analysis.export): same directory, same tags. A cell resumed after
k megabatches first logs its k recorded steps again (from the checkpoint it resumed from, at their recorded
times), into a run opened so that those supersede whatever the killed process had written: every step is
in the log once, including a step the killed process had saved but not yet logged.
"""

from __future__ import annotations

import datetime as dt
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from almabench.cell.config import RunConfig
from almabench.errors import AlmabenchError
from almabench.grid.progress import STEP_KEYS, describe, step_line

Events = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class LogTarget:
    """A live log: a format with a live writer (tensorboard, wandb) and the folder it writes into."""

    kind: str
    dest: Path

    @classmethod
    def parse(cls, value: str, out: Path) -> LogTarget:
        """`tensorboard` (into OUT/tensorboard) or `tensorboard:DIR`; an unknown or missing writer, or a folder
        that cannot be written (a file, read-only), is one line before any cell runs: a cell that cannot log would
        write a failure record, and W&B would log into its fallback folder instead."""
        from almabench.analysis.export import WRITERS
        from almabench.analysis.export.dest import check_dest, default_dest

        kind, _, folder = value.partition(":")
        live = [name for name in WRITERS.names() if WRITERS.get(name).live]
        if kind not in live:
            raise AlmabenchError(f"unknown --log {kind!r}; choose from: {', '.join(live)} (optionally NAME:DIR)")
        WRITERS.get(kind).load(kind, flag="--log")  # its package is there, before any cell runs
        target = cls(kind, Path(folder) if folder else default_dest(out, kind))  # a link there: one line
        check_dest(target.dest, f"--log {kind}:FOLDER")
        return target


class CellWatch:
    """The progress callbacks of one cell's run_cell: events or printed lines, and its live logs."""

    def __init__(self, config: RunConfig, checkpoint: Path, events: Events | None = None,
                 logs: tuple[LogTarget, ...] = ()) -> None:
        self.config, self.hash, self.checkpoint, self.events = config, config.hash(), checkpoint, events
        self.runs = [_open_run(target, config) for target in logs]
        self.cer = 0
        self._send({"kind": "start"})

    def resumed(self, steps_done: int) -> None:
        """run_cell's on_resume: the cell goes on after `steps_done` megabatches of its checkpoint."""
        self._send({"kind": "resumed", "steps": steps_done})
        if self.runs:
            started, steps = _checkpoint_steps(self.checkpoint)
            clock = dt.datetime.fromisoformat(started).timestamp()
            for step in steps[:steps_done]:
                clock += float(step["seconds"])
                self._log(step, clock)

    def step(self, step: dict[str, Any]) -> None:
        """run_cell's progress: a megabatch has finished (and is checkpointed)."""
        if self.events is None:
            print(step_line(self.config, step), flush=True)
        else:
            self._send({"kind": "step", "step": {k: step[k] for k in STEP_KEYS}})
        self._log(step, time.time())

    def finish(self, result: dict[str, Any]) -> None:
        if result.get("status") == "ok":
            self._each(lambda run: run.finish(result))

    def close(self) -> None:
        self._each(lambda run: run.close())

    def _log(self, step: dict[str, Any], wall_time: float) -> None:
        self.cer += step["test_errors"]
        self._each(lambda run: run.step(step, self.cer, wall_time))

    def _each(self, call: Callable[[Any], None]) -> None:
        """call(run) for every live log; one that fails is dropped with a warning: a log never fails a cell."""
        for run in list(self.runs):
            try:
                call(run)
            except Exception as exc:  # noqa: BLE001 - the cell's result matters, its log is a view of it
                self.runs.remove(run)
                warnings.warn(f"live log of {describe(self.config)} stopped: {type(exc).__name__}: {exc}",
                              stacklevel=2)

    def _send(self, message: dict[str, Any]) -> None:
        if self.events is None:
            return
        try:
            self.events({**message, "cell": self.hash})
        except Exception as exc:  # noqa: BLE001 - showing progress must never fail the cell
            warnings.warn(f"progress of {describe(self.config)} not shown: {type(exc).__name__}: {exc}", stacklevel=2)


def _open_run(target: LogTarget, config: RunConfig) -> Any:
    from almabench.analysis.export import WRITERS

    module = WRITERS.get(target.kind).load(target.kind, flag="--log")
    return module.LIVE_RUN(target.dest, config.to_dict(), config.hash())


def _checkpoint_steps(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """The start time and step records of a checkpoint, read lazily (mmap: the weights stay on disk)."""
    import json

    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return state["started_at"], json.loads(state["steps"])
