"""A method's declared settings (issue 42): reachable from --set and specs, a grid axis, checked before any cell
runs, named in the cell's file only where not the default, recorded in the result, the report and the export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from almabench.cell.config import RunConfig
from almabench.cli import main
from almabench.methods import METHODS, Method, Setting, build_method
from analysis import load_results
from analysis.blocks import scope_in_method
from analysis.tidy import load_tables

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DOCS = Path(__file__).parents[1] / "docs" / "results"
SPEC = """
[grid]
seed = [0, 1]
method = ["shrink-perturb", "dense"]
shrink = [0.4, 0.2]

[config]
dataset = "digits"
megabatches = 2
epochs = 4
stream_images = 900
"""


def test_two_values_of_a_setting_in_one_spec_are_two_cells_per_seed_recorded_labelled_and_exported(tmp_path):
    spec, out = tmp_path / "s.toml", tmp_path / "out"
    spec.write_text(SPEC)
    result = CliRunner().invoke(main, ["run", "--spec", str(spec), "--out", str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    docs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    by = {(d["config"]["method"], d["config"]["seed"], d["config"]["settings"].get("shrink")): d for d in docs}
    assert set(by) == {("shrink-perturb", s, v) for s in (0, 1) for v in (None, 0.2)} | {("dense", 0, None),
                                                                                         ("dense", 1, None)}
    default, tuned = by["shrink-perturb", 0, None], by["shrink-perturb", 0, 0.2]
    assert default["config_hash"] == RunConfig.from_dict({**default["config"], "settings": {}}).hash()
    assert default["method_settings"] == {"shrink": 0.4, "perturb": 0.1}
    assert tuned["method_settings"] == {"shrink": 0.2, "perturb": 0.1}
    assert [s["shrink"] for s in tuned["steps"]] == [0.2, 0.2]
    assert default["steps"][0]["test_errors"] == tuned["steps"][0]["test_errors"]  # megabatch 1: nothing shrunk
    metrics = ("test_errors", "train_accuracy", "val_accuracy")
    assert [default["steps"][1][k] for k in metrics] != [tuned["steps"][1][k] for k in metrics]
    labels = set(scope_in_method(load_results(out))["method"])
    assert labels == {"dense", "shrink-perturb", "shrink-perturb (shrink=0.2)"}
    cells = load_tables(out).cells.set_index("config_hash")
    assert cells.loc[tuned["config_hash"], "label"] == "shrink-perturb (shrink=0.2)"
    assert cells.loc[tuned["config_hash"], "setting_shrink"] == 0.2
    assert cells.loc[default["config_hash"], "settings"] == ""
    exported = CliRunner().invoke(main, ["export", str(out), "--to", "parquet", "--dest", str(tmp_path / "pq")])
    assert exported.exit_code == 0, exported.output
    import pandas as pd

    parquet = pd.read_parquet(tmp_path / "pq" / "cells.parquet").set_index("config_hash")
    assert parquet.loc[tuned["config_hash"], "setting_shrink"] == 0.2
    assert parquet.loc[tuned["config_hash"], "label"] == "shrink-perturb (shrink=0.2)"


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "shrink=1.5"], "shrink must be a number >= 0 and <= 1, got 1.5"),
    (["--set", "shrink=true"], "shrink must be a number >= 0 and <= 1, got True"),
    (["--set", "perturb=-1"], "perturb must be a number >= 0, got -1.0"),
    (["--methods", "dense", "--set", "shrink=0.2"], "setting(s) shrink belong to no method of this grid (shrink of "
                                                   "shrink-perturb)"),
    (["--set", "shrinks=0.2"], "--set: unknown key 'shrinks'; valid keys: "),
])
def test_a_bad_setting_is_one_line_and_exit_1_before_any_cell_runs(tmp_path, args, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", "--methods", "shrink-perturb", "--megabatches", "2", "--epochs", "1",
                                       "--out", str(out), "--threads", "1", *args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {message}"), result.output
    assert not out.exists()


def test_list_method_shows_each_setting_with_its_default_range_and_help():
    result = CliRunner().invoke(main, ["list", "rigl"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("rigl: RigL:")
    rows = {line.split()[0]: line for line in lines[3:]}
    assert rows.keys() == {"drop_fraction", "update_every", "update_end"}
    assert rows["update_every"].split()[1:4] == ["default", "100", "an"]
    assert "an integer >= 1" in rows["update_every"]


def test_built_in_knobs_are_settings_with_the_defaults_they_had():
    defaults = {name: {s.name: s.default for s in METHODS.get(name).settings} for name in METHODS}
    assert defaults["rigl"] == defaults["set"] == {"drop_fraction": 0.3, "update_every": 100, "update_end": 0.75}
    assert defaults["gmp"] == {"prune_start": 0.2, "prune_end": 0.75}
    assert defaults["imp"] == {"rewind_cap": 500, "rewind_fraction": 0.1}
    assert defaults["shrink-perturb"] == {"shrink": 0.4, "perturb": 0.1}
    method = build_method(RunConfig(method="rigl", settings={"update_every": 7.0}))
    assert (method.update_every, type(method.update_every)) == (7, int)
    with pytest.raises(Exception, match="update_every must be an integer >= 1, got 2.5"):
        build_method(RunConfig(method="rigl", settings={"update_every": 2.5}))


def test_every_committed_result_keeps_its_name():
    files = sorted(DOCS.rglob("*.json"))
    assert len(files) > 100
    for path in files:
        doc = json.loads(path.read_text())
        assert RunConfig.from_dict(doc["config"]).hash() == path.stem == doc["config_hash"], path


def test_a_setting_may_not_take_a_config_keys_name():
    with pytest.raises(TypeError, match="setting 'epochs' must be an identifier other than the config keys"):
        type("Bad", (Method,), {"name": "bad", "settings": (Setting("epochs", 3, "clash"),)})
