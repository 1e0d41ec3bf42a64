import json
import time

import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from almabench.cell.config import RunConfig, RunOptions
from almabench.cell.device import resolve_device
from almabench.cell.models import ARCHS, build_model
from almabench.cell.run import run_cell, seconds_by_part, summarise
from almabench.cell.stream import make_stream
from almabench.cli import main
from almabench.data import load_dataset
from almabench.errors import AlmabenchError
from almabench.methods import METHODS
from almabench.results.store import without_timing

TINY = dict(dataset="digits", arch="convnet", megabatches=3, epochs=1, milestones=(1,), flip=False)


def test_config_hashes_are_pinned_and_type_stable():
    assert RunConfig(scope="global").hash() == "bf21a9e8fbc5a384"  # sha1 of "{}": defaults (and global) omitted
    assert RunConfig(method="osp", seed=2, tau=3, scope="global").hash() == "47c9dee9cef308c4"
    assert RunConfig().hash() != RunConfig(scope="global").hash()  # unset: the method's, resolved before naming
    assert RunConfig(method="osp", tau=4).hash() == RunConfig(method="osp", tau=4.0).hash()
    assert RunConfig(milestones=[20, 40]).hash() == RunConfig(milestones=(20, 40)).hash()
    assert RunConfig(dataset="./data/x.npz").hash() == RunConfig(dataset="data/x.npz").hash()
    assert RunConfig(seed=1).hash() != RunConfig().hash()


def test_every_architecture_builds_for_grey_8px_and_rgb_32px_inputs():
    for arch in ARCHS:
        for channels, size in ((1, 8), (3, 32)):
            model = build_model(arch, 7, channels, size).eval()
            assert model(torch.zeros(2, channels, size, size)).shape == (2, 7), arch


def test_cer_and_gap_arithmetic_on_a_hand_made_case():
    steps = [
        {"test_accuracy": 90.0, "test_errors": 1000, "gap": 5.0, "density": 0.8},
        {"test_accuracy": 92.5, "test_errors": 750, "gap": 2.0, "density": 0.6},
        {"test_accuracy": 95.0, "test_errors": 500, "gap": -1.0, "density": 0.5},
    ]
    assert summarise(steps) == {"final_test_accuracy": 95.0, "cer": 2250, "final_density": 0.5,
                                "final_gap": -1.0, "mean_gap": 2.0}


class AlwaysClassZero(nn.Module):
    """Predicts class 0 for every image, so its errors are known in advance."""

    def __init__(self, num_classes: int, channels: int, size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        with torch.no_grad():
            self.bias[0] = 1.0

    def forward(self, x):
        return self.conv(x).flatten(1)[:, :1] * 0 + self.bias


def known_model_run(tmp_path, **kwargs):
    """A dense run of AlwaysClassZero on 100 blank training and 40 test images with seeded labels (T = 4, no
    epochs): every accuracy is the share of class 0 in the images it is measured on. Returns the result and the
    labels."""
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 3, 100), rng.integers(0, 3, 40)
    x_train, x_test = np.zeros((100, 4, 4), np.uint8), np.zeros((40, 4, 4), np.uint8)
    path = tmp_path / "known.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    ARCHS._entries["always0"] = AlwaysClassZero
    options, run_kwargs = kwargs.pop("options", RunOptions()), kwargs.pop("run_kwargs", {})
    try:
        config = RunConfig(method="dense", dataset=str(path), arch="always0", megabatches=4, epochs=0, seed=3,
                           **kwargs)
        result = run_cell(config, options, **run_kwargs)
    finally:
        del ARCHS._entries["always0"]
    return result, y_train, y_test


