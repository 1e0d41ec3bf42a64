"""The grid's progress bar (on a fake terminal, and absent when piped) and the live logs of `run --log`,
including a cell killed after a megabatch and resumed: every step is in its TensorBoard log once."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from almabench.cell.config import RunConfig, RunOptions
from almabench.cli import main
from almabench.grid.execute import run_grid
from almabench.grid.plan import image_passes
from almabench.grid.progress import GridProgress, step_passes
from almabench.grid.specs import load_spec
from almabench.grid.watch import LogTarget
from almabench.results.store import checkpoint_path, result_path
from conftest import TINY_SPEC

SPEC = TINY_SPEC.replace('method = ["app", "osp", "dense"]', 'method = ["app", "dense"]')  # two cells
assert SPEC != TINY_SPEC
ONE_THREAD = RunOptions(threads=1)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC)
    return path


class Terminal(io.StringIO):
    """What tqdm takes for a terminal."""

    def isatty(self) -> bool:
        return True


def last_frame(bar_output: str) -> str:
    return bar_output.replace("\n", "\r").split("\r")[-2 if bar_output.endswith("\n") else -1]


# ------------------------------------------------------------------------------------------ the bar


def test_the_bar_counts_image_passes_lines_go_above_it_and_resumed_steps_are_not_speed():
    config = RunConfig(megabatches=4, epochs=2).resolve(False, 1, scope="global")
    bar, lines = Terminal(), io.StringIO()
    progress = GridProgress(file=bar, lines=lines, n_train=lambda c, o: 1000)
    passes = step_passes(config, 1000)
    assert sum(passes) == image_passes(config, 1000) and passes == sorted(passes)  # full replay grows
    progress.begin([config], RunOptions())
    assert "grid:" in bar.getvalue() and "0 done, 0 running, 1 left" in bar.getvalue()
    h = config.hash()
    progress.event({"kind": "start", "cell": h})
    progress.event({"kind": "resumed", "cell": h, "steps": 2})
    assert progress.bar.n == progress.bar.initial == sum(passes[:2])  # done earlier: no speed of this run
    for t in (3, 4):
        progress.event({"kind": "step", "cell": h, "step": {"step": t, "test_accuracy": 90.0, "density": 0.5,
                                                            "seconds": 1.0, "train_size": 1}})
    assert "1 running, 0 left" in last_frame(bar.getvalue())
    progress.cell_done({"config": config, "status": "ok"})
    progress.close()
    assert progress.bar.n == sum(passes)
    final = last_frame(bar.getvalue())
    assert final.startswith("grid: 100%") and "1 done, 0 running, 0 left" in final
    assert lines.getvalue().count(" step ") == 2 and "step 4/4: accuracy 90.00 %" in lines.getvalue()


def test_a_grid_on_a_terminal_ends_at_100_percent_with_every_megabatch_line_from_loky_workers(spec, tmp_path):
    bar, lines = Terminal(), io.StringIO()
    with GridProgress(file=bar, lines=lines) as progress:
        outcome = run_grid(load_spec(str(spec)).configs(), ONE_THREAD, tmp_path / "out", jobs=2, watch=progress)
    assert outcome.ran == 2 and not outcome.failed
    assert last_frame(bar.getvalue()).startswith("grid: 100%")
    assert "2 done, 0 running, 0 left" in last_frame(bar.getvalue())
    text = lines.getvalue()  # the workers' lines reached this process through the channel, each once
    for method in ("app", "dense"):
        assert [text.count(f"{method} digits convnet T=3 epochs=2 seed=0 step {t}/3") for t in (1, 2, 3)] == [1] * 3


def test_no_bar_when_the_output_is_piped(spec, tmp_path):
    run = CliRunner().invoke(main, ["run", "--spec", str(spec), "--methods", "dense", "--out", str(tmp_path / "o")])
    assert run.exit_code == 0, run.output
    both = run.stdout + run.stderr
    assert "\r" not in both and "grid:" not in both and "%|" not in both
    assert run.stdout.count(" step ") == 3


# ------------------------------------------------------------------------------------------ live logs


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_a_rerun_writer_sorts_after_an_earlier_event_file_of_its_second_so_tensorboard_keeps_its_steps(spec, tmp_path):
    """The killed process's file may be from the rerun's own second (or, with clock skew, the next): TensorBoard reads
    files in name order, so a rerun file that sorted first would have its steps purged by the older file's step 1."""
    pytest.importorskip("tensorboard")
    from almabench.analysis.export.tensorboard import EVENT_FILES, TensorBoardRun

    config = load_spec(str(spec)).configs()[0].resolve(False, 1, scope="global").to_dict()
    steps = [{"step": t, "test_accuracy": 10.0 * t, "train_accuracy": 0,
        "val_accuracy": 0, "gap": 0, "density": 1, "target_density": 1, "params_remaining": 1, "flops_remaining": 1,
        "seconds": 1, "images_per_second": 1} for t in (1, 2, 3)]
    killed = TensorBoardRun(tmp_path, config, "abc")
    killed.step({**steps[0], "test_accuracy": 99.0}, 0)
    killed.close()
    (old,) = killed.dir.glob(EVENT_FILES)
    second = int(time.time()) + 1  # the next second, on a host name that sorts after any other
    old.rename(old.with_name(f"events.out.tfevents.{second:010d}.~~~.1.1"))
    rerun = TensorBoardRun(tmp_path, config, "abc")
    for step in steps:
        rerun.step(step, 0)
    rerun.close()
    assert scalars(rerun.dir)["accuracy/test"] == [(1, 10.0), (2, 20.0), (3, 30.0)]


