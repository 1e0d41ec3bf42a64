"""`almabench export`: each format read back with its own reader and compared with the result files.

The results are four real cells of docs/results/cifar10-t8 (dense, app, gmp and imp at 2 epochs, seed 0: gmp
and imp add their own step keys), plus one corrupt file that every export must skip with one warning line.
"""

from __future__ import annotations

import importlib.machinery
import json
import shutil
import struct
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from almabench.analysis import load_tables
from almabench.analysis.export.runs import run_name, step_scalars
from almabench.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results" / "cifar10-t8"
CELLS = {"dense": "db3aba15deb8d40f", "app": "47e16d4a66db2dce", "gmp": "f394138cc7932a84", "imp": "6028d010b57c4e81"}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    (root / "nested").mkdir(parents=True)
    for method, name in CELLS.items():
        shutil.copy(DOCS / f"{name}.json", (root / "nested" if method == "imp" else root) / f"{name}.json")
    (root / "broken.json").write_text('{"status": "ok", "config_hash": "x", "steps": "many"}')
    return root


def doc(method: str) -> dict:
    return json.loads((DOCS / f"{CELLS[method]}.json").read_text())


def export(results: Path, to: str, dest: Path) -> str:
    run = CliRunner().invoke(main, ["export", str(results), "--to", to, "--dest", str(dest)])
    assert run.exit_code == 0, run.output
    warnings = [line for line in run.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "broken.json" in warnings[0]  # the report's check, one line per file
    return run.output


# ---------------------------------------------------------------------------------------------- parquet


def test_parquet_tables_have_one_row_per_observation_known_values_and_stable_dtypes(results, tmp_path):
    dest = tmp_path / "pq"
    export(results, "parquet", dest)
    cells, steps, layers = (pd.read_parquet(dest / f"{name}.parquet") for name in ("cells", "steps", "layers"))
    assert (len(cells), len(steps), len(layers)) == (4, 4 * 8, 4 * 8 * 4)
    app = doc("app")
    row = steps[(steps["config_hash"] == CELLS["app"]) & (steps["step"] == 8)].iloc[0]
    assert row["test_accuracy"] == app["final_test_accuracy"] == 76.37
    assert row["cer_so_far"] == app["cer"]
    assert row["params_kept"] == pytest.approx(100 * app["steps"][-1]["params_remaining"] / app["params_total"])
    one = cells.set_index("config_hash").loc[CELLS["imp"]]
    assert one["method"] == "imp" and one["file"] == f"nested/{CELLS['imp']}.json" and one["cer"] == doc("imp")["cer"]
    assert one["milestones"] == "1,2" and one["data_image_size"] == "32,32"  # text: hashable, groupable
    assert cells.groupby("milestones").size().to_dict() == {"1,2": 4}
    assert len(cells.drop_duplicates(["milestones", "epochs"])) == 1
    block = "cifar10 / convnet / T=8 / snip / tau=4.5"  # what the report titles their block (one epoch budget)
    assert cells.set_index("config_hash")[["label", "block"]].loc[CELLS["imp"]].tolist() == ["imp", block]
    assert list(cells.columns[list(cells.columns).index("method"):][:3]) == ["method", "label", "block"]
    first = layers[(layers["config_hash"] == CELLS["app"]) & (layers["step"] == 1)]
    assert dict(zip(first["layer"], first["layer_density"])) == app["steps"][0]["layer_density"]
    # method-specific keys: a column for every cell, <NA> where the method records nothing
    imp_steps = steps[steps["config_hash"] == CELLS["imp"]]
    assert imp_steps["rewind_iteration"].notna().all() and steps["rewind_iteration"].isna().sum() == 24
    gmp_every = steps.loc[steps["config_hash"] == CELLS["gmp"], "gmp_schedule_every"]
    assert gmp_every.tolist() == [s["gmp_schedule"]["every"] for s in doc("gmp")["steps"]]
    expected = {"step": "Int64", "test_accuracy": "float64", "test_errors": "Int64", "rewind_iteration": "Int64",
                "gmp_schedule_every": "Int64", "mask_update_count": "Int64", "config_hash": "string"}
    assert {c: str(steps[c].dtype) for c in expected} == expected
    assert str(cells["flip"].dtype) == "boolean" and str(cells["stream_images"].dtype) == "Int64"
    assert str(cells["started_at"].dtype).startswith("datetime64") and str(cells["method"].dtype) == "string"
    assert {c for c in cells.columns if cells[c].dtype == object} == {"data_notes"}  # free text stays a list
    assert not [c for c in [*steps.columns, *layers.columns] if steps.get(c, layers.get(c)).dtype == object]


def test_parquet_export_is_deterministic_and_its_dtypes_do_not_depend_on_the_cells(results, tmp_path):
    export(results, "parquet", tmp_path / "a")
    export(results, "parquet", tmp_path / "b")
    for name in ("cells", "steps", "layers"):
        assert (tmp_path / "a" / f"{name}.parquet").read_bytes() == (tmp_path / "b" / f"{name}.parquet").read_bytes()
    only_dense = tmp_path / "dense"
    only_dense.mkdir()
    shutil.copy(results / f"{CELLS['dense']}.json", only_dense)
    alone, together = load_tables(only_dense), load_tables(results, warn=lambda m: None)
    for name in ("cells", "steps", "layers"):
        assert getattr(alone, name).dtypes.to_dict() == getattr(together, name).dtypes.to_dict(), name


def test_python_api_frames(results):
    tables = load_tables(results, warn=lambda m: None)
    from almabench.analysis import cells, layer_densities, load_results

    frame = load_results(results, warn=lambda m: None)
    assert len(frame) == len(tables.steps) == 32 and len(cells(frame)) == len(tables.cells) == 4
    assert len(layer_densities(frame)) == len(tables.layers)


# ------------------------------------------------------------------------------------------ tensorboard


def test_tensorboard_runs_hold_every_scalar_of_a_cell_at_every_step_and_its_hparams(results, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    dest = tmp_path / "tb"
    export(results, "tensorboard", dest)
    export(results, "tensorboard", dest)  # again: the run is replaced, never doubled
    app = doc("app")
    run_dir = dest / f"app/seed=0-{CELLS['app'][:8]}"  # without cifar10/convnet/T=8/epochs=2/, which all share
    assert run_dir.relative_to(dest).as_posix() == run_name(app["config"], app["config_hash"]).removeprefix(
        "cifar10/convnet/T=8/epochs=2/")
    assert len(list(dest.rglob("events.out.tfevents.*"))) == 5  # one file per cell, one experiment config
    assert not [p for p in run_dir.iterdir() if p.is_dir()]  # no timestamped hparams subfolder
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    cer = 0
    expected: dict[str, list[tuple[int, float]]] = {}
    for step in app["steps"]:
        cer += step["test_errors"]
        for tag, value in step_scalars(step, cer).items():
            expected.setdefault(tag, []).append((step["step"], value))
    assert "accuracy/test" in expected and "layer_density/0.weight" in expected and len(expected) == 15
    for tag, points in expected.items():
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert got == [(s, pytest.approx(v, rel=1e-6)) for s, v in points], tag
    assert [e.value for e in acc.Scalars("cer_so_far")][-1] == app["cer"]
    walls = [e.wall_time for e in acc.Scalars("accuracy/test")]
    assert walls == sorted(walls) and walls[-1] - walls[0] == pytest.approx(
        sum(s["seconds"] for s in app["steps"][1:]), abs=1e-3)  # rebuilt from the recorded seconds
    assert [(e.step, e.value) for e in acc.Scalars("final/test_accuracy")] == [(8, pytest.approx(76.37))]
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["method"].string_value == "app" and hparams["lr"].number_value == pytest.approx(0.1)
    assert hparams["config_hash"].string_value == app["config_hash"] and hparams["milestones"].string_value == "[1, 2]"
    assert hparams["batch_size"].string_value == "64" and hparams["seed"].string_value == "0"  # not 64.000
    assert "_hparams_/experiment" not in content  # one experiment config for the export, at its top


def test_tensorboard_export_has_one_hparams_config_with_the_varying_keys_first(results, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    shutil.copy(DOCS / "ab55cc86e8883f73.json", results)  # app at seed 1: method and seed vary
    dest = tmp_path / "tb"
    export(results, "tensorboard", dest)
    top = EventAccumulator(str(dest))
    top.Reload()
    content = top.PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    infos = list(experiment.hparam_infos)
    assert [(i.name, i.differs) for i in infos[:3]] == [("method", True), ("seed", True), ("config_hash", True)]
    assert not any(i.differs for i in infos[3:]) and {"arch", "dataset", "batch_size", "tau"} <= {
        i.name for i in infos[3:]}
    seed = infos[1]
    assert seed.type == api_pb2.DATA_TYPE_STRING and [v.string_value for v in seed.domain_discrete.values] == ["0", "1"]
    assert [v.string_value for v in infos[0].domain_discrete.values] == ["app", "dense", "gmp", "imp"]
    assert [m.name.tag for m in experiment.metric_infos] == ["final/test_accuracy", "final/cer", "final/density",
                                                             "final/gap", "final/mean_gap"]
    assert sorted(p.parent.relative_to(dest).as_posix() for p in dest.rglob("events.out.tfevents.*"))[:3] == [
        ".", f"app/seed=0-{CELLS['app'][:8]}", f"app/seed=1-{'ab55cc86'}"]


# ----------------------------------------------------------------------------------------------- mlflow


def test_mlflow_store_holds_each_cells_metric_history_params_and_block_tags(results, tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    dest = tmp_path / "ml"
    export(results, "mlflow", dest)
    export(results, "mlflow", dest)  # again: each cell's earlier run is replaced
    uri = f"sqlite:///{dest / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("almabench").experiment_id])
    assert sorted(r.data.tags["method"] for r in runs) == ["app", "dense", "gmp", "imp"]
    app = doc("app")
    run = next(r for r in runs if r.data.tags["config_hash"] == CELLS["app"])
    assert run.data.tags["block"] == "cifar10/convnet/T=8/epochs=2" and run.data.tags["seed"] == "0"
    assert run.data.params["lr"] == "0.1" and run.data.params["method"] == "app"
    assert run.data.params["epochs"] == "2"
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "accuracy/test"))
    assert history == [(s["step"], s["test_accuracy"]) for s in app["steps"]]
    layer = client.get_metric_history(run.info.run_id, "layer_density/8.weight")
    assert sorted((m.step, m.value) for m in layer) == [(s["step"], s["layer_density"]["8.weight"])
                                                        for s in app["steps"]]
    assert run.data.metrics["final/cer"] == app["cer"]


# ------------------------------------------------------------------------------------------------ wandb


class FakeRun:
    def __init__(self, calls: list, **kwargs) -> None:
        self.calls, self.kwargs, self.logged, self.summary, self.finished = calls, kwargs, [], {}, False
        calls.append(self)

    def log(self, data: dict, step: int) -> None:
        self.logged.append((step, dict(data)))

    def finish(self) -> None:
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    """A `wandb` module that records what the writer hands it."""
    calls: list[FakeRun] = []
    module = types.ModuleType("wandb")
    module.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    module.Settings = lambda **kwargs: kwargs

    def init(**kwargs):
        import os

        assert os.environ["WANDB_MODE"] == "offline" and kwargs["mode"] == "offline"  # never a server
        return FakeRun(calls, **kwargs)

    def teardown():
        assert calls and all(r.finished for r in calls)  # after every run is finished: it waits for their files
        module.torn_down += 1

    module.init, module.teardown, module.torn_down = init, teardown, 0
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return calls


def test_wandb_runs_log_every_step_with_its_megabatch_config_group_and_summary(results, tmp_path, fake_wandb):
    export(results, "wandb", tmp_path / "wb")
    assert len(fake_wandb) == 4 and all(r.finished for r in fake_wandb) and sys.modules["wandb"].torn_down == 1
    app = doc("app")
    run = next(r for r in fake_wandb if r.kwargs["id"] == app["config_hash"])
    assert run.kwargs["group"] == "cifar10/convnet/T=8/epochs=2" and run.kwargs["name"].startswith("app/seed=0-")
    assert run.kwargs["config"]["method"] == "app" and run.kwargs["config"]["epochs"] == 2
    assert list(run.kwargs["config"])[:2] == ["method", "config_hash"]  # what varies across the export first
    assert [step for step, _ in run.logged] == list(range(1, 9))
    assert [data["accuracy/test"] for _, data in run.logged] == [s["test_accuracy"] for s in app["steps"]]
    assert run.logged[-1][1]["cer_so_far"] == app["cer"]
    assert run.summary["final/test_accuracy"] == app["final_test_accuracy"]


def wandb_records(path: Path) -> list:
    """The records of a .wandb file: a 7-byte header, then LevelDB-log records in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    data, pos, records, pending = path.read_bytes(), 7, [], b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (length == 0 and kind == 0):
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def test_a_real_offline_wandb_run_holds_the_history(results, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_MODE", "offline")
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(results / f"{CELLS['app']}.json", one)
    (one / "broken.json").write_text("{")
    export(one, "wandb", tmp_path / "wb")
    files = list((tmp_path / "wb" / "wandb").glob(f"offline-run-*-{CELLS['app']}/run-{CELLS['app']}.wandb"))
    assert len(files) == 1
    records = wandb_records(files[0])
    history = {int(r.history.step.num): {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                         for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"}
    assert sorted(history) == list(range(1, 9))
    assert [history[t]["accuracy/test"] for t in range(1, 9)] == [s["test_accuracy"] for s in doc("app")["steps"]]
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.run_group == "cifar10/convnet/T=8/epochs=2" and run.run_id == CELLS["app"]


# ------------------------------------------------------------------------------------------- bad input


def test_the_default_format_needs_no_package_the_base_install_lacks():
    import tomllib

    from almabench.analysis.export import WRITERS
    from almabench.analysis.export.cli import export as command

    default = next(p.default for p in command.params if p.name == "to")
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    base = {dep.split(">")[0].split("=")[0].split("[")[0].strip() for dep in project["dependencies"]}
    assert default == "parquet" and WRITERS.get(default).requires in base  # `pip install -e .` can export


def test_a_missing_extra_or_an_unknown_format_is_one_line(results, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    for args, message in ((["--to", "tensorboard"], "pip install 'almabench[tensorboard]'"),
                          (["--to", "csv"], "unknown export format 'csv'; choose from: mlflow, parquet")):
        run = CliRunner().invoke(main, ["export", str(results), *args])
        assert run.exit_code == 1 and "Traceback" not in run.output
        errors = [line for line in run.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and message in errors[0], run.output
    run = CliRunner().invoke(main, ["export", str(results / "nowhere")])
    assert run.exit_code == 1 and "does not exist" in run.output
