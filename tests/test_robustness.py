"""`almabench run` / `status` / `report` when the world misbehaves: a full disk, two runs into one folder,
result files of the wrong shape, the umask, names that must not be cut. Each case ends in one line and loses
nothing that was already in --out."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from almabench.cell.config import RunConfig, RunOptions
from almabench.cli import main
from almabench.grid.execute import run_and_store, run_grid, storage_message
from almabench.grid.specs import describe, load_spec, resolve_configs
from almabench.results.store import (
    StorageError,
    checkpoint_path,
    result_path,
    save_checkpoint,
    write_atomic,
    write_json_atomic,
)
from almabench.results.validate import validate_result

# digits, one epoch, two megabatches: about a second a cell on one thread
FAST = ["--megabatches", "2", "--epochs", "1"]


def quick_cell(method: str) -> RunConfig:
    """The cell `almabench run --methods METHOD --megabatches 2 --epochs 1` runs (the quick spec's settings)."""
    configs = load_spec("quick").with_overrides({"method": (method,), "megabatches": (2,)}, {"epochs": 1}).configs()
    (config,) = resolve_configs(configs, RunOptions())  # named by the values it runs with
    return config


CELLS = {m: quick_cell(m) for m in ("dense", "app", "osp")}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def temp_left(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".write-test"))


def run_args(out: Path, methods: str, *extra: str) -> list[str]:
    return ["run", "--methods", methods, *FAST, "--out", str(out), *extra]


# ------------------------------------------------------------------------------------------- a full disk


def _fsync_failing_after_first_result(monkeypatch, out: Path, where: str, error: int = errno.ENOSPC) -> dict:
    """os.fsync raises OSError(error) for a write into `where` ("checkpoint" or "result") once a first
    result file exists: the disk filled up after the first cell. Returns what the first file held then."""
    real_fsync = os.fsync
    seen: dict[str, bytes] = {}

    def fsync(fd: int) -> None:
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        in_checkpoints = target.parent.name == ".checkpoints"
        results = sorted(out.glob("*.json"))
        if results and in_checkpoints == (where == "checkpoint"):
            seen.setdefault(results[0].name, results[0].read_bytes())
            raise OSError(error, os.strerror(error))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


@pytest.mark.parametrize("where", ["checkpoint", "result"])
def test_a_full_disk_stops_the_run_with_one_line_keeping_finished_cells_and_no_temp_files(tmp_path, monkeypatch,
                                                                                         where):
    out = tmp_path / "results"
    first = _fsync_failing_after_first_result(monkeypatch, out, where)
    result = CliRunner().invoke(main, run_args(out, "dense,app"))
    assert result.exit_code == 1, result.output
    dense, app = result_path(out, CELLS["dense"]), result_path(out, CELLS["app"])
    written = ".checkpoints/" + checkpoint_path(out, CELLS["app"]).name if where == "checkpoint" else app.name
    assert result.output.strip().splitlines()[-1] == (
        f"Error: no space left on device under {out}/ (writing {written}): 1 cell(s) finished and kept; "
        f"free space and rerun to continue")
    assert "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == [".checkpoints", ".locks", dense.name]  # no failure record
    assert first == {dense.name: dense.read_bytes()}  # the first cell's file as it was, not rewritten
    assert temp_left(out) == []
    # a failed result write keeps the checkpoint of its finished megabatches: the rerun resumes after them
    assert checkpoint_path(out, CELLS["app"]).exists() == (where == "result")
    monkeypatch.undo()  # space again
    before = stamp(dense)
    again = CliRunner().invoke(main, run_args(out, "dense,app"))
    assert again.exit_code == 0, again.output
    assert "1 ran, 1 already done, 0 failed" in again.output
    assert ("resumed after step 2" in again.output) == (where == "result")
    assert stamp(dense) == before and json.loads(app.read_text())["status"] == "ok"


