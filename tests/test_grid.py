"""The grid at scale: shipped specs, backends, crash safety (kill and resume), failure records, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from almabench.cell.config import RunConfig, RunOptions
from almabench.cli import main
from almabench.grid.execute import run_grid
from almabench.grid.plan import image_passes
from almabench.grid.specs import check_config, load_spec, resolve_configs, shipped_specs
from almabench.results.store import checkpoint_path, load_checkpoint, result_path, without_timing
from conftest import comparable, write_cifar_layout

ONE_THREAD = RunOptions(threads=1)  # every run compared below uses one torch thread, as loky workers do here


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread in this process (runs compared below use one; two spin badly on a shared 2-core
    machine), and the next test gets back the count it had."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def start_grid(spec: Path, out: Path) -> subprocess.Popen:
    """`almabench run` of the spec in a child process, one torch thread (as the in-process reruns use)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", "from almabench.cli import main; main()", "run", "--spec", str(spec),
           "--out", str(out)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the grid ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the grid to get going")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


# ------------------------------------------------------------------------------------------------ specs


def test_every_shipped_spec_loads_and_expands_into_valid_cells():
    expected = {"quick", "cpu-short", "paper-short", "paper-long", "pruner-ablation", "released-vs-paper"}
    assert expected <= set(shipped_specs())
    sizes = {}
    for name in shipped_specs():
        configs = load_spec(name).configs()
        assert configs and len(set(configs)) == len(configs), name
        for config in configs:
            check_config(config)
        sizes[name] = len(configs)
    assert sizes["paper-short"] == 18 and sizes["paper-long"] == 9
    short = load_spec("paper-short").configs()
    assert {(c.dataset, c.arch, c.megabatches, c.tau, c.pruner, c.epochs, c.milestones) for c in short} == {
        (d, "resnet50", 8, 4.5, "snip", 50, None) for d in ("cifar10", "cifar100")}
    resolved = resolve_configs(short, RunOptions())  # CIFAR's recipe is known without reading the data
    assert {(c.flip, c.crop_padding, c.milestones) for c in resolved} == {(True, 4, (20, 40))}
    assert {c.method for c in short} == {"dense", "osp", "app"} and {c.seed for c in short} == {0, 1, 2}
    assert {c.megabatches for c in load_spec("paper-long").configs()} == {100}
    assert {c.pruner for c in load_spec("pruner-ablation").configs()} == {"snip", "magnitude"}
    released = load_spec("released-vs-paper").configs()
    assert len(released) == 24 and {(c.method, c.protocol) for c in released} == {
        (m, p) for m in ("app", "app-released") for p in ("paper", "released")}
    # specs that overlap share files: the paper's APP cells are the same cells in three specs
    assert {c.hash() for c in released if (c.method, c.protocol) == ("app", "paper")} <= {c.hash() for c in short}
    cpu = load_spec("cpu-short").configs()
    assert {(c.dataset, c.megabatches) for c in cpu} == {("cifar10", 8)} and len(cpu) == 3
    # CIFAR-10 at T = 8: 50,000 / 8 = 6,250 per megabatch, 5,625 train; full replay: 36 × 5,625 per epoch
    assert image_passes(short[0], 50_000) == 50 * 36 * 5625


# ------------------------------------------------------------------------------------ crash safety


def test_sigkilled_grid_reruns_only_unfinished_cells_and_ends_like_an_uninterrupted_run(tiny_spec, reference,
                                                                                        tmp_path):
    out = tmp_path / "results"
    proc = start_grid(tiny_spec, out)
    kill_when(proc, lambda: any(out.glob("*.json")))
    finished = {p.name: stamp(p) for p in out.glob("*.json")}
    assert 1 <= len(finished) < 3
    ran = []
    outcome = run_grid(load_spec(str(tiny_spec)).configs(), ONE_THREAD, out,
                       on_done=lambda i, n, done: ran.append(Path(done["path"]).name))
    assert outcome.skipped == len(finished) and outcome.ran == 3 - len(finished) and not outcome.failed
    assert not set(ran) & set(finished)
    assert {name: stamp(out / name) for name in finished} == finished  # not rewritten
    assert comparable(out) == reference
    assert not list((out / ".checkpoints").glob("*"))  # checkpoints go once their result is written