@pytest.mark.parametrize("replay, trained", [  # the megabatches (0-based) steps 1-4 train and validate on
    ("full", [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]),
    ("none", [[0], [1], [2], [3]]),
    ("previous", [[0], [0, 1], [1, 2], [2, 3]]),
])
def test_cer_and_gap_through_the_harness_with_a_known_model(tmp_path, replay, trained):
    result, y_train, y_test = known_model_run(tmp_path, replay=replay)
    errors = int((y_test != 0).sum())
    assert [s["test_errors"] for s in result["steps"]] == [errors] * 4
    assert [s["test_accuracy"] for s in result["steps"]] == [100.0 * (40 - errors) / 40] * 4
    assert result["cer"] == 4 * errors
    stream = make_stream(100, 4, seed=3)  # megabatches of 25: 22 train, 3 validate (0.1 · 25 rounded half up)
    assert [(s["train_size"], s["val_size"]) for s in result["steps"]] == [(22 * len(m), 3 * len(m)) for m in trained]
    for step, megabatches in zip(result["steps"], trained):
        train = torch.cat([stream[i].train for i in megabatches]).numpy()
        val = torch.cat([stream[i].val for i in megabatches]).numpy()
        expected = 100 * (y_train[train] == 0).mean() - 100 * (y_train[val] == 0).mean()
        assert step["gap"] == pytest.approx(expected)
        assert (step["sample_size"], step["best_epoch"]) == (0, 0)  # dense draws no π_t; no epoch ran
        assert 0 <= step["validation_seconds"] <= step["train_seconds"] <= step["seconds"]  # parts of a whole


def test_a_run_reports_each_record_once_and_its_times_add_up(tmp_path, monkeypatch):
    """Progress sees every step record; the options reach the run (threads, the allocator's answer); every
    time is non-negative, each step's parts fit in the step, the parts of the cell in the cell, and the cell
    (as the checkpoint saw it too) in the wall time around it."""
    import almabench.cell.run

    seen, tuned = [], []
    monkeypatch.setattr(almabench.cell.run, "reuse_freed_memory", lambda: tuned.append(1) or True)  # asked once on CPU
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    wall = time.perf_counter()
    try:
        result, _, _ = known_model_run(tmp_path, options=RunOptions(device="cpu", threads=1),
                                       run_kwargs={"progress": seen.append, "checkpoint": tmp_path / "cell.pt"})
    finally:
        torch.set_num_threads(threads)
    wall = time.perf_counter() - wall
    assert seen == result["steps"]
    assert (result["environment"]["torch_threads"], result["environment"]["memory_reused"], tuned) == (1, True, [1])
    parts = ("prune_seconds", "train_seconds", "validation_seconds", "test_seconds", "gap_seconds")
    for step in result["steps"]:
        assert all(0 <= step[k] <= step["seconds"] for k in parts), step
    assert sum(s["seconds"] for s in result["steps"]) <= result["seconds"] + 1e-3 <= wall + 2e-3
    by_part = result["seconds_by_part"]
    assert min(by_part.values()) >= 0 and sum(by_part.values()) <= result["seconds"] + 1e-2
    saved = torch.load(tmp_path / "cell.pt", weights_only=True)["seconds"]  # elapsed when step 4 was saved
    assert sum(s["seconds"] for s in result["steps"]) <= saved + 1e-3 and saved <= result["seconds"]


def test_seconds_by_part_sums_the_step_records_and_takes_training_without_validation():
    steps = [{"prune_seconds": 1.0, "train_seconds": 5.0, "validation_seconds": 2.0, "gap_seconds": 0.5,
              "test_seconds": 0.25},
             {"prune_seconds": 2.0, "train_seconds": 3.0, "validation_seconds": 1.0}]  # an older record: no gap, test
    assert seconds_by_part(steps, startup=1.5, checkpoint=0.125) == {
        "startup": 1.5, "pruning": 3.0, "training": 5.0, "validation": 3.0, "gap": 0.5, "test": 0.25,
        "checkpoint": 0.125}


