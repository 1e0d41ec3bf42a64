"""--backend slurm on a real one-node Slurm started for these tests (tests/slurm_cluster.py), its settings and
its decisions at Slurm's warning, and the plain alternative: several `almabench run` into one folder dividing
the grid through the per-cell locks.

Only the tests that need Slurm are skipped where it cannot start (the reason is printed by pytest -ra); .ci/run
installs it. The time-limit cell runs about three minutes (three lives or more of a one-minute job): it is
submitted first (the `time_limited` fixture) and checked last, so that it runs beside the other tests instead of
after them.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from slurm_cluster import Cluster, missing

from almabench.backends import slurm as slurm_module
from almabench.backends import slurm_task
from almabench.backends.slurm_settings import SlurmSettings, time_seconds
from almabench.cell.config import RunConfig, RunOptions
from almabench.cli import main
from almabench.grid.execute import run_grid
from almabench.results.store import result_path, result_state
from conftest import TINY_SPEC, comparable

ONE_THREAD = RunOptions(threads=1)
# one cell whose megabatches take a few seconds, so that it can be interrupted between two of them
SLOW_CELL = ["--methods", "app", "--datasets", "digits", "--archs", "convnet", "--megabatches", "3", "--epochs", "4",
             "--set", "milestones=[2]", "--set", "flip=false", "--set", "crop_padding=1"]
# over a minute of megabatches of ~6 s each (replay none: all alike), under a 1-minute time limit warned 1 s ahead:
# Slurm looks at time limits every 30 s and warns up to that much early, so each job gets its warning 29-59 s in
# About 3 minutes of one core on a 2-core EPYC, so that even a machine several times faster cannot finish it
# inside the one-minute limit plus Slurm's polling slack (a 70-second cell once finished unwarned, never requeued).
LONG_CELL = ["--methods", "dense", "--datasets", "digits", "--archs", "convnet", "--megabatches", "10", "--epochs",
             "400", "--set", "milestones=[200]", "--set", "flip=false", "--set", "crop_padding=1", "--set",
             "replay=none"]


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    yield


def cli(*args: str, env: dict[str, str] | None = None, **popen: object) -> subprocess.Popen:
    """`almabench ...` in a child process (its own Ctrl-C, its own output). Ctrl-C is restored to its default in the
    child: a suite started in the background of a non-interactive shell (`pytest &`) ignores SIGINT, a disposition
    children inherit, and Python then installs no KeyboardInterrupt handler."""
    def default_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen([sys.executable, "-m", "almabench.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=default_sigint, **popen)


def wait_for(ready, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (value := ready()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(step)
    return value


def squeue(out: Path) -> dict[str, str]:
    """{job: state} of the jobs submitted into out/ still in Slurm (the time-limited cell's job runs beside)."""
    mine = {job for record in slurm_module.submissions(out) for job in record["jobs"]}
    return {job: state for job, state in (slurm_module.squeue_states() or {}).items() if job in mine}


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A one-node Slurm for the session (SLURM_CONF set for this process and its children), stopped at the end."""
    why = missing()
    if why:
        pytest.skip(why)
    pytest.importorskip("submitit", reason="submitit is not installed: pip install 'almabench[slurm]'")
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    yield cluster
    cluster.stop()
    if before is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = before


@pytest.fixture(scope="module")
def time_limited(slurm, tmp_path_factory) -> Path:
    """The long cell submitted (--detach) under a one-minute limit; test_time_limit checks it at the end."""
    out = tmp_path_factory.mktemp("time-limit") / "results"
    result = CliRunner().invoke(main, ["run", *LONG_CELL, "--backend", "slurm", "--threads", "1", "--detach",
                                       "--slurm", "time=1", "--slurm", "signal_delay=1", "--slurm",
                                       "max_timeouts=20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


# --------------------------------------------------------------------------------- settings (no Slurm needed)


def test_settings_come_from_the_spec_table_and_the_command_line_over_it():
    settings = SlurmSettings.parse({"partition": "gpu", "time": 240, "max_timeouts": 1},
                                   ("time=4:00:00", "mem=32G", "gpus_per_node=1", "max_timeouts=5"), "s.toml")
    assert settings == SlurmSettings(partition="gpu", time="4:00:00", mem="32G", gpus_per_node=1, max_timeouts=5)
    assert settings.resources() == "partition=gpu, time=4:00:00, mem=32G, gpus_per_node=1"
    assert SlurmSettings().resources() == "the cluster's defaults"
    assert [time_seconds(t) for t in ("90", "1:30", "2:00:00", "1-02:03:04", "2-1", "UNLIMITED")] == \
        [5400, 90, 7200, 93784, 176400, None]


@pytest.mark.parametrize(("args", "spec_table", "message"), [
    (["--slurm", "gpus=1"], "", "Error: --slurm: unknown key 'gpus'; valid keys: partition, time, account, qos, "
                                "constraint, mem, cpus_per_task, gpus_per_node, max_timeouts, signal_delay"),
    ([], "[slurm]\nnodes = 2\n", "Error: {spec} [slurm]: unknown key 'nodes'; valid keys: partition, time, account, "
                                 "qos, constraint, mem, cpus_per_task, gpus_per_node, max_timeouts, signal_delay"),
    (["--slurm", "max_timeouts=-1"], "", "Error: --slurm: max_timeouts must be at least 0, got -1"),
    (["--slurm", "cpus_per_task=eight"], "", "Error: --slurm: cpus_per_task must be a whole number, got 'eight'"),
    (["--slurm", "time=4h"], "", "Error: time '4h' is not a Slurm time (minutes, MM:SS, HH:MM:SS or D-HH:MM:SS)"),
    (["--slurm", "partition"], "", "Error: --slurm expects KEY=VALUE, got 'partition'"),
])
def test_a_bad_slurm_setting_is_one_line_naming_the_valid_ones(tmp_path, args, spec_table, message):
    spec = tmp_path / "s.toml"
    spec.write_text(TINY_SPEC + "\n" + spec_table)
    result = CliRunner().invoke(main, ["run", "--spec", str(spec), "--backend", "slurm", *args, "--out",
                                       str(tmp_path / "r")])
    assert (result.exit_code, result.output.strip()) == (1, message.format(spec=spec))
    assert not (tmp_path / "r").exists()


def test_slurm_options_without_the_slurm_backend_are_one_line(tmp_path):
    for args, flag in ((["--slurm", "time=10"], "--slurm"), (["--detach"], "--detach")):
        result = CliRunner().invoke(main, ["run", *args, "--out", str(tmp_path / "r")])
        assert (result.exit_code, result.output.strip()) == (1, f"Error: {flag} is for --backend slurm, not loky")
    result = CliRunner().invoke(main, ["run", "--backend", "slurm", "--scheduler", "x:1", "--out", str(tmp_path)])
    assert result.output.strip() == "Error: --scheduler is for --backend dask or ray, not slurm"


@pytest.mark.parametrize("present", [(), ("sbatch",)])
def test_slurm_without_sbatch_or_srun_on_path_is_one_line_before_anything_is_written(tmp_path, monkeypatch,
                                                                                    present):
    """submitit's executor runs srun as well: sbatch alone (a submit-only host) was a RuntimeError traceback."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in present:
        (bin_dir / program).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / program).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    result = CliRunner().invoke(main, ["run", "--backend", "slurm", "--detach", "--methods", "dense",
                                       "--megabatches", "2", "--out", str(tmp_path / "r")])
    missing = "srun is not there" if present else "sbatch and srun are not there"
    assert (result.exit_code, result.output.strip()) == (
        1, f"Error: --backend slurm needs sbatch and srun on PATH (Slurm's, on a cluster's login node); {missing}")
    assert not (tmp_path / "r").exists()