def test_cell_killed_mid_stream_resumes_from_its_checkpoint_to_the_same_result(tiny_spec, reference, tmp_path):
    out = tmp_path / "results"
    first = load_spec(str(tiny_spec)).configs()[0]
    checkpoint = checkpoint_path(out, first)
    proc = start_grid(tiny_spec, out)
    kill_when(proc, checkpoint.exists)
    assert not result_path(out, first).exists(), "the cell finished before the kill: make it longer"
    state = load_checkpoint(checkpoint)  # torch.load(..., weights_only=True): no pickle
    assert 1 <= state["step"] < first.megabatches
    assert len(json.loads(state["steps"])) == state["step"]
    status = CliRunner().invoke(main, ["status", str(out)])
    assert f"{first.hash()}.json: {state['step']} of 3 megabatches done" in status.output
    resumed = {}
    run_grid(load_spec(str(tiny_spec)).configs(), ONE_THREAD, out,
             on_done=lambda i, n, done: resumed.update({done["config"]: done["resumed_after"]}))
    assert resumed[first] == state["step"]  # it went on from the checkpoint, it did not start over
    assert comparable(out) == reference
    assert not checkpoint.exists()


def test_a_nan_loss_writes_a_failure_record_the_other_cells_finish_and_a_rerun_redoes_only_it(tmp_path):
    spec = tmp_path / "nan.toml"
    spec.write_text('[grid]\nlr = [0.1, 1e4]\n\n[config]\nmethod = "dense"\ndataset = "digits"\n'
                    'megabatches = 2\nepochs = 1\nmilestones = [1]\nflip = false\n')
    out = tmp_path / "results"
    args = ["run", "--spec", str(spec), "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: 1 cell(s) failed; their records: ")
    records = {json.loads(p.read_text())["config"]["lr"]: p for p in out.glob("*.json")}
    good, bad = json.loads(records[0.1].read_text()), json.loads(records[1e4].read_text())
    assert good["status"] == "ok" and len(good["steps"]) == 2
    assert bad["status"] == "failed" and bad["error"].startswith("FloatingPointError: training loss is nan")
    assert "Traceback" in bad["traceback"] and bad["config_hash"] == records[1e4].stem
    before = stamp(records[0.1])
    again = CliRunner().invoke(main, args)
    assert "1 ran, 1 already done, 1 failed" in again.output
    assert stamp(records[0.1]) == before
    status = CliRunner().invoke(main, ["status", str(out), "--spec", str(spec)])
    assert status.exit_code == 0
    assert "2 cells: 1 done, 1 failed, 0 corrupt, 0 missing" in status.output
    assert "FloatingPointError" in status.output