def test_a_refused_write_inside_torch_save_is_a_storage_error_and_leaves_the_old_file(tmp_path):
    """torch.save reports a failed file write as a RuntimeError whose __context__ is the OSError."""
    path = tmp_path / "x.pt"
    path.write_bytes(b"old")

    def write(f):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 46 vs 0")  # noqa: B904

    with pytest.raises(StorageError) as caught:
        write_atomic(path, write)
    assert str(caught.value) == f"no space left on device writing {path}" and caught.value.out_of_space
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]
    with pytest.raises(ValueError):  # not a disk problem: no StorageError, no temp file either
        write_json_atomic(tmp_path / "y.json", {"loss": float("nan")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]


def test_storage_messages_name_the_folder_the_file_and_what_to_do(tmp_path):
    out = tmp_path / "results"
    full = StorageError.from_os_error(out / "abc.json", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert storage_message(full, out, 2) == (
        f"no space left on device under {out}/ (writing abc.json): 2 cell(s) finished and kept; "
        f"free space and rerun to continue")
    quota = StorageError.from_os_error(out / "abc.json", OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)))
    assert storage_message(quota, out, 0).endswith(": 0 cell(s) finished and kept; free space and rerun to continue")
    ro = StorageError.from_os_error(out / ".checkpoints" / "abc.pt", OSError(errno.EROFS, os.strerror(errno.EROFS)))
    assert storage_message(ro, out, 1) == (
        f"read-only file system under {out}/ (writing .checkpoints/abc.pt): 1 cell(s) finished and kept; "
        f"make {out}/ writable and rerun to continue")
    # it pickles back from a loky or Dask worker with its fields
    import pickle

    back = pickle.loads(pickle.dumps(full))
    assert (type(back), back.path, back.errno, str(back)) == (StorageError, full.path, errno.ENOSPC, str(full))


# --------------------------------------------------------------------------------- two runs, one folder