def test_devices_resolve_to_what_is_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("auto") == torch.device("cpu")
    with pytest.raises(AlmabenchError, match="CUDA is not available here; use --device cpu"):
        resolve_device("cuda:0")
    with pytest.raises(AlmabenchError, match="unknown device 'tpu'; choose from: auto, cpu, cuda, cuda:N"):
        resolve_device("tpu")


def test_identical_seeds_give_identical_results_and_other_seeds_do_not():
    config = RunConfig(method="app", **TINY)
    first, second = run_cell(config), run_cell(config)
    assert json.dumps(without_timing(first)) == json.dumps(without_timing(second))
    other = run_cell(config.replace(seed=1))
    assert other["steps"][0]["layer_density"] != first["steps"][0]["layer_density"]


def test_paper_app_follows_the_schedule_and_released_app_compounds():
    app = run_cell(RunConfig(method="app", pruner="magnitude", **{**TINY, "megabatches": 4}))
    released = run_cell(RunConfig(method="app-released", pruner="magnitude", **{**TINY, "megabatches": 4}))
    schedule = [0.8**d for d in (1.0, 1 + 3.5 / 3, 1 + 7 / 3, 4.5)]  # δ = linspace(1, 4.5, 4), by hand
    total = app["prunable_total"]
    assert [s["density"] for s in app["steps"]] == [round(d * total) / total for d in schedule]
    compounded = np.cumprod(schedule)
    measured = [s["density"] for s in released["steps"]]
    assert measured[0] == pytest.approx(schedule[0], abs=1e-4)
    assert measured == pytest.approx(compounded.tolist(), abs=0.02)  # independent masks multiply
    assert all(m < s - 0.1 for m, s in zip(measured[1:], schedule[1:]))


def test_every_method_runs_and_records_its_target():
    """T = 3, τ = 4.5: APP's schedule is 0.8^δ with δ = linspace(1, 4.5, 3) = 1, 2.75, 4.5; gmp and imp end each
    megabatch on it too; osp, rigl and set hold 0.8^4.5 throughout; dense and the warm-start controls keep
    everything."""
    app, final = [0.8, 0.8**2.75, 0.8**4.5], [0.8**4.5] * 3
    targets = {"app": app, "app-released": app, "gmp": app, "imp": app, "osp": final, "rigl": final, "set": final,
               "dense": [1.0] * 3, "scratch": [1.0] * 3, "shrink-perturb": [1.0] * 3}
    assert sorted(METHODS) == sorted(targets)
    for name, target in targets.items():
        result = run_cell(RunConfig(method=name, **TINY))
        assert [s["target_density"] for s in result["steps"]] == pytest.approx(target, rel=1e-12, abs=0), name


def test_cli_run_writes_three_results_that_follow_their_schedules(tmp_path):
    out = tmp_path / "results"
    args = ["run", "--methods", "app,osp,dense", "--megabatches", "4", "--epochs", "1", "--out", str(out)]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 0, run.output
    results = {r["config"]["method"]: r for r in (json.loads(p.read_text()) for p in out.glob("*.json"))}
    assert sorted(results) == ["app", "dense", "osp"]
    assert all(len(r["steps"]) == 4 for r in results.values())
    app = [s["density"] for s in results["app"]["steps"]]
    assert app == pytest.approx([0.8**d for d in (1.0, 1 + 3.5 / 3, 1 + 7 / 3, 4.5)], abs=0.005)
    assert app == sorted(app, reverse=True)
    assert all(abs(s["density"] - 0.8**4.5) < 0.005 for s in results["osp"]["steps"])
    assert all(s["density"] == 1.0 for s in results["dense"]["steps"])
    assert results["app"]["data"]["fingerprint"] == load_dataset("digits").fingerprint
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "0 ran, 3 already done" in again.output


