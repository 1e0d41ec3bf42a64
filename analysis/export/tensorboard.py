"""--to tensorboard (and `run --log tensorboard`): one run directory per cell, written with torch's
SummaryWriter (the tensorboard package; TensorFlow is never needed).

The directory is runs.run_name (dataset/arch/T=/epochs=/method/seed=..-hash), so TensorBoard's run selector
groups the cells by block. Scalars are logged per megabatch (step = megabatch t); the hparams table (the
config, and the final metrics as scalars at step T) goes into the same directory, not into the timestamped
subfolder SummaryWriter.add_hparams would make.

Each step is in the log once: a run opened to go on after a resume (or to start a cell again) writes with
purge_step = 1 and logs every recorded step again, so TensorBoard drops whatever an earlier process had
written of this run; an export first removes the earlier event files of the cells it writes. TensorBoard reads a
run's event files in name order, and a name starts with the second its writer opened: a new writer therefore waits
until its second is past every earlier file's, or a rerun opened in the killed process's second could sort first and
have its steps purged by the older file's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from .dest import inside
from .runs import export_runs, final_metrics, hparams, run_name, step_scalars

EVENT_FILES = "events.out.tfevents.*"


def opened_second(event_file: Path) -> int | None:
    """The whole second an event file's writer opened (events.out.tfevents.SECOND.host.pid.uid); None for a
    name no writer made."""
    second = event_file.name.split(".")[3]
    return int(second) if second.isdigit() else None


def wait_to_sort_last(run_dir: Path) -> None:
    """Sleep (under a second, or as long as a file from the future needs) until a writer opened now sorts after every
    event file already in run_dir."""
    newest = max((s for f in run_dir.glob(EVENT_FILES) if (s := opened_second(f)) is not None), default=None)
    if newest is not None:
        while time.time() < newest + 1:
            time.sleep(newest + 1 - time.time())


class TensorBoardRun:
    """One cell's TensorBoard run directory under dest."""

    def __init__(self, dest: Path, config: dict[str, Any], config_hash: str, replace: bool = False) -> None:
        self.dir = inside(dest, Path(dest) / run_name(config, config_hash))
        self.dir.mkdir(parents=True, exist_ok=True)
        if replace:  # an earlier export's event files (a link is removed, never what it points to)
            for old in self.dir.glob(EVENT_FILES):
                if old.is_file() or old.is_symlink():
                    old.unlink()
        self.config, self.config_hash = config, config_hash
        wait_to_sort_last(self.dir)
        # purge_step=1: every earlier event of this run is superseded by what this writer logs
        self.writer = SummaryWriter(str(self.dir), purge_step=None if replace else 1, flush_secs=3600)

    def step(self, step: dict[str, Any], cer_so_far: int, wall_time: float | None = None) -> None:
        for tag, value in step_scalars(step, cer_so_far).items():
            self.writer.add_scalar(tag, value, step["step"], walltime=wall_time)
        self.writer.flush()  # a killed worker loses at most the step it was writing

    def finish(self, result: dict[str, Any], wall_time: float | None = None) -> None:
        last = result["steps"][-1]["step"]
        metrics = final_metrics(result)
        file_writer = self.writer._get_file_writer()  # noqa: SLF001 - the same file, not add_hparams' subfolder
        for summary in hparams_summary(hparams(self.config, self.config_hash), metrics):
            file_writer.add_summary(summary, last, wall_time)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, last, walltime=wall_time)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def export(results: list[tuple[Path, dict[str, Any]]], root: Path, dest: Path) -> str:
    n = export_runs(TensorBoardRun, results, dest)
    return f"{n} run directories"


LIVE_RUN = TensorBoardRun  # what `almabench run --log` opens for each cell (almabench.watch)
