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
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from almabench.config import RunConfig, RunOptions
from almabench.errors import AlmabenchError
from almabench.names import one_line
from almabench.safe_paths import create, read_bytes

SLURM_DIR = ".slurm"
SUBMISSIONS = "submissions.jsonl"
POLL_SECONDS = 2.0  # how often a waiting parent looks at squeue and the folder
WARNING_SLACK = 90  # Slurm sends the time-limit signal up to 60 s early; more than this left means preemption
QUEUED = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESV_DEL_HOLD")
RUNNING = ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING")
SBATCH_KEYS = ("partition", "time", "account", "qos", "constraint", "mem", "cpus_per_task", "gpus_per_node")
# What each text setting may hold: a value reaches the job script only as the value of its #SBATCH line (submitit
# quotes it with shlex), and a newline would end that line and start another, so every setting is checked here.
_NAME = r"[A-Za-z0-9_.+-]+"
TEXT_PATTERNS = {
    "partition": re.compile(rf"{_NAME}(,{_NAME})*"),
    "account": re.compile(_NAME),
    "qos": re.compile(_NAME),
    "constraint": re.compile(r"[A-Za-z0-9_.,&|*()\[\]:!-]+"),  # features joined by & | , with counts [a*2]
    "mem": re.compile(r"[0-9]+([KMGT]B?)?", re.IGNORECASE),
    "time": re.compile(r"[0-9]+([-:][0-9]+)*|UNLIMITED|INFINITE", re.IGNORECASE),
}


@dataclass(frozen=True)
class SlurmSettings:
    """What each task asks Slurm for (unset: the cluster's default), and how it lives through time limits."""

    partition: str = ""
    time: str = ""  # Slurm's formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
    account: str = ""
    qos: str = ""
    constraint: str = ""
    mem: str = ""  # per node, e.g. 32G
    cpus_per_task: int = 0  # also the torch threads of the cell (unless --threads)
    gpus_per_node: int = 0
    max_timeouts: int = 3  # requeues at the time limit; preemptions requeue without limit
    signal_delay: int = 90  # seconds before the time limit that Slurm warns the task

    @classmethod
    def parse(cls, table: dict[str, Any], pairs: tuple[str, ...] = (), source: str = "") -> SlurmSettings:
        """A spec's [slurm] table, then --slurm KEY=VALUE pairs over it; a bad key or value is one line."""
        given: dict[str, tuple[Any, str]] = {key: (value, f"{source} [slurm]") for key, value in table.items()}
        for key, value in table.items():  # before anything is stripped, parsed or written
            _printable(f"{key}={value}", f"{source} [slurm]")
        for pair in pairs:
            _printable(pair, "--slurm")
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            if not sep:
                raise AlmabenchError(f"--slurm expects KEY=VALUE, got {pair!r}")
            given[key.strip()] = (raw.strip(), "--slurm")
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, (value, where) in given.items():
            if key not in kinds:
                raise AlmabenchError(f"{where}: unknown key {key!r}; valid keys: {', '.join(kinds)}")
            values[key] = _value(key, value, kinds[key] == "int", where)
        return cls(**values)

    def resources(self) -> str:
        """The settings as sbatch options, for --dry-run and the submission line."""
        asked = [f"{k}={getattr(self, k)}" for k in SBATCH_KEYS if getattr(self, k)]
        return ", ".join(asked) if asked else "the cluster's defaults"


def _printable(text: str, where: str) -> None:
    """One line where a setting holds a newline or another character that does not print: it would end its
    #SBATCH line in the job script and start a line of its own (a directive, or a command)."""
    if not text.isprintable():
        raise AlmabenchError(f"{where}: {text!r} holds a newline or control character; a Slurm setting is one "
                             f"plain value")


def _value(key: str, value: Any, integer: bool, where: str) -> Any:
    if not integer:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise AlmabenchError(f"{where}: {key} must be a string, got {value!r}")
        text = str(value)
        if key == "time" and text:
            time_seconds(text)  # its own line for a time Slurm would not read
        if text and not TEXT_PATTERNS[key].fullmatch(text):
            raise AlmabenchError(f"{where}: {key} {text!r} is not a Slurm {key} (letters, digits and {key}'s own "
                                 f"separators only)")
        return text
    try:
        number = value if isinstance(value, int) and not isinstance(value, bool) else int(str(value), 10)
    except ValueError:
        raise AlmabenchError(f"{where}: {key} must be a whole number, got {value!r}") from None
    if number < (1 if key == "signal_delay" else 0):
        raise AlmabenchError(f"{where}: {key} must be at least {1 if key == 'signal_delay' else 0}, got {number}")
    return number


def time_seconds(text: str) -> int | None:
    """Slurm's time format in seconds (None: UNLIMITED / INFINITE, or not set); a bad one is one line."""
    text = text.strip()
    if text.upper() in ("UNLIMITED", "INFINITE", "NOT_SET", "N/A", ""):
        return None
    days, dash, rest = text.partition("-")
    if not dash:
        days, rest = "0", text
    try:
        parts = [int(p) for p in rest.split(":")]
        whole_days = int(days)
    except ValueError:
        raise AlmabenchError(f"time {text!r} is not a Slurm time (minutes, MM:SS, HH:MM:SS or D-HH:MM:SS)") from None
    if dash:  # D-HH, D-HH:MM, D-HH:MM:SS
        parts = parts + [0] * (3 - len(parts))
    elif len(parts) == 1:  # minutes
        parts = [0, parts[0], 0]
    elif len(parts) == 2:  # MM:SS
        parts = [0, *parts]
    if len(parts) != 3 or min(parts) < 0 or whole_days < 0:
        raise AlmabenchError(f"time {text!r} is not a Slurm time (minutes, MM:SS, HH:MM:SS or D-HH:MM:SS)")
    return ((whole_days * 24 + parts[0]) * 60 + parts[1]) * 60 + parts[2]


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