def test_a_corrupt_result_file_is_moved_aside_with_a_warning_and_its_cell_rerun(tmp_path):
    out = tmp_path / "results"
    args = ["run", "--methods", "dense", "--megabatches", "2", "--epochs", "1", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    (path,) = out.glob("*.json")
    path.write_text('{"status": "ok", "steps": [')  # a half-written file from some other tool
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert f"warning: {path} is not a result (not valid JSON" in result.output
    assert "moved aside to " + path.name + ".corrupt" in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: 1 corrupt result file(s) were moved aside")
    assert (out / f"{path.name}.corrupt").read_text() == '{"status": "ok", "steps": ['  # kept, not deleted
    assert json.loads(path.read_text())["status"] == "ok"
    assert CliRunner().invoke(main, args).exit_code == 0  # nothing corrupt any more


# ----------------------------------------------------------------------------------------- backends


def test_dask_backend_writes_the_same_files_as_loky(tiny_spec, reference, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    out = tmp_path / "results"
    # Two single-threaded workers; in this process (processes=False) to spare the start-up of two interpreters.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        outcome = run_grid(load_spec(str(tiny_spec)).configs(), ONE_THREAD, out, jobs=2, backend="dask",
                           scheduler=cluster.scheduler_address)
    assert outcome.ran == 3 and not outcome.failed
    assert comparable(out) == reference


def test_a_backend_that_is_not_installed_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    result = CliRunner().invoke(main, ["run", "--backend", "ray", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --backend ray needs Ray: pip install 'almabench[ray]'"
    result = CliRunner().invoke(main, ["run", "--scheduler", "tcp://nowhere:1", "--out", str(tmp_path / "r")])
    assert result.output.strip() == "Error: --scheduler is for --backend dask or ray, not loky"
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------- dry run and status


def test_dry_run_counts_cells_and_estimates_the_compute_left_from_measured_rates(tmp_path):
    out = tmp_path / "results"
    args = ["run", "--megabatches", "2", "--epochs", "1", "--out", str(out)]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert not out.exists()  # a dry run writes nothing
    # digits: 1,437 train images, T = 2: 718 per megabatch, 646 train; full replay: 646 + 1,292
    assert "0 done, 0 failed, 0 corrupt, 3 missing: 3 cell(s) to run" in dry.output
    assert "compute left: 5,814 training image-passes" in dry.output
    assert "only the image count above" in dry.output
    assert CliRunner().invoke(main, [*args, "--methods", "dense"]).exit_code == 0
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert "1 done, 0 failed, 0 corrupt, 2 missing: 2 cell(s) to run" in dry.output
    assert "compute left: 3,876 training image-passes" in dry.output
    assert "images/s end to end" in dry.output and "time left: about" in dry.output
    status = CliRunner().invoke(main, ["status", str(out)])
    assert status.exit_code == 0
    assert "1 result file(s): 1 done, 0 failed, 0 corrupt" in status.output
    assert "dense" in status.output and "digits" in status.output


# -------------------------------------------------------------------------------------- bad input


BAD_SPECS = [
    ("[grid]\nmethod = [app]\n", "not valid TOML"),
    ("[grid]\ncolour = ['red']\n", "unknown key 'colour'"),
    ("[config]\nepoch = 3\n", "unknown key 'epoch'"),
    ("[grids]\nmethod = ['app']\n", "unknown table(s) grids"),
    ("grid = 3\n", "grid must be a table"),
    ("[grid]\nseed = []\n", "[grid] seed is an empty list"),
    ("[config]\nepochs = 'ten'\n", "epochs must be an integer, got 'ten'"),
    ("[grid]\nmethod = ['app']\n[config]\nmethod = 'osp'\n", "method set in both [grid] and [config]"),
]


@pytest.mark.parametrize("text, message", BAD_SPECS)
def test_a_bad_spec_is_one_line_and_nothing_written_is_lost(tmp_path, text, message):
    out = tmp_path / "results"
    out.mkdir()
    (out / "keep.json").write_text("{}")
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    result = CliRunner().invoke(main, ["run", "--spec", str(spec), "--out", str(out)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {spec}") and message in lines[0], result.output
    assert sorted(p.name for p in out.iterdir()) == ["keep.json"] and (out / "keep.json").read_text() == "{}"


def _unwritable_folder(tmp_path: Path) -> Path | None:
    """A folder this user cannot write in: chmod does for a normal user; root needs a read-only filesystem."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    try:  # root writes through any mode bits, but not into sysfs
        Path("/sys/.almabench-probe").touch()
    except OSError:
        return Path("/sys")
    Path("/sys/.almabench-probe").unlink()
    return None


def test_a_results_folder_that_is_a_file_or_cannot_be_written_is_one_line(tmp_path):
    a_file = tmp_path / "results"
    a_file.write_text("my notes")
    for dry in ([], ["--dry-run"]):
        result = CliRunner().invoke(main, ["run", "--out", str(a_file), *dry])
        assert result.exit_code == 1 and result.output.strip() == f"Error: --out {a_file} exists and is not a folder"
    assert a_file.read_text() == "my notes"
    result = CliRunner().invoke(main, ["run", "--out", str(a_file / "sub")])
    assert result.exit_code == 1 and result.output.startswith(f"Error: cannot create results folder {a_file}/sub")
    locked = _unwritable_folder(tmp_path)
    if locked is None:
        pytest.skip("no unwritable folder to try")
    result = CliRunner().invoke(main, ["run", "--out", str(locked), "--epochs", "1", "--megabatches", "2"])
    assert result.exit_code == 1
    assert result.output.strip().startswith(f"Error: results folder {locked} is not writable"), result.output
    result = CliRunner().invoke(main, ["status", str(a_file)])
    assert result.exit_code == 1 and result.output.strip() == f"Error: {a_file} is not a folder"


def test_a_data_root_with_half_a_dataset_names_the_missing_files(tmp_path):
    write_cifar_layout(tmp_path / "data", "cifar10", n_per_file=4)
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_3").unlink()
    (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").unlink()
    out = tmp_path / "results"
    result = CliRunner().invoke(main, ["run", "--datasets", "cifar10", "--data-root", str(tmp_path / "data"),
                                       "--out", str(out)])
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: cifar10 not found: ") and "lacks data_batch_3, test_batch" in line
    assert not out.exists()


def test_jobs_zero_is_one_line_for_every_backend(tmp_path):
    for backend in ("loky", "dask"):
        result = CliRunner().invoke(main, ["run", "--jobs", "0", "--backend", backend, "--out", str(tmp_path)])
        assert result.exit_code == 1 and result.output.strip() == "Error: --jobs must be at least 1, got 0"


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    from almabench.cell.run import run_cell

    config = RunConfig(method="dense", dataset="digits", megabatches=2, epochs=1, milestones=(1,), flip=False,
                       crop_padding=1)
    checkpoint = tmp_path / "c.pt"
    other = config.replace(seed=5)
    def stop(step):
        raise KeyboardInterrupt  # as if killed after the first megabatch

    with pytest.raises(KeyboardInterrupt):
        run_cell(other, checkpoint=checkpoint, progress=stop)
    resumed = []
    with pytest.warns(UserWarning, match="written by other code, settings or data"):
        result = run_cell(config, checkpoint=checkpoint, on_resume=resumed.append)
    assert not resumed and len(result["steps"]) == 2
    assert without_timing(result) == without_timing(run_cell(config))


def test_checkpoints_follow_the_code_fingerprint_not_the_git_commit(tmp_path, monkeypatch):
    import almabench.cell.run

    config = RunConfig(method="dense", dataset="digits", megabatches=2, epochs=1, milestones=(1,), flip=False,
                       crop_padding=1)
    real_environment = almabench.cell.run.environment

    def run_as(code: str, commit: str, checkpoint: Path, **kwargs):
        monkeypatch.setattr(almabench.cell.run, "environment",
                            lambda device: {**real_environment(device), "code": code, "git_commit": commit})
        return almabench.cell.run.run_cell(config, checkpoint=checkpoint, **kwargs)

    def stop(step):
        raise KeyboardInterrupt  # as if killed after the first megabatch

    for code, commit, resumes in (("same", "next-commit", True), ("edited", "same-commit", False)):
        checkpoint = tmp_path / f"{code}.pt"
        with pytest.raises(KeyboardInterrupt):
            run_as("same", "same-commit", checkpoint, progress=stop)
        resumed = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run_as(code, commit, checkpoint, on_resume=resumed.append)
        assert resumed == ([1] if resumes else [])
        assert any("written by other code" in str(w.message) for w in caught) != resumes
        assert len(result["steps"]) == 2


def test_cells_done_in_another_precision_are_kept_with_a_warning(tmp_path):
    configs = [RunConfig(method="dense", dataset="digits", megabatches=2, epochs=1, milestones=(1,), flip=False,
                       crop_padding=1)]
    assert run_grid(configs, ONE_THREAD, tmp_path).ran == 1  # fp32 on the CPU
    with pytest.warns(UserWarning, match=r"^1 cell\(s\) in this folder were run in fp32 and are kept; this run "
                                         r"computes in bf16"):
        outcome = run_grid(configs, RunOptions(threads=1, precision="bf16"), tmp_path)
    assert outcome.ran == 0 and outcome.skipped == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same precision again: nothing to say
        assert run_grid(configs, ONE_THREAD, tmp_path).skipped == 1


def test_a_cell_is_described_by_its_axes_and_the_spec_axes_it_sets():
    from almabench.grid.specs import describe

    assert describe(RunConfig()) == "app digits convnet T=8 epochs=50 seed=0"
    assert describe(RunConfig(pruner="magnitude", protocol="released", epochs=3)) == (
        "app digits convnet T=8 epochs=3 seed=0 pruner=magnitude protocol=released")
    # two cells that differ only in epochs read apart
    assert describe(RunConfig(epochs=2)) != describe(RunConfig(epochs=3))