def test_status_says_so_where_squeue_is_not_there(tmp_path, monkeypatch):
    (tmp_path / ".slurm").mkdir()
    (tmp_path / ".slurm" / "submissions.jsonl").write_text(
        '{"array": "12", "jobs": {"12_0": "aaaa", "12_1": "bbbb"}, "submitted": "2026-01-01T00:00:00+00:00"}\n')
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue on it
    result = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert result.exit_code == 0
    assert (f"Slurm: 2 cell(s) were submitted from this folder ({tmp_path}/.slurm/); squeue is not there (or failed), "
            f"so which are queued or running is unknown") in result.output.splitlines()


# ---------------------------------------------------------- what a task does at Slurm's warning (no Slurm needed)


@pytest.fixture
def warned(tmp_path, monkeypatch):
    """Attempts of a T=3 cell as the task `7_1` runs it, with squeue's answer, the checkpoint's step records (of
    10 s, 11 s, ...) and scontrol replaced: (its config, attempt(settings, steps before it), answer(left, limit,
    steps now), the scontrol calls)."""
    config = RunConfig(method="app", dataset="digits", arch="convnet", megabatches=3)
    answers = {"left": (None, None), "steps": []}
    calls: list[list[str]] = []
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setattr(slurm_task, "_time_left", lambda job: answers["left"])
    monkeypatch.setattr(slurm_task, "checkpoint_steps", lambda path: answers["steps"])
    monkeypatch.setattr(slurm_task.subprocess, "run", lambda cmd, **kw: calls.append(cmd))

    def attempt(settings: SlurmSettings, steps_before: int = 0):
        answers["steps"] = [{"seconds": 10.0 + k} for k in range(steps_before)]
        return slurm_task.Attempt(config, tmp_path, settings, "7_1")

    def set_answers(left=None, limit=None, steps=0):
        answers["left"] = (left, limit)
        answers["steps"] = [{"seconds": 10.0 + k} for k in range(steps)]

    return config, attempt, set_answers, calls