HOLD_LOCK = """
import json, sys, time
from almabench.cell.config import RunConfig
from almabench.grid.locks import cell_lock
with cell_lock(sys.argv[1], RunConfig.from_dict(json.loads(sys.argv[2]))) as holder:
    assert holder is None
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_cell_locked_by_another_process_is_skipped_by_loky_workers_and_freed_when_that_process_is_killed(
        tmp_path):
    out = tmp_path / "results"
    locked = CELLS["app"]
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out), json.dumps(locked.non_default())],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = CliRunner().invoke(main, run_args(out, "dense,app", "--jobs", "2"))
    finally:
        holder.kill()  # SIGKILL: no chance to unlock; the kernel frees the lock
        holder.wait()
        holder.stdout.close()
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == (f"Error: 1 cell(s) are being run by another almabench run (pid {holder.pid}) in {out}/; "
                         f"skipped")
    assert lines[-2] == f"1 ran, 0 already done, 0 failed, 1 left to another run; results in {out}/"
    assert re.search(rf"^\[\d/2\] app digits convnet T=2 epochs=1 seed=0: skipped, another almabench run "
                     rf"\(pid {holder.pid}\) is running it$", result.output, re.M), result.output
    assert "Traceback" not in result.output
    assert not result_path(out, locked).exists()
    done = stamp(result_path(out, CELLS["dense"]))
    again = CliRunner().invoke(main, run_args(out, "dense,app"))
    assert again.exit_code == 0, again.output  # no stale lock after the kill
    assert "1 ran, 1 already done, 0 failed; results in" in again.output
    assert stamp(result_path(out, CELLS["dense"])) == done and result_path(out, locked).exists()


def _finished_lines(output: str) -> set[str]:
    """The cells a run trained itself, by their progress line."""
    return set(re.findall(r"^\[\d/\d\] (.+?): accuracy", output, re.M))


def test_two_runs_into_one_folder_share_the_cells_and_never_run_one_twice(tmp_path):
    out = tmp_path / "results"
    args = run_args(out, "dense,app")
    first = subprocess.Popen([sys.executable, "-m", "almabench.cli", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (out / ".checkpoints").is_dir() or not any((out / ".checkpoints").iterdir()):
        assert first.poll() is None, first.stdout.read()
        assert time.monotonic() < deadline, "the first run never got going"
        time.sleep(0.01)
    second = CliRunner().invoke(main, args)  # starts while the first is inside a cell
    first_output = first.communicate(timeout=120)[0]
    runs = {"first": (first.returncode, first_output, os.getpid()), "second": (second.exit_code, second.output,
                                                                                 first.pid)}
    trained = {name: _finished_lines(output) for name, (_, output, _) in runs.items()}
    assert not trained["first"] & trained["second"], runs  # no cell trained twice
    assert trained["first"] | trained["second"] == {describe(CELLS["dense"]), describe(CELLS["app"])}
    assert trained["first"], "the first run held a cell's lock when the second started"
    for name, (code, output, other_pid) in runs.items():
        busy = re.findall(rf"^Error: \d cell\(s\) are being run by another almabench run \(pid (\d+)\) in {out}/; "
                          rf"skipped$", output, re.M)
        assert code == (1 if busy else 0), (name, output)
        assert busy in ([], [str(other_pid)]), (name, output)  # the other run is named, not a worker
        assert "Traceback" not in output
    for config in (CELLS["dense"], CELLS["app"]):
        assert json.loads(result_path(out, config).read_text())["status"] == "ok"
    assert temp_left(out) == []


def test_a_cell_another_run_finished_meanwhile_is_kept_not_rerun(tmp_path):
    config = CELLS["dense"]
    assert run_grid([config], RunOptions(threads=1), tmp_path).ran == 1
    path = result_path(tmp_path, config)
    before, text = stamp(path), path.read_text()
    done = run_and_store(config, RunOptions(threads=1), tmp_path)  # planned when the file was still missing
    assert (done["status"], done["result"]) == ("done", None)
    assert stamp(path) == before and path.read_text() == text


# ------------------------------------------------------------------------------ result files of bad shape


def good_result() -> dict:
    """A finished result with every key run_cell writes, by hand: two megabatches, 3 + 2 test errors."""
    config = RunConfig(method="dense", megabatches=2, epochs=1)
    step = {"step": 1, "test_accuracy": 97.0, "test_errors": 3, "train_accuracy": 99.0, "val_accuracy": 98.0,
            "gap": 1.0, "density": 1.0, "target_density": 1.0, "params_remaining": 10, "flops_remaining": 20,
            "seconds": 0.5, "images_per_second": 100.0}
    return {"schema_version": 1, "status": "ok", "config_hash": config.hash(), "config": config.to_dict(),
            "steps": [step, {**step, "step": 2, "test_errors": 2}], "final_test_accuracy": 98.0, "cer": 5,
            "final_density": 1.0, "final_gap": 1.0, "mean_gap": 1.0, "test_size": 100, "params_total": 10,
            "prunable_total": 8, "flops_dense": 20, "data": {}, "environment": {"precision": "fp32"},
            "started_at": "2024-01-01T00:00:00+00:00", "finished_at": "2024-01-01T00:00:01+00:00", "seconds": 1.0}


BAD_FIELDS = [
    ({"final_test_accuracy": "high"}, 'final_test_accuracy should be a number, got "high"'),
    ({"cer": "5"}, 'cer should be a number, got "5"'),
    ({"cer": True}, "cer should be a number, got true"),
    ({"steps": "all of them"}, 'steps should be a non-empty list of objects (one per megabatch), got "all of them"'),
    ({"steps": []}, "steps should be a non-empty list of objects (one per megabatch), got []"),
    ({"steps": [1, 2]}, "steps should be a non-empty list of objects (one per megabatch), got [1, 2]"),
    ({"environment": ["cpu"]}, 'environment should be an object, got ["cpu"]'),
    ({"config_hash": 7}, "config_hash should be a string, got 7"),
]


@pytest.mark.parametrize("change, reason", BAD_FIELDS)
def test_validate_result_names_the_field_and_what_it_should_be(change, reason):
    assert validate_result(good_result()) is None
    assert validate_result({**good_result(), **change}) == reason


def test_validate_result_checks_config_steps_and_missing_keys():
    doc = good_result()
    assert validate_result({k: v for k, v in doc.items() if k not in ("seconds", "cer")}) == (
        "partial result, missing cer, seconds")
    assert validate_result({**doc, "config": {**doc["config"], "seed": "0"}}) == (
        'config.seed should be an integer, got "0"')
    assert validate_result({**doc, "config": {**doc["config"], "megabatches": 2.0}}) == (
        "config.megabatches should be an integer, got 2.0")
    del doc["config"]["arch"]
    assert validate_result(doc) == "partial result, config lacks arch"
    doc = good_result()
    doc["steps"][1]["gap"] = None
    assert validate_result(doc) == "step 2 gap should be a number, got null"
    del doc["steps"][0]["density"]
    assert validate_result(doc) == "partial result, step 1 lacks density"
    assert validate_result({**good_result(), "cer": 6}) == (
        "inconsistent result, cer is not the sum of the steps' test_errors")
    assert validate_result({**good_result(), "steps": good_result()["steps"][:1], "cer": 3}) == (
        "partial result, 1 of 2 steps")
    assert validate_result([]) == "not a JSON object"


@pytest.fixture(scope="module")
def two_done(tmp_path_factory) -> Path:
    """A folder with two finished cells (dense and app), copied by the tests that spoil one."""
    out = tmp_path_factory.mktemp("two") / "results"
    threads = torch.get_num_threads()
    outcome = run_grid([CELLS["dense"], CELLS["app"]], RunOptions(threads=1), out)
    torch.set_num_threads(threads)
    assert outcome.ran == 2 and not outcome.failed
    return out


def spoil(folder: Path, change: dict) -> Path:
    """The dense cell's result with `change` applied, written in place."""
    path = result_path(folder, CELLS["dense"])
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    return path