def test_a_cell_killed_after_a_megabatch_and_resumed_has_each_step_once_in_its_live_tensorboard_log(spec, tmp_path):
    pytest.importorskip("tensorboard")
    out, logdir = tmp_path / "out", tmp_path / "tb"
    config = load_spec(str(spec)).configs()[0]  # app: the first cell the child runs
    resolved = config.resolve(False, 1, scope="global")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", "from almabench.cli import main; main()", "run", "--spec",
                             str(spec), "--methods", "app", "--out", str(out), "--log", f"tensorboard:{logdir}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = checkpoint_path(out, resolved)
    deadline = time.monotonic() + 180
    while not checkpoint.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the cell never checkpointed"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not result_path(out, resolved).exists(), "the cell finished before the kill: make it longer"
    resumed = []
    run_grid([config], ONE_THREAD, out, logs=(LogTarget("tensorboard", logdir),),
             on_done=lambda i, n, done: resumed.append(done["resumed_after"]))
    assert resumed[0] >= 1  # it went on from the checkpoint
    result = json.loads(result_path(out, resolved).read_text())
    (run_dir,) = {p.parent for p in logdir.rglob("events.out.tfevents.*")}
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # the killed process's file and the rerun's
    logged = scalars(run_dir)
    for tag, key in (("accuracy/test", "test_accuracy"), ("density/measured", "density"), ("gap", "gap")):
        assert logged[tag] == [(s["step"], pytest.approx(s[key], rel=1e-6)) for s in result["steps"]], tag
    assert [v for _, v in logged["cer_so_far"]] == [sum(s["test_errors"] for s in result["steps"][:t])
                                                    for t in (1, 2, 3)]
    assert logged["final/test_accuracy"] == [(3, pytest.approx(result["final_test_accuracy"]))]


def test_live_wandb_logs_every_megabatch_of_every_cell(spec, tmp_path, monkeypatch):
    import importlib.machinery
    import types

    from test_export import FakeRun  # records what the writer hands W&B

    calls: list[FakeRun] = []
    module = types.ModuleType("wandb")
    module.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    module.Settings = lambda **kwargs: kwargs
    module.init = lambda **kwargs: FakeRun(calls, **kwargs)
    monkeypatch.setitem(sys.modules, "wandb", module)
    out = tmp_path / "out"
    run_grid(load_spec(str(spec)).configs(), ONE_THREAD, out, logs=(LogTarget.parse("wandb", out),))
    assert sorted(r.kwargs["job_type"] for r in calls) == ["app", "dense"] and all(r.finished for r in calls)
    for run in calls:
        result = json.loads((out / f"{run.kwargs['id']}.json").read_text())
        assert [(t, d["accuracy/test"]) for t, d in run.logged] == [(s["step"], s["test_accuracy"])
                                                                   for s in result["steps"]]
        assert run.summary["final/cer"] == result["cer"] and run.kwargs["dir"] == str(out / "wandb")


def test_an_unknown_or_uninstalled_live_log_is_one_line_before_any_cell_runs(spec, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    for value, message in (("mlflow", "unknown --log 'mlflow'; choose from: tensorboard, wandb (optionally NAME:DIR)"),
                           ("wandb", "--log wandb needs the wandb package: pip install 'almabench[wandb]'")):
        run = CliRunner().invoke(main, ["run", "--spec", str(spec), "--log", value, "--out", str(tmp_path / "o")])
        assert run.exit_code == 1 and run.output.strip().splitlines()[-1] == f"Error: {message}", run.output
    assert not (tmp_path / "o").exists()


def test_a_live_log_that_fails_is_dropped_with_a_warning_and_never_fails_the_cell(tmp_path):
    from almabench.grid.watch import CellWatch

    class Broken:
        def step(self, *args):
            raise OSError("disk full")

        def finish(self, *args):
            raise AssertionError("dropped runs are not called again")

        def close(self):
            raise AssertionError("dropped runs are not called again")

    watch = CellWatch(RunConfig(), tmp_path / "x.pt", events=lambda message: None)
    watch.runs = [Broken()]
    with pytest.warns(UserWarning, match="live log of app digits .* stopped: OSError: disk full"):
        watch.step({"step": 1, "test_accuracy": 1.0, "density": 1.0, "seconds": 1.0, "train_size": 1,
                    "test_errors": 3})
    watch.finish({"status": "ok"})
    watch.close()
    assert watch.runs == [] and watch.cer == 3


def test_off_a_terminal_a_resumed_cell_counts_without_a_bar():
    config = RunConfig(megabatches=2, epochs=1).resolve(False, 1, scope="global")
    progress = GridProgress(file=io.StringIO(), lines=io.StringIO(), n_train=lambda c, o: 100)
    progress.begin([config], RunOptions())
    assert not progress.shown
    progress.event({"kind": "resumed", "cell": config.hash(), "steps": 1})
    progress.event({"kind": "step", "cell": config.hash(), "step": {"step": 2, "test_accuracy": 1.0, "density": 1.0,
                                                                    "seconds": 1.0, "train_size": 1}})
    progress.cell_done({"config": config, "status": "failed"})
    progress.close()
    assert progress.failed == 1 and "step 2/2" in progress.lines.getvalue()
