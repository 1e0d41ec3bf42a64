"""The task's side of --backend slurm: one array task runs its cell as a loky worker does, and at Slurm's warning
(time limit or preemption) requeues itself, or fails with a record saying why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from almabench.backends.slurm_files import checkpoint_steps, log_path, read_record
from almabench.backends.slurm_settings import SlurmSettings, time_seconds
from almabench.cell.config import RunConfig, RunOptions
from almabench.errors import AlmabenchError
from almabench.grid.job import failure_record, run_and_store
from almabench.grid.locks import cell_lock
from almabench.grid.progress import step_line
from almabench.results.store import SLURM_DIR, checkpoint_path, result_path, result_state, write_json_atomic
from almabench.safe_paths import read_bytes

WARNING_SLACK = 90  # Slurm sends the time-limit signal up to 60 s early; more than this left means preemption


@dataclass(frozen=True)
class SlurmCell:
    """What one array task runs (pickled by submitit): its cell, as a loky worker runs it."""

    options: RunOptions
    out: str
    settings: SlurmSettings
    logs: tuple = ()

    def __call__(self, config: RunConfig) -> str:

        out = Path(self.out)
        job = _job_id()
        threads = self.options.threads or int(os.environ.get("SLURM_CPUS_PER_TASK") or 1)
        attempt = Attempt(config, out, self.settings, job)
        attempt.listen()
        done = run_and_store(config, replace(self.options, threads=threads), out, f"slurm {job}", attempt.event,
                             self.logs)
        attempt.running = False
        print(f"{config.hash()}.json: {done['status']}", flush=True)
        if done["status"] == "failed":  # name this task's log in the record (under the lock, as written)
            with cell_lock(out, config, f"slurm {job}") as holder:
                path = result_path(out, config)
                if holder is None and result_state(path)[0] == "failed" and (record := read_record(path)):
                    log = str(log_path(out, job))
                    write_json_atomic(path, {**record, **failure_record(config, record.get("error", ""),
                                                                        record.get("traceback", ""),
                                                                        slurm_job=job, slurm_log=log)})
        return str(done["status"])


def _job_id() -> str:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "?")


class Attempt:
    """One life of a task between requeues, and what it does at Slurm's warning. What it has done is read from
    the cell's checkpoint (the megabatches there are the ones a requeue keeps)."""

    def __init__(self, config: RunConfig, out: Path, settings: SlurmSettings, job: str) -> None:

        self.config, self.out, self.settings, self.job = config, out, settings, job
        self.started = time.monotonic()
        self.checkpoint = checkpoint_path(out, config)
        # megabatches done before this attempt, in all
        self.initial = self.steps = len(checkpoint_steps(self.checkpoint))
        self.running = True
        self.state_path = out / SLURM_DIR / "requeues" / f"{job}.json"

    def listen(self) -> None:
        signal.signal(signal.SIGUSR2, lambda signum, frame: self.warned())

    def event(self, message: dict[str, Any]) -> None:
        """The cell's progress (execute.run_and_store's events): a line in the task's log."""

        if message["kind"] == "resumed":
            print(f"resumed after megabatch {message['steps']} of {self.config.megabatches}", flush=True)
        elif message["kind"] == "step":
            print(step_line(self.config, message["step"]), flush=True)

    def warned(self) -> None:
        """Slurm's USR2: a time limit ahead (little time left) or a preemption. Requeue, or fail with a record."""

        if not self.running or result_state(result_path(self.out, self.config))[0] == "done":
            return  # the cell is done (or being stored): let it end
        left, limit = _time_left(self.job)
        counts = self._counts()
        steps = checkpoint_steps(self.checkpoint)
        self.steps = len(steps)
        if left is None or left > self.settings.signal_delay + WARNING_SLACK:
            counts["preemptions"] += 1
            self._requeue(counts, f"preempted after megabatch {self.steps} of {self.config.megabatches}")
        # the job's time so far as Slurm counts it (start-up included); this process's where squeue cannot say
        ran = limit - left if limit is not None and left is not None else time.monotonic() - self.started
        last_seconds = float(steps[-1]["seconds"]) if steps else None  # the last finished megabatch's time
        limit_text = _clock(limit) if limit is not None else self.settings.time or "?"
        window = None if limit is None else limit - self.settings.signal_delay  # a job's time before the warning
        stalled = counts["stalled"] + 1 if self.steps == self.initial else 0  # jobs in a row that finished none
        # Slurm looks at time limits every 30 s or so and may warn that much early: one job without a megabatch
        # may have had little time; two in a row, or one that had all its time, show it does not fit
        if stalled and (stalled >= 2 or (window is not None and max(ran, last_seconds or 0) >= window)):
            last = (f"the last finished megabatch took {last_seconds:.0f} s" if last_seconds is not None
                    else "none of its megabatches has finished yet")
            self._fail(f"megabatch {self.steps + 1} of {self.config.megabatches} cannot finish inside the Slurm time "
                       f"limit of {limit_text}: {stalled} job(s) in a row reached Slurm's warning "
                       f"({self.settings.signal_delay} s before the limit) without finishing it, this one after "
                       f"{ran:.0f} s, and {last}; give it a longer --slurm time=")
        if counts["timeouts"] >= self.settings.max_timeouts:
            self._fail(f"reached the Slurm time limit of {limit_text} {counts['timeouts'] + 1} time(s) (max_timeouts = "
                       f"{self.settings.max_timeouts}); {self.steps} of {self.config.megabatches} megabatches are done "
                       f"and checkpointed: submit it again to go on, with a longer --slurm time= or a larger "
                       f"max_timeouts")
        counts["timeouts"] += 1
        counts["stalled"] = stalled
        self._requeue(counts, f"time limit {limit_text} ahead after megabatch {self.steps} of "
                              f"{self.config.megabatches} (timeout {counts['timeouts']} of "
                              f"{self.settings.max_timeouts})")

    def _counts(self) -> dict[str, int]:
        counts = {"timeouts": 0, "preemptions": 0, "stalled": 0}
        try:
            counts.update({k: int(v) for k, v in json.loads(read_bytes(self.state_path, self.out)).items()
                           if k in counts})
        except (OSError, ValueError, TypeError, AttributeError, AlmabenchError):
            pass
        return counts

    def _requeue(self, counts: dict[str, int], why: str) -> None:

        write_json_atomic(self.state_path, counts, self.out)  # its folder made inside out/, or one line
        print(f"requeued: {why}", flush=True)
        subprocess.run(["scontrol", "requeue", os.environ.get("SLURM_JOB_ID", self.job)], timeout=60)
        raise SystemExit(0)  # unwinds the cell (its lock is released); the requeued job resumes it

    def _fail(self, error: str) -> None:

        record = failure_record(self.config, error, slurm_job=self.job, slurm_log=str(log_path(self.out, self.job)))
        write_json_atomic(result_path(self.out, self.config), record)  # this task holds the cell's lock
        print(f"failed: {error}", flush=True)
        raise SystemExit(1)


def _time_left(job: str) -> tuple[int | None, int | None]:
    """(seconds left, time limit) of the job, from squeue; None where unlimited or unknown."""
    try:
        done = subprocess.run(["squeue", "-h", "-j", os.environ.get("SLURM_JOB_ID", job), "-o", "%L|%l"],
                              capture_output=True, text=True, timeout=30)
        left, _, limit = done.stdout.strip().partition("|")
        return time_seconds(left), time_seconds(limit)
    except (OSError, subprocess.TimeoutExpired, AlmabenchError):
        return None, None


def _clock(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    clock = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{clock}" if days else clock