@pytest.mark.parametrize("change, reason", BAD_FIELDS[:4])
def test_status_lists_a_result_of_the_wrong_shape_as_corrupt_and_report_skips_it_with_one_line(
        two_done, tmp_path, change, reason):
    out = tmp_path / "results"
    shutil.copytree(two_done, out)
    path = spoil(out, change)
    status = CliRunner().invoke(main, ["status", str(out)])
    assert status.exit_code == 0, status.output
    assert f"{out}/: 2 result file(s): 1 done, 0 failed, 1 corrupt" in status.output
    assert f"  corrupt {path.name}: {reason}\n" in status.output
    report = CliRunner().invoke(main, ["report", str(out), "--out", str(tmp_path / "report"), "--format", "png"])
    assert report.exit_code == 0, report.output
    assert report.stderr.splitlines()[0] == f"warning: skipped {path}: {reason}"
    assert report.stderr.count("warning:") == 1 and "Traceback" not in report.output
    assert (tmp_path / "report" / "report.md").exists()


def test_run_moves_a_result_of_the_wrong_shape_aside_and_reruns_its_cell(two_done, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(two_done, out)
    path = spoil(out, {"final_test_accuracy": "high"})
    spoiled = path.read_bytes()
    app_before = result_path(out, CELLS["app"]).read_bytes()
    result = CliRunner().invoke(main, run_args(out, "dense,app"))
    assert result.exit_code == 1, result.output
    assert "1 done, 1 to run" in result.output
    assert (f'warning: {path} is not a result (final_test_accuracy should be a number, got "high"); moved aside '
            f"to {path.name}.corrupt, its cell (dense digits convnet T=2 epochs=1 seed=0) runs again") in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: 1 corrupt result file(s) were moved aside and their cells run again; inspect, then delete: "
        f"{path}.corrupt")
    assert (out / f"{path.name}.corrupt").read_bytes() == spoiled  # kept as it was
    assert validate_result(json.loads(path.read_text())) is None
    assert result_path(out, CELLS["app"]).read_bytes() == app_before


# ------------------------------------------------------------------------------------------------- umask


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_result_and_checkpoint_files_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "r.json", {"a": 1})
        save_checkpoint(tmp_path / ".checkpoints" / "c.pt", {"w": torch.zeros(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == mode
    assert (tmp_path / ".checkpoints" / "c.pt").stat().st_mode & 0o777 == mode


def test_a_run_under_umask_022_writes_results_readable_by_all(tmp_path, umask_022):
    config = CELLS["dense"]
    assert run_grid([config], RunOptions(threads=1), tmp_path).ran == 1
    assert result_path(tmp_path, config).stat().st_mode & 0o777 == 0o644


# ------------------------------------------------------------------------------------------------ status


def failure_record(folder: Path, config: RunConfig) -> Path:
    path = result_path(folder, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"status": "failed", "config_hash": config.hash(), "config": config.to_dict(),
                                "error": "RuntimeError: boom"}))
    return path


def test_status_shows_dataset_names_whole(tmp_path):
    out = tmp_path / "results"
    for dataset in ("runs/cifar-a/toy.npz", "runs/cifar-b/toy.npz"):  # one file name, sibling folders
        failure_record(out, RunConfig(method="dense", dataset=dataset, megabatches=2))
    result = CliRunner().invoke(main, ["status", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = lines.index("  method dataset              arch       T  done failed corrupt")
    assert lines[header + 1: header + 3] == [
        "  dense  runs/cifar-a/toy.npz convnet    2     0      1       0",
        "  dense  runs/cifar-b/toy.npz convnet    2     0      1       0",
    ]


def test_status_lists_unreadable_checkpoints_apart_from_those_a_rerun_resumes(tmp_path):
    from almabench.cell.run import run_cell

    out = tmp_path / "results"
    config = CELLS["dense"]

    def stop(step):
        raise KeyboardInterrupt  # killed after the first megabatch

    with pytest.raises(KeyboardInterrupt):
        run_cell(config, RunOptions(threads=1), checkpoint=checkpoint_path(out, config), progress=stop)
    broken = checkpoint_path(out, CELLS["app"])
    broken.write_bytes(b"half a checkpoint")
    result = CliRunner().invoke(main, ["status", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    at = lines.index("1 cell(s) checkpointed mid-stream (a rerun goes on from there):")
    assert re.fullmatch(rf"  {config.hash()}\.json: 1 of 2 megabatches done, saved \d{{4}}-\d\d-\d\d \d\d:\d\d",
                        lines[at + 1])
    at = lines.index("1 checkpoint(s) unreadable, a rerun starts that cell over:")
    assert re.fullmatch(rf"  {CELLS['app'].hash()}\.json: unreadable \(\w+\), saved \d{{4}}-\d\d-\d\d \d\d:\d\d",
                        lines[at + 1]), lines[at + 1]
