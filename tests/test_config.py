"""What a cell computes is what its user meant: the dataset's augmentation, milestones scaled to the epochs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from almabench.cell.config import RunConfig, default_milestones
from almabench.cli import main
from conftest import write_cifar_layout


@pytest.mark.parametrize("epochs, expected", [(50, (20, 40)), (10, (4, 8)), (2, (1, 2)), (1, (1,)), (4, (2, 3)),
                                              (5, (2, 4)), (100, (40, 80))])
def test_milestones_are_the_papers_fractions_of_the_epochs_rounded_half_up(epochs, expected):
    assert default_milestones(epochs) == expected


def test_resolving_fills_only_what_the_user_left_unset():
    unset = RunConfig(dataset="cifar10", epochs=10)
    assert unset.resolve(flip=True, crop_padding=4, scope="erk").to_dict() == unset.replace(
        flip=True, crop_padding=4, milestones=(4, 8), scope="erk").to_dict()
    chosen = RunConfig(dataset="cifar10", epochs=10, flip=False, crop_padding=2, milestones=(3,), scope="layer")
    assert chosen.resolve(flip=True, crop_padding=4, scope="erk") == chosen
    # two spellings of one computation are one cell once resolved
    assert unset.resolve(True, 4, scope="global").hash() == RunConfig(
        dataset="cifar10", epochs=10, flip=True, crop_padding=4, milestones=[4, 8], scope="global",
    ).resolve(False, 1, scope="erk").hash()


def _run(args, tmp_path):
    result = CliRunner().invoke(main, ["run", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "out").glob("*.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize("epochs, milestones", [(50, [20, 40]), (3, [1, 2])])
def test_a_cifar10_cell_launched_by_flags_alone_records_the_cifar_recipe(tmp_path, epochs, milestones):
    write_cifar_layout(tmp_path / "data", "cifar10", n_per_file=12)
    result = _run(["--datasets", "cifar10", "--archs", "convnet", "--megabatches", "2", "--methods", "dense",
                   "--epochs", str(epochs), "--data-root", str(tmp_path / "data")], tmp_path)
    config = result["config"]
    assert (config["flip"], config["crop_padding"], config["milestones"]) == (True, 4, milestones)


def test_a_digits_cell_records_no_flip_and_its_own_padding(tmp_path):
    result = _run(["--methods", "dense", "--megabatches", "2", "--epochs", "2"], tmp_path)
    config = result["config"]
    assert (config["dataset"], config["flip"], config["crop_padding"], config["milestones"]) == (
        "digits", False, 1, [1, 2])


def test_dry_run_names_per_cell_what_differs_from_the_papers_recipe(tmp_path):
    result = CliRunner().invoke(main, ["run", "--dry-run", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if "not the paper's" in line]
    assert lines == ["not the paper's: epochs=10, milestones=[4, 8], crop_padding=1, flip=false"] * 3


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "epochs must be at least 1, got 0"),
    (["--epochs", "4", "--set", "milestones=[2, 5]"], "milestones must be epochs in 1..4 (the learning rate drops "
                                                      "after them), got [2, 5]"),
    (["--set", "milestones=[0]"], "milestones must be epochs in 1..10"),
    (["--set", "lr_gamma=0"], "lr_gamma must be > 0"),
    (["--set", "momentum=-0.9"], "momentum must be >= 0, got -0.9"),
    (["--set", "weight_decay=-1e-4"], "weight_decay must be >= 0, got -0.0001"),
    (["--set", "crop_padding=8"], "digits: crop_padding = 8 px is as large as its 8 px images; use 0..7 (or -1: "
                                  "the dataset's, 1 px)"),
    (["--seeds", str(2**64)], "seed must be an integer in 0..2^63-1 (it seeds 64-bit generators), got "
                              "18446744073709551616"),
    (["--seeds", "-1"], "seed must be an integer in 0..2^63-1"),
    (["--tau", "5000"], "tau = 5000.0 keeps 0.8^tau = 0 of the weights (the kept fraction must be in (0, 1]); use "
                        "a smaller tau"),
    (["--tau", "60", "--methods", "osp"], "tau = 60.0 keeps 0.8^tau = 1.53e-06 of convnet's 239,904 prunable "
                                          "weights, i.e. none; use a smaller tau"),
    (["--tau", "0.5", "--methods", "app"], "tau must be >= 1 for app: its kept fraction 0.8^δ_t with δ = "
                                           "linspace(1, tau, T) must not grow, since its masks only shrink; got 0.5"),
])
def test_settings_that_make_no_sense_stop_before_any_cell_runs(tmp_path, args, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.json").write_bytes(b"{}")
    result = CliRunner().invoke(main, ["run", *args, "--out", str(out)])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert lines[-1].startswith("Error: ") and message in lines[-1], result.output
    assert [p.name for p in out.iterdir()] == ["keep.json"] and (out / "keep.json").read_bytes() == b"{}"


def test_a_flag_that_lists_seeds_keeps_the_specs_seed_first_order():
    """study-regime lists seed first so that a study cut short holds whole seeds; --methods and --seeds replace
    the values, not the order (they used to move both axes last, so the cells ran method by method)."""
    from almabench.grid.specs import load_spec

    grid = load_spec("study-regime").with_overrides({"method": ("dense", "app"), "seed": (0, 1)}, {})
    assert [(c.seed, c.method) for c in grid.configs()] == [(0, "dense"), (0, "app"), (1, "dense"), (1, "app")]
    added = load_spec("study-regime").with_overrides({"arch": ("convnet",), "tau": (1.0, 4.5)}, {})
    assert list(added.axes) == ["seed", "dataset", "arch", "megabatches", "method", "tau"]  # a new axis goes last