def _exit_code(attempt) -> int:
    with pytest.raises(SystemExit) as info:
        attempt.warned()
    return info.value.code


def test_a_preemption_requeues_without_limit_and_a_time_limit_up_to_max_timeouts(warned, tmp_path):
    config, attempt, answer, calls = warned
    requeues = tmp_path / ".slurm" / "requeues" / "7_1.json"
    run = attempt(SlurmSettings(time="1:00:00", signal_delay=60, max_timeouts=1))
    answer(left=3000, limit=3600, steps=1)  # much time left: a preemption
    assert _exit_code(run) == 0
    assert calls == [["scontrol", "requeue", "7_1"]]
    assert json.loads(requeues.read_text()) == {"timeouts": 0, "preemptions": 1, "stalled": 0}
    run = attempt(SlurmSettings(time="1:00:00", signal_delay=60, max_timeouts=1), 1)
    answer(left=50, limit=3600, steps=2)  # the time limit ahead, a megabatch finished: requeue, 1 of 1
    assert _exit_code(run) == 0
    assert json.loads(requeues.read_text()) == {"timeouts": 1, "preemptions": 1, "stalled": 0}
    assert len(calls) == 2
    run = attempt(SlurmSettings(time="1:00:00", signal_delay=60, max_timeouts=1), 1)
    answer(left=50, limit=3600, steps=2)  # the second time limit: no more requeues, a failure record
    assert _exit_code(run) == 1
    assert len(calls) == 2
    record = json.loads(result_path(tmp_path, config).read_text())
    assert record["error"] == ("reached the Slurm time limit of 1:00:00 2 time(s) (max_timeouts = 1); 2 of 3 "
                               "megabatches are done and checkpointed: submit it again to go on, with a longer "
                               "--slurm time= or a larger max_timeouts")
    assert record["slurm_log"] == str(tmp_path / ".slurm" / "7_1_0_log.err")
    assert result_state(result_path(tmp_path, config))[0] == "failed"


def test_a_megabatch_that_cannot_fit_in_the_time_limit_fails_with_a_record_saying_so(warned, tmp_path):
    config, attempt, answer, calls = warned
    error = ("megabatch 2 of 3 cannot finish inside the Slurm time limit of 0:01:00: {n} job(s) in a row reached "
             "Slurm's warning (30 s before the limit) without finishing it, this one after {ran} s, and the last "
             "finished megabatch took 10 s; give it a longer --slurm time=")
    run = attempt(SlurmSettings(time="1", signal_delay=30), 1)
    answer(left=25, limit=60, steps=1)  # the job had its 30 s before the warning (35 s), and finished no megabatch
    assert _exit_code(run) == 1
    assert calls == []  # not requeued
    assert json.loads(result_path(tmp_path, config).read_text())["error"] == error.format(n=1, ran=35)
    run = attempt(SlurmSettings(time="1", signal_delay=30), 1)  # warned early (Slurm looks every 30 s): requeued
    answer(left=45, limit=60, steps=1)
    assert _exit_code(run) == 0 and calls == [["scontrol", "requeue", "7_1"]]
    run = attempt(SlurmSettings(time="1", signal_delay=30), 1)  # the second job in a row without a megabatch
    answer(left=45, limit=60, steps=1)
    assert _exit_code(run) == 1 and len(calls) == 1
    assert json.loads(result_path(tmp_path, config).read_text())["error"] == error.format(n=2, ran=15)


