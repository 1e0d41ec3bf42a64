"""--backend slurm: each cell one task of a Slurm job array (submitted with submitit), resumed through time
limits and preemption.

The parent submits (submit_and_wait, the backend's submit hook), then follows the cells in the results folder,
since a cell on another node cannot reach its socket: a checkpoint's new step records are its megabatches, a
result file its end, and squeue whether its job still lives (one that ended without a result gets a failure
record naming its log). A task runs its cell as a loky worker does (execute.run_and_store: the same file, name
and per-cell lock), on the device Slurm gave it and with its cores as torch threads.

Time limits and preemption: Slurm signals the task (USR2, `signal_delay` seconds before its time limit, and at
preemption where the cluster sets SlurmctldParameters=preempt_send_user_signal, as submitit expects). The task
then requeues itself (scontrol requeue: the same job id) and exits; the requeued task resumes from the cell's
last checkpoint, so its result file equals an uninterrupted run's. A time limit requeues at most max_timeouts
times, a preemption any number of times; where two jobs in a row (or one that had all its time) reach the
warning without finishing a megabatch, the cell fails with a record naming the time limit and the megabatch's
time, instead of requeueing for ever.

Under <out>/.slurm/: submitit's job files and the logs (<array>_<task>_0_log.out and .err); submissions.jsonl
(each array's id and the cells of its tasks: `almabench status` and a second submission read it, and the
second leaves out the cells whose job still lives); requeues/<job>.json (a task's time limits so far).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from almabench.backends.slurm_files import checkpoint_steps, log_path, read_record
from almabench.backends.slurm_settings import SBATCH_KEYS, SlurmSettings
from almabench.backends.slurm_task import SlurmCell
from almabench.cell.config import RunConfig, RunOptions
from almabench.errors import AlmabenchError
from almabench.names import one_line
from almabench.results.store import SLURM_DIR
from almabench.safe_paths import create, read_bytes

SUBMISSIONS = "submissions.jsonl"


POLL_SECONDS = 2.0  # how often a waiting parent looks at squeue and the folder


QUEUED = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESV_DEL_HOLD")


RUNNING = ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING")


def describe_plan(todo: list[RunConfig], settings: SlurmSettings, jobs: int, out: Path) -> str:
    """What --dry-run says would be submitted."""
    live = live_cells(out, squeue_states())
    submit = [config for config in todo if config.hash() not in live]
    lanes = "" if jobs < 1 or jobs >= len(submit) else f", at most {jobs} running at once"
    kept = (f"; {len(todo) - len(submit)} cell(s) already queued or running in Slurm are left to their jobs"
            if len(submit) < len(todo) else "")
    return (f"slurm: would submit one job array of {len(submit)} task(s), one a cell{lanes}, each with "
            f"{settings.resources()}; requeued at the time limit up to max_timeouts = {settings.max_timeouts} "
            f"time(s) and on preemption always (warned {settings.signal_delay} s before); logs in "
            f"{out / SLURM_DIR}/{kept}")


@dataclass(frozen=True)
class Submitted:
    array: str  # the job array's id (a single cell is a plain job: its id)
    jobs: dict[str, RunConfig]  # job id (<array>_<task>) -> its cell


def submit(todo: list[RunConfig], options: RunOptions, out: Path, jobs: int, settings: SlurmSettings,
           logs: tuple = ()) -> Submitted:
    """Submit the cells as one job array and record it in <out>/.slurm/submissions.jsonl."""
    import submitit

    if not str(out.resolve()).isprintable():  # the folder reaches the script's #SBATCH --output line
        raise AlmabenchError(f"--out {str(out)!r} holds a newline or control character; Slurm's job script cannot "
                             f"name it: pick a plain folder name")
    executor = submitit.SlurmExecutor(folder=out / SLURM_DIR, max_num_timeout=settings.max_timeouts)
    extra = {k: str(getattr(settings, k)) for k in SBATCH_KEYS if getattr(settings, k)}
    # time=None drops submitit's default of 5 minutes (unset: the partition's); the rest as sbatch spells it
    executor.update_parameters(time=None, job_name="almabench", signal_delay_s=settings.signal_delay,
                               array_parallelism=jobs if jobs > 0 else len(todo), additional_parameters=extra)
    # opened before sbatch runs, inside out/ and never through a link (safe_paths): a refusal submits nothing
    with os.fdopen(create(out, out / SLURM_DIR / SUBMISSIONS, os.O_WRONLY | os.O_APPEND), "a") as f:
        try:
            # an absolute --out: a job starts in the submission's folder by default, a cluster may start it elsewhere
            handles = executor.map_array(SlurmCell(options, str(out.resolve()), settings, tuple(logs)), todo)
        except Exception as exc:  # noqa: BLE001 - sbatch's refusal, in its words
            raise AlmabenchError(f"sbatch refused the job array: {one_line(str(exc))}") from None
        submitted = Submitted(handles[0].job_id.partition("_")[0], {h.job_id: c for h, c in zip(handles, todo)})
        record = {"array": submitted.array, "jobs": {job: c.hash() for job, c in submitted.jobs.items()},
                  "submitted": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        f.write(json.dumps(record) + "\n")
    return submitted


def squeue_states() -> dict[str, str] | None:
    """{job id (<array>_<task>): state} of this user's jobs still in Slurm; None where squeue is not there or
    fails (then nothing is concluded from it)."""
    try:
        done = subprocess.run(["squeue", "--me", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return dict(line.split(None, 1) for line in done.stdout.splitlines() if len(line.split(None, 1)) == 2)


def submissions(out: Path) -> list[dict[str, Any]]:
    """The job arrays submitted into this folder (submissions.jsonl; a damaged line is skipped)."""
    path = out / SLURM_DIR / SUBMISSIONS
    records = []
    try:
        text = read_bytes(path, out).decode(errors="replace") if path.is_file() else ""
    except (OSError, AlmabenchError):  # a link out of the folder is not read
        text = ""
    for line in text.splitlines():
        try:
            record = json.loads(line)
            records.append({"array": str(record["array"]), "jobs": {str(j): str(h) for j, h in record["jobs"].items()}})
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):  # nested too deeply: damaged too
            continue
    return records


def live_cells(out: Path, states: dict[str, str] | None) -> dict[str, tuple[str, str]]:
    """{cell hash: (job id, Slurm state)} of the cells of this folder whose job is still in Slurm."""
    if not states:
        return {}
    return {cell: (job, states[job]) for record in submissions(out) for job, cell in record["jobs"].items()
            if job in states}


def submit_and_wait(todo: list[RunConfig], options: RunOptions, out: Path, jobs: int,
                    settings: SlurmSettings | None, events: Callable[[dict[str, Any]], None] | None,
                    logs: tuple = ()) -> Iterator[dict[str, Any]]:
    """The backend's submit hook: cells whose job from an earlier submission still lives come back "busy"; the
    rest are submitted and followed until each has its result file, or its job ended without one. Ctrl-C
    cancels the jobs of this submission."""
    from almabench.results.store import result_path

    live = live_cells(out, squeue_states())
    for config in todo:
        if config.hash() in live:
            yield {"config": config, "path": str(result_path(out, config)), "status": "busy",
                   "holder": f"slurm {live[config.hash()][0]}", "result": None}
    todo = [config for config in todo if config.hash() not in live]
    if not todo:
        return
    submitted = submit(todo, options, out, jobs, settings or SlurmSettings(), logs)
    try:
        yield from follow(submitted, out, events)
    except KeyboardInterrupt:
        cancelled = cancel(submitted)
        raise AlmabenchError(f"interrupted: cancelled {cancelled} Slurm job(s) of job array {submitted.array}; "
                             f"finished cells are kept in {out}/") from None
    except GeneratorExit:  # the run stopped for another reason: its jobs go with it
        cancel(submitted)
        raise


def cancel(submitted: Submitted) -> int:
    """scancel the array; returns how many of its tasks were still in Slurm."""
    states = squeue_states() or {}
    alive = sum(job in states for job in submitted.jobs)
    subprocess.run(["scancel", submitted.array], capture_output=True, timeout=60)
    return alive


def follow(submitted: Submitted, out: Path, events: Callable[[dict[str, Any]], None] | None,
           poll: float = POLL_SECONDS) -> Iterator[dict[str, Any]]:
    """Each cell's outcome as its result file appears (or its job ends without one), with its megabatches sent
    to events as they land in its checkpoint."""
    from almabench.results.store import checkpoint_path, result_path

    pending = dict(submitted.jobs)
    stamps = {job: _stamp(result_path(out, config)) for job, config in pending.items()}
    told = {job: len(checkpoint_steps(checkpoint_path(out, config))) for job, config in pending.items()}
    started: set[str] = set()
    while pending:
        states = squeue_states()
        for job, config in list(pending.items()):
            if states is not None and states.get(job) in RUNNING and job not in started:
                started.add(job)
                _tell(events, {"kind": "start", "cell": config.hash()})
                if told[job]:
                    _tell(events, {"kind": "resumed", "cell": config.hash(), "steps": told[job]})
            if job in started:
                told[job] = _new_steps(config, checkpoint_path(out, config), told[job], events)
            outcome = _finished(config, result_path(out, config), stamps[job])
            if outcome is None and states is not None and job not in states:
                outcome = _ended_without_result(config, out, job, stamps[job])
            if outcome is not None:
                del pending[job]
                yield outcome
        if pending:
            time.sleep(poll)


def _tell(events: Callable[[dict[str, Any]], None] | None, message: dict[str, Any]) -> None:
    if events is not None:
        events(message)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _new_steps(config: RunConfig, checkpoint: Path, told: int, events: Callable[[dict[str, Any]], None] | None) -> int:
    from almabench.grid.progress import STEP_KEYS

    steps = checkpoint_steps(checkpoint)
    for step in steps[told:]:
        _tell(events, {"kind": "step", "cell": config.hash(), "step": {k: step[k] for k in STEP_KEYS}})
    return max(told, len(steps))


def _finished(config: RunConfig, path: Path, stamp: tuple[int, int] | None) -> dict[str, Any] | None:
    """The cell's outcome once its result file is done, or a failure record newer than the submission."""
    from almabench.results.store import result_state

    state, _ = result_state(path)
    if state == "done" or (state == "failed" and _stamp(path) != stamp):
        return {"config": config, "path": str(path), "status": "ok" if state == "done" else "failed",
                "result": read_record(path)}
    return None