# ----------------------------------------------------------------------------------------- the parent's side


@dataclass(frozen=True)
class Submitted:
    array: str  # the job array's id (a single cell is a plain job: its id)
    jobs: dict[str, RunConfig]  # job id (<array>_<task>) -> its cell


def log_path(out: Path, job: str) -> Path:
    """A task's stderr (submitit's name; stdout is the .out beside it)."""
    return out / SLURM_DIR / f"{job}_0_log.err"


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
    from almabench.store import result_path

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
    from almabench.store import checkpoint_path, result_path

    pending = dict(submitted.jobs)
    stamps = {job: _stamp(result_path(out, config)) for job, config in pending.items()}
    told = {job: len(_steps(checkpoint_path(out, config))) for job, config in pending.items()}
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


def _steps(checkpoint: Path) -> list[dict[str, Any]]:
    """The step records of a checkpoint, read lazily (mmap); [] where there is none or it is unusable."""
    from almabench.store import peek_checkpoint

    state = peek_checkpoint(checkpoint)
    try:
        return list(json.loads(state["steps"])) if state is not None else []
    except (KeyError, TypeError, ValueError):
        return []


def _new_steps(config: RunConfig, checkpoint: Path, told: int, events: Callable[[dict[str, Any]], None] | None) -> int:
    from almabench.progress import STEP_KEYS

    steps = _steps(checkpoint)
    for step in steps[told:]:
        _tell(events, {"kind": "step", "cell": config.hash(), "step": {k: step[k] for k in STEP_KEYS}})
    return max(told, len(steps))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(read_bytes(path, path.parent))
    except (OSError, ValueError, AlmabenchError):
        return None
    return doc if isinstance(doc, dict) else None


def _finished(config: RunConfig, path: Path, stamp: tuple[int, int] | None) -> dict[str, Any] | None:
    """The cell's outcome once its result file is done, or a failure record newer than the submission."""
    from almabench.store import result_state

    state, _ = result_state(path)
    if state == "done" or (state == "failed" and _stamp(path) != stamp):
        return {"config": config, "path": str(path), "status": "ok" if state == "done" else "failed",
                "result": _read(path)}
    return None


def _ended_without_result(config: RunConfig, out: Path, job: str, stamp: tuple[int, int] | None) -> dict[str, Any]:
    """Its job left Slurm and no result came: a failure record naming the job and its log (taken under the
    cell's lock: a cell another run holds is "busy", one it finished meanwhile is "done")."""
    from almabench.execute import failure_record
    from almabench.locks import cell_lock
    from almabench.store import result_path, write_json_atomic

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
        from almabench.store import result_state

        if result_state(path)[0] != "corrupt":  # a corrupt file is moved aside by the run that takes the cell
            write_json_atomic(path, record)
    return {"config": config, "path": str(path), "status": "failed", "result": record}


def detached(configs: list[RunConfig], options: RunOptions, out: Path, jobs: int, settings: SlurmSettings,
             logs: tuple = ()) -> str:
    """`run --detach`: every check a waiting run makes, then submit and say what was submitted."""
    from almabench.execute import prepare_grid

    cells, todo, options, _ = prepare_grid(configs, options, out, jobs, "slurm")
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


# ------------------------------------------------------------------------------------------- the task's side


@dataclass(frozen=True)
class SlurmCell:
    """What one array task runs (pickled by submitit): its cell, as a loky worker runs it."""

    options: RunOptions
    out: str
    settings: SlurmSettings
    logs: tuple = ()

    def __call__(self, config: RunConfig) -> str:
        from almabench.execute import failure_record, run_and_store
        from almabench.locks import cell_lock
        from almabench.store import result_path, result_state, write_json_atomic

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
                if holder is None and result_state(path)[0] == "failed" and (record := _read(path)):
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
        from almabench.store import checkpoint_path

        self.config, self.out, self.settings, self.job = config, out, settings, job
        self.started = time.monotonic()
        self.checkpoint = checkpoint_path(out, config)
        self.initial = self.steps = len(_steps(self.checkpoint))  # megabatches done before this attempt, in all
        self.running = True
        self.state_path = out / SLURM_DIR / "requeues" / f"{job}.json"

    def listen(self) -> None:
        signal.signal(signal.SIGUSR2, lambda signum, frame: self.warned())

    def event(self, message: dict[str, Any]) -> None:
        """The cell's progress (execute.run_and_store's events): a line in the task's log."""
        from almabench.progress import step_line

        if message["kind"] == "resumed":
            print(f"resumed after megabatch {message['steps']} of {self.config.megabatches}", flush=True)
        elif message["kind"] == "step":
            print(step_line(self.config, message["step"]), flush=True)

    def warned(self) -> None:
        """Slurm's USR2: a time limit ahead (little time left) or a preemption. Requeue, or fail with a record."""
        from almabench.store import result_path, result_state

        if not self.running or result_state(result_path(self.out, self.config))[0] == "done":
            return  # the cell is done (or being stored): let it end
        left, limit = _time_left(self.job)
        counts = self._counts()
        steps = _steps(self.checkpoint)
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
        from almabench.store import write_json_atomic

        write_json_atomic(self.state_path, counts, self.out)  # its folder made inside out/, or one line
        print(f"requeued: {why}", flush=True)
        subprocess.run(["scontrol", "requeue", os.environ.get("SLURM_JOB_ID", self.job)], timeout=60)
        raise SystemExit(0)  # unwinds the cell (its lock is released); the requeued job resumes it

    def _fail(self, error: str) -> None:
        from almabench.execute import failure_record
        from almabench.store import result_path, write_json_atomic

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