# --------------------------------------------------------------------------------------- on a real Slurm


def test_detached_grid_shows_in_status_is_not_submitted_twice_and_equals_loky(slurm, time_limited, tiny_spec,
                                                                               reference, tmp_path):
    out = tmp_path / "results"
    run = ["run", "--spec", str(tiny_spec), "--backend", "slurm", "--threads", "1", "--out", str(out)]
    result = CliRunner().invoke(main, [*run, "--jobs", "1", "--detach"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    array = re.fullmatch(r"submitted job array (\d+): job\(s\) \1_0 \.\. \1_2 \(the cluster's defaults\); logs in "
                         + re.escape(f"{out}/.slurm/"), lines[1])
    assert array, lines
    jobs = [f"{array[1]}_{i}" for i in range(3)]
    assert lines[0] == f"3 cell(s), results in {out}/: 0 done, 0 queued or running in Slurm already, 3 to submit"
    assert lines[2] == f"follow it with: almabench status {out}"
    # a second submission of the grid while the first is queued runs none of its cells again
    again = CliRunner().invoke(main, run)
    assert again.exit_code == 1
    assert "0 ran, 0 already done, 0 failed, 3 left to another run" in again.output
    assert (f"3 cell(s) are being run by another almabench run (Slurm job {jobs[0]}, Slurm job {jobs[1]}, Slurm job "
            f"{jobs[2]}) in {out}/; skipped") in again.output
    # --jobs 1: one runs, two wait
    wait_for(lambda: "Slurm (squeue): 2 cell(s) queued, 1 running" in CliRunner().invoke(main, ["status", str(out)])
             .output, 60, "one running and two queued cells in status", step=0.5)
    wait_for(lambda: not squeue(out), 240, "the three jobs to end", step=1)
    status = CliRunner().invoke(main, ["status", str(out)]).output
    assert f"{out}/: 3 result file(s): 3 done, 0 failed, 0 corrupt" in status
    assert "Slurm (squeue): 0 cell(s) queued, 0 running" in status
    assert comparable(out) == reference  # the same files as loky's, timing aside
    ran = [line for log in sorted((out / ".slurm").glob("*_log.out")) for line in log.read_text().splitlines()
           if re.fullmatch(r"[0-9a-f]{16}\.json: \w+", line)]
    assert sorted(ran) == sorted(f"{name}: ok" for name in reference)  # each cell ran once
    assert len((out / ".slurm" / "submissions.jsonl").read_text().splitlines()) == 1


def test_a_preempted_cell_requeues_and_resumes_to_the_uninterrupted_result(slurm, tmp_path):
    out = tmp_path / "results"
    proc = cli("run", *SLOW_CELL, "--backend", "slurm", "--threads", "1", "--out", str(out))
    checkpoint = wait_for(lambda: next((out / ".checkpoints").glob("*.pt"), None), 120, "the first megabatch")
    job = wait_for(lambda: next(iter(squeue(out)), None), 10, "the job in squeue")
    for sig in ("TERM", "USR2"):  # what submitit's own test hook sends (job._interrupt())
        subprocess.run(["scancel", f"--signal={sig}", job], check=True)
    # the same cell uninterrupted, in this process, while the requeued job waits to start again
    direct = tmp_path / "direct"
    configs = [RunConfig(method="app", dataset="digits", arch="convnet", megabatches=3, epochs=4, milestones=(2,),
                         flip=False, crop_padding=1)]
    assert run_grid(configs, ONE_THREAD, direct).ran == 1
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, output
    name = checkpoint.stem + ".json"
    log = (out / ".slurm" / f"{job}_0_log.out").read_text()
    preempted = re.search(r"requeued: preempted after megabatch (\d) of 3", log)
    assert preempted and 1 <= int(preempted[1]) < 3, log
    assert f"resumed after megabatch {preempted[1]} of 3" in log
    assert log.count(f"{name}: ok") == 1
    requeues = json.loads((out / ".slurm" / "requeues" / f"{job}.json").read_text())
    assert requeues == {"timeouts": 0, "preemptions": 1, "stalled": 0}
    assert re.search(r"\[1/1\] app digits convnet T=3 epochs=4 seed=0: accuracy [\d.]+ %", output), output
    assert "1 ran, 0 already done, 0 failed" in output
    assert comparable(out) == comparable(direct)
    assert not checkpoint.exists()


def test_a_cell_cancelled_with_scancel_is_failed_never_done(slurm, tmp_path):
    out = tmp_path / "results"
    proc = cli("run", *SLOW_CELL, "--backend", "slurm", "--threads", "1", "--out", str(out))
    job = wait_for(lambda: next((j for j, s in squeue(out).items() if s == "RUNNING"), None), 120, "the job to run")
    subprocess.run(["scancel", job], check=True)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1
    files = list(out.glob("*.json"))
    assert len(files) == 1 and result_state(files[0])[0] == "failed"
    log = out / ".slurm" / f"{job}_0_log.err"
    error = (f"its Slurm job {job} ended without a result (cancelled, killed, out of memory or its node lost); "
             f"its log: {log}")
    assert json.loads(files[0].read_text())["error"] == error
    assert f"[1/1] app digits convnet T=3 epochs=4 seed=0: FAILED {error}" in output
    assert f"Error: 1 cell(s) failed; their records: {files[0]}" in output
    assert "1 result file(s): 0 done, 1 failed, 0 corrupt" in CliRunner().invoke(main, ["status", str(out)]).output


def test_ctrl_c_in_a_waiting_parent_cancels_its_jobs_and_says_how_many(slurm, tiny_spec, tmp_path):
    out = tmp_path / "results"
    proc = cli("run", "--spec", str(tiny_spec), "--backend", "slurm", "--jobs", "1", "--out", str(out))
    jobs = wait_for(lambda: set(squeue(out)), 120, "the jobs in squeue")
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    array = next(iter(jobs)).partition("_")[0]
    assert proc.returncode == 1
    assert f"Error: interrupted: cancelled 3 Slurm job(s) of job array {array}; finished cells are kept in " \
           f"{out}/" in output
    assert len(jobs) == 3
    wait_for(lambda: not squeue(out), 30, "the cancelled jobs to leave squeue")


def test_dry_run_shows_what_would_be_submitted(slurm, tiny_spec, tmp_path):
    result = CliRunner().invoke(main, ["run", "--spec", str(tiny_spec), "--backend", "slurm", "--jobs", "2",
                                       "--slurm", "partition=test", "--slurm", "time=10", "--dry-run", "--out",
                                       str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        f"slurm: would submit one job array of 3 task(s), one a cell, at most 2 running at once, each with "
        f"partition=test, time=10; requeued at the time limit up to max_timeouts = 3 time(s) and on preemption "
        f"always (warned 90 s before); logs in {tmp_path}/.slurm/")
    assert not (tmp_path / ".slurm").exists()


def test_a_cell_longer_than_its_time_limit_requeues_and_finishes(slurm, time_limited):
    out = time_limited
    name = wait_for(lambda: next((p for p in out.glob("*.json") if result_state(p)[0] != "missing"), None), 900,
                    "the time-limited cell", step=1)
    assert result_state(name)[0] == "done", name.read_text()[:2000]
    result = json.loads(name.read_text())
    assert [s["step"] for s in result["steps"]] == list(range(1, 11))
    logs = "".join(p.read_text() for p in (out / ".slurm").glob("*_log.out"))
    timeouts = json.loads(next((out / ".slurm" / "requeues").glob("*.json")).read_text())["timeouts"]
    assert 1 <= timeouts <= 20
    assert len(re.findall(r"requeued: time limit 0:01:00 ahead after megabatch \d+ of 10", logs)) == timeouts, logs
    assert len(re.findall(r"resumed after megabatch \d+ of 10", logs)) == timeouts


# ------------------------------------------------------------------------------ without a backend: the locks


def test_three_runs_into_one_folder_divide_the_grid_and_run_no_cell_twice(tiny_spec, reference, tmp_path):
    out = tmp_path / "results"
    procs = [cli("run", "--spec", str(tiny_spec), "--threads", "1", "--out", str(out)) for _ in range(3)]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert all(proc.returncode in (0, 1) for proc in procs), outputs  # 1: it left cells to another run
    ran = [re.search(r"(\d+) ran, (\d+) already done", output) for output in outputs]
    assert all(ran), outputs
    assert sum(int(r[1]) for r in ran) == 3  # every cell once, between them
    cells = [line for output in outputs for line in output.splitlines() if ": accuracy " in line and "[" in line]
    assert len(cells) == 3 and len({line.split(":")[0].split("] ")[1] for line in cells}) == 3
    assert comparable(out) == reference