@pytest.mark.parametrize("args, message", [
    (["--methods", "app,nope"],
     "unknown method 'nope'; choose from: app, app-released, dense, gmp, imp, osp, rigl, scratch, set, shrink-perturb"),
    (["--datasets", "mnist"], "unknown dataset 'mnist'; choose from: cifar10, cifar100, digits"),
    (["--archs", "resnet9"], "unknown architecture 'resnet9'; choose from: convnet,"),
    (["--pruner", "grasp2"], "unknown pruner 'grasp2'; choose from: grasp, magnitude, random, snip, synflow"),
    (["--tau", "0"], "tau must be > 0, got 0.0"),
    (["--tau", "-1.5"], "tau must be > 0"),
    (["--megabatches", "0"], "megabatches must be at least 1, got 0"),
    (["--megabatches", "5000"], "5000 megabatches need at least 10000 training examples"),
    (["--megabatches", "four"], "--megabatches expects comma-separated int values"),
    (["--jobs", "0"], "--jobs must be at least 1, got 0"),
    (["--set", "colour=red"], "unknown key 'colour'"),
    (["--spec", "nope"], "spec 'nope' not found; shipped specs: "),
])
def test_bad_input_is_one_clear_line_before_any_cell_runs(tmp_path, args, message):
    out = tmp_path / "results"
    result = CliRunner().invoke(main, ["run", "--out", str(out), *args])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and message in lines[-1], result.output
    assert "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


def test_bad_npz_dataset_is_named_on_the_command_line(tmp_path):
    np.savez(tmp_path / "half.npz", x_train=np.zeros((10, 8, 8), np.uint8), y_train=np.zeros(10, int))
    result = CliRunner().invoke(main, ["run", "--datasets", str(tmp_path / "half.npz"), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert "half.npz: missing key(s) x_test, y_test" in result.output


def test_list_names_every_registered_entry():
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0
    for name in [*METHODS, *ARCHS, "digits", "cifar10", "snip", "magnitude", "random", "quick"]:
        assert name in result.output


def test_dense_is_one_cell_however_many_pruners_the_grid_crosses_it_with():
    from almabench.grid.specs import GridSpec

    grid = GridSpec({"method": ("dense", "app"), "pruner": ("snip", "magnitude"), "tau": (3.0, 4.5)}, {})
    cells = grid.configs()
    assert sorted(c.method for c in cells) == ["app"] * 4 + ["dense"]
    dense = next(c for c in cells if c.method == "dense")
    assert (dense.pruner, dense.tau) == ("snip", 4.5)


def test_the_gpu_configuration_bf16_and_channels_last_runs_a_cell_like_fp32(tmp_path):
    """What CUDA runs by default (bf16 autocast, channels_last), run here on the CPU: the same schedule and
    masks bookkeeping, and a learnable task learnt as well as in fp32."""
    from conftest import make_images

    x_train, y_train = make_images(400, 32, 3, seed=0)
    x_test, y_test = make_images(100, 32, 3, seed=1)
    path = tmp_path / "bands32.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    config = RunConfig(method="app", dataset=str(path), arch="convnet", megabatches=2, epochs=3,
                       milestones=(2,), tau=3.0)
    fp32, bf16 = run_cell(config, RunOptions(threads=1)), run_cell(config, RunOptions(threads=1, precision="bf16"))
    assert (fp32["environment"]["precision"], bf16["environment"]["precision"]) == ("fp32", "bf16")
    assert fp32["environment"]["channels_last"] and bf16["environment"]["channels_last"]  # 32 px images
    for result in (fp32, bf16):
        assert [s["target_density"] for s in result["steps"]] == pytest.approx([0.8, 0.8**3.0], rel=1e-12)  # δ: 1, 3
        assert [s["density"] for s in result["steps"]] == pytest.approx([0.8, 0.8**3.0],
                                                                         abs=1.0 / result["prunable_total"])
        assert result["final_test_accuracy"] >= 95.0
    assert abs(fp32["final_test_accuracy"] - bf16["final_test_accuracy"]) <= 5.0