def _ended_without_result(config: RunConfig, out: Path, job: str, stamp: tuple[int, int] | None) -> dict[str, Any]:
    """Its job left Slurm and no result came: a failure record naming the job and its log (taken under the
    cell's lock: a cell another run holds is "busy", one it finished meanwhile is "done")."""
    from almabench.grid.job import failure_record
    from almabench.grid.locks import cell_lock
    from almabench.results.store import result_path, write_json_atomic

    path = result_path(out, config)
    with cell_lock(out, config, f"{os.getpid()} {os.uname().nodename}") as holder:
        if holder is not None:
            return {"config": config, "path": str(path), "status": "busy", "holder": holder, "result": None}
        if (outcome := _finished(config, path, stamp)) is not None:
            return outcome
        log = log_path(out, job)
        record = failure_record(config, f"its Slurm job {job} ended without a result (cancelled, killed, out of "
                                        f"memory or its node lost); its log: {log}",
                                slurm_job=job, slurm_log=str(log))
        from almabench.results.store import result_state

        if result_state(path)[0] != "corrupt":  # a corrupt file is moved aside by the run that takes the cell
            write_json_atomic(path, record)
    return {"config": config, "path": str(path), "status": "failed", "result": record}


def detached(configs: list[RunConfig], options: RunOptions, out: Path, jobs: int, settings: SlurmSettings,
             logs: tuple = ()) -> str:
    """`run --detach`: every check a waiting run makes, then submit and say what was submitted."""
    from almabench.backends.base import BACKENDS
    from almabench.grid.prepare import prepare_grid

    cells, todo, options, _ = prepare_grid(configs, options, out, jobs, BACKENDS.get("slurm"), "slurm")
    live = live_cells(out, squeue_states())
    submit_ = [config for config in todo if config.hash() not in live]
    lines = [f"{len(cells)} cell(s), results in {out}/: {len(cells) - len(todo)} done, "
             f"{len(todo) - len(submit_)} queued or running in Slurm already, {len(submit_)} to submit"]
    if submit_:
        submitted = submit(submit_, options, out, jobs, settings, logs)
        jobs_ = list(submitted.jobs)
        lines.append(f"submitted job array {submitted.array}: job(s) {jobs_[0]}"
                     + (f" .. {jobs_[-1]}" if len(jobs_) > 1 else "") + f" ({settings.resources()}); "
                     f"logs in {out / SLURM_DIR}/")
    lines.append(f"follow it with: almabench status {out}")
    return "\n".join(lines)


def status_lines(results: Path) -> list[str]:
    """`almabench status`: the cells of this folder queued or running in Slurm (from squeue)."""
    records = submissions(results)
    if not records:
        return []
    cells = {cell for record in records for cell in record["jobs"].values()}
    states = squeue_states()
    if states is None:
        return [f"Slurm: {len(cells)} cell(s) were submitted from this folder ({results / SLURM_DIR}/); squeue is "
                f"not there (or failed), so which are queued or running is unknown"]
    live = live_cells(results, states)
    queued = sorted((job, cell) for cell, (job, state) in live.items() if state in QUEUED)
    running = sorted((job, cell) for cell, (job, state) in live.items() if state not in QUEUED)
    lines = [f"Slurm (squeue): {len(queued)} cell(s) queued, {len(running)} running"]
    for job, cell in running + queued:
        lines.append(f"  {live[cell][1].lower():10} job {job:12} {cell}.json")
    return lines

