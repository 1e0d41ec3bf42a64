"""Result files are input that may come from anyone (issue 32): a crafted file is rejected by the one check
(validate.validate_result) as any corrupt file is, and every export writes only under its destination, through
no link, removing nothing it did not make. Each security test hashes the whole temporary tree outside the
destination before and after, and checks that the good cells still export."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from almabench.cell.config import RunConfig
from almabench.cli import main
from almabench.results.store import MAX_RESULT_BYTES, UnreadableFile, read_json
from almabench.results.validate import RESULT_NUMBERS, STEP_NUMBERS, validate_result

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results" / "cifar10-t8"
GOOD = {"dense": "db3aba15deb8d40f", "app": "47e16d4a66db2dce"}
DEEP = "[" * 100_000 + "]" * 100_000


def good(method: str = "app") -> dict:
    return json.loads((DOCS / f"{GOOD[method]}.json").read_text())


def with_config(doc: dict, **changes) -> dict:
    """doc with config values changed and config_hash made the true hash of the new config: a crafted file
    that validation lets through (a dataset may be a path, so '..' is a name RunConfig takes)."""
    config = RunConfig.from_dict({**doc["config"], **changes})
    return {**doc, "config": config.to_dict(), "config_hash": config.hash()}


def tree(root: Path, skip: Path) -> dict[str, str]:
    """Every entry under root except under skip: a file by its bytes' hash, a link by where it points."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if path == skip or skip in path.parents:
                continue
            key = str(path.relative_to(root))
            if path.is_symlink():
                entries[key] = "-> " + os.readlink(path)
            elif path.is_dir():
                entries[key] = "folder"
            else:
                entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


def crafted(results: Path, victim: Path) -> dict[str, str]:
    """The crafted files of issue 32 in results/, by file name, with the warning each must get."""
    app = good("app")
    climb = "aaaa/" + "../" * (len(results.parts) + 4) + str(victim).lstrip("/")
    files = {
        "climb.json": ({**app, "config_hash": climb}, f"config_hash should be 16 hex digits, got \"{climb[:36]}..."),
        "aaaa.json": ({**app, "config_hash": "aaaa"}, 'config_hash should be 16 hex digits, got "aaaa"'),
        "quote.json": ({**app, "config_hash": "47e16d4a'6db2dce"},
                       "config_hash should be 16 hex digits, got \"47e16d4a'6db2dce\""),
        "not-its-hash.json": ({**app, "config_hash": "0123456789abcdef"},
                              "config_hash 0123456789abcdef is not the hash of its config (47e16d4a66db2dce)"),
        "epochs.json": ({**app, "config": {**app["config"], "epochs": "1/../../../x"}},
                        "config: epochs must be an integer, got '1/../../../x'"),
        "huge-errors.json": ({**app, "steps": [{**app["steps"][0], "test_errors": 10**300}, *app["steps"][1:]]},
                             "holds the integer 1000000000000000000000000000000000000..., beyond 64 bits"),
    }
    reasons = {}
    for name, (doc, reason) in files.items():
        (results / name).write_text(json.dumps(doc))
        reasons[name] = reason
    (results / "deep.json").write_text(DEEP)
    reasons["deep.json"] = "nested too deeply (a result nests 6 levels at most)"
    (results / "inf.json").write_text(json.dumps(app).replace('"final_gap": ', '"final_gap": 1e400, "x": ', 1))
    reasons["inf.json"] = "holds 1e400, beyond the range of a float"
    return reasons


@pytest.fixture
def attack(tmp_path: Path) -> tuple[Path, Path, dict[str, str], str]:
    """tmp_path/results: the two good cells, one cell whose dataset is '..' and method climbs (valid names,
    so the export must sanitise them), and every crafted file; tmp_path/victim: a folder they aim at."""
    victim = tmp_path / "victim"
    (victim / "inner").mkdir(parents=True)
    (victim / "inner" / "precious.txt").write_text("do not touch")
    results = tmp_path / "results"
    results.mkdir()
    for name in GOOD.values():
        shutil.copy(DOCS / f"{name}.json", results)
    climber = with_config(good("dense"), dataset="..", method="../../victim")
    (results / f"{climber['config_hash']}.json").write_text(json.dumps(climber))
    return results, victim, crafted(results, victim), climber["config_hash"]


def export(results: Path, to: str, dest: Path, reasons: dict[str, str]) -> str:
    run = CliRunner().invoke(main, ["export", str(results), "--to", to, "--dest", str(dest)])
    assert run.exit_code == 0 and "Traceback" not in run.output, run.output
    warnings = sorted(line for line in run.output.splitlines() if line.startswith("warning:"))
    assert warnings == sorted(f"warning: skipped {results / name}: {reason}" for name, reason in reasons.items())
    return run.output


def exported_hashes(to: str, dest: Path) -> list[str]:
    """The config hash of every cell an export wrote (TensorBoard: the first 8 digits, once per event file), read
    back with the format's own reader."""
    if to == "parquet":
        import pandas as pd

        return sorted(pd.read_parquet(dest / "cells.parquet")["config_hash"])
    if to == "tensorboard":
        return sorted(f.parent.name.rsplit("-", 1)[1] for f in dest.rglob("events.out.tfevents.*")
                  if f.parent != dest)  # the export's one experiment-level hparams file lies at the top
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{dest / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return sorted(r.data.tags["config_hash"] for r in client.search_runs([client.get_experiment_by_name("almabench")
                                                                         .experiment_id]))


@pytest.mark.parametrize("to", ["parquet", "tensorboard", "mlflow"])
def test_crafted_result_files_are_skipped_and_nothing_outside_the_destination_changes(attack, tmp_path, to):
    pytest.importorskip({"parquet": "pyarrow", "tensorboard": "tensorboard", "mlflow": "sqlalchemy"}[to])
    results, _, reasons, climber = attack
    dest = tmp_path / "dest"
    before = tree(tmp_path, dest)
    export(results, to, dest, reasons)
    export(results, to, dest, reasons)  # again: what the first export made is replaced, nothing else removed
    assert tree(tmp_path, dest) == before
    hashes = exported_hashes(to, dest)
    assert hashes == sorted(h if to != "tensorboard" else h[:8] for h in (*GOOD.values(), climber))  # each once
    if to == "tensorboard":
        top = sorted(p.name for p in dest.iterdir())
        assert [n for n in top if not n.startswith("events.out.tfevents.")] == ["__", "cifar10"]  # '..' -> '__'
        assert len(top) == 3  # and the export's one hparams file: the second export replaced the first's
        assert (dest / "__" / "convnet" / "T=8" / "epochs=2" / ".._.._victim").is_dir()


@pytest.mark.parametrize("to", ["tensorboard", "wandb"])
def test_a_link_inside_the_destination_that_leads_out_is_one_line_and_nothing_is_written_through_it(tmp_path, to):
    pytest.importorskip(to)
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(DOCS / f"{GOOD['app']}.json", results)
    victim = tmp_path / "victim"
    victim.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    link = dest / ("app" if to == "tensorboard" else "wandb")  # where the run would go (one run: app/seed=0-...)
    link.symlink_to(victim, target_is_directory=True)
    before = tree(tmp_path, tmp_path / "nothing")
    run = CliRunner().invoke(main, ["export", str(results), "--to", to, "--dest", str(dest)])
    where = link / f"seed=0-{GOOD['app'][:8]}" if to == "tensorboard" else link
    assert run.exit_code == 1 and run.output.strip().splitlines() == [
        f"Error: {where} leads outside {dest} (to {victim / where.relative_to(link)}): nothing is written there"]
    assert tree(tmp_path, tmp_path / "nothing") == before


class FakeRun:
    def __init__(self, **kwargs) -> None:
        self.kwargs, self.summary = kwargs, {}

    def log(self, data: dict, step: int) -> None:
        pass

    def finish(self) -> None:
        pass


def test_wandb_export_removes_only_its_own_earlier_runs_never_through_a_link(attack, tmp_path, monkeypatch):
    import importlib.machinery
    import types

    calls: list[dict] = []
    module = types.ModuleType("wandb")
    module.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    module.Settings = lambda **kwargs: kwargs
    module.init = lambda **kwargs: calls.append(kwargs) or FakeRun(**kwargs)
    module.teardown = lambda: None
    monkeypatch.setitem(sys.modules, "wandb", module)
    results, victim, reasons, climber = attack
    dest = tmp_path / "dest"
    runs = dest / "wandb"
    runs.mkdir(parents=True)
    earlier = runs / f"offline-run-20260101_000000-{GOOD['app']}"
    (earlier / "files").mkdir(parents=True)
    link = runs / f"offline-run-20260101_000001-{GOOD['dense']}"
    link.symlink_to(victim, target_is_directory=True)
    odd = runs / f"offline-run-later-{GOOD['dense']}"  # its name is no W&B run's: not ours to remove
    odd.mkdir()
    (runs / "offline-run-20260101_000002-aaaa").mkdir()  # what the climbing hash would have globbed beside
    before = tree(tmp_path, earlier)
    export(results, "wandb", dest, reasons)
    assert not earlier.exists()  # the app cell's earlier run: replaced
    assert tree(tmp_path, earlier) == before  # the link, the odd folder, the victim: as they were
    assert sorted(call["id"] for call in calls) == sorted([*GOOD.values(), climber])


def test_a_link_where_an_export_or_the_report_writes_is_replaced_never_written_through(tmp_path):
    pytest.importorskip("pyarrow")
    results = tmp_path / "results"
    results.mkdir()
    for name in GOOD.values():
        shutil.copy(DOCS / f"{name}.json", results)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("tables.md", "report.md", "cells.parquet"):
        (elsewhere / name).write_text(f"my {name}")
    (results / "report").mkdir()
    (results / "parquet").mkdir()
    for folder, name in (("report", "tables.md"), ("report", "report.md"), ("parquet", "cells.parquet")):
        (results / folder / name).symlink_to(elsewhere / name)
    before = tree(tmp_path, results / "nothing")
    for args in (["report", str(results), "--format", "svg"], ["export", str(results)]):
        run = CliRunner().invoke(main, args)
        assert run.exit_code == 0, run.output
    for folder, name in (("report", "tables.md"), ("report", "report.md"), ("parquet", "cells.parquet")):
        assert (elsewhere / name).read_text() == f"my {name}"
        path = results / folder / name
        assert not path.is_symlink() and path.stat().st_size > 100
    changed = {k for k in before if tree(tmp_path, results / "nothing").get(k) != before[k]}
    assert changed == {"results/report/tables.md", "results/report/report.md", "results/parquet/cells.parquet"}


def test_an_mlflow_db_that_is_not_a_database_or_is_a_link_is_one_line(tmp_path):
    pytest.importorskip("sqlalchemy")
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(DOCS / f"{GOOD['app']}.json", results)
    dest = tmp_path / "ml"
    dest.mkdir()
    (dest / "mlflow.db").write_text("my notes, not a database")
    run = CliRunner().invoke(main, ["export", str(results), "--to", "mlflow", "--dest", str(dest)])
    assert run.exit_code == 1 and run.output.strip().splitlines() == [
        f"Error: {dest}/mlflow.db is not an SQLite database (not an MLflow store); move it away or pass --dest "
        f"FOLDER to write elsewhere"]
    assert (dest / "mlflow.db").read_text() == "my notes, not a database"
    (dest / "mlflow.db").unlink()
    (dest / "mlflow.db").symlink_to(tmp_path / "elsewhere.db")
    run = CliRunner().invoke(main, ["export", str(results), "--to", "mlflow", "--dest", str(dest)])
    assert run.exit_code == 1 and run.output.strip().splitlines() == [
        f"Error: {dest}/mlflow.db is a link: the store must be a file in --dest; pass --dest FOLDER to write "
        f"elsewhere"]
    assert not (tmp_path / "elsewhere.db").exists()


# ------------------------------------------------------------------------------- the one check, unit by unit


def test_every_key_a_reader_uses_is_required_one_at_a_time():
    doc = good()
    for key in RESULT_NUMBERS:
        assert validate_result({k: v for k, v in doc.items() if k != key}) == f"partial result, missing {key}"
    for key in STEP_NUMBERS:
        steps = [dict(s) for s in doc["steps"]]
        del steps[2][key]
        assert validate_result({**doc, "steps": steps}) == f"partial result, step 3 lacks {key}"


CONFIG_CASES = [
    ({"epochs": "2"}, 'config.epochs should be 2 as a RunConfig holds it, got "2"'),
    ({"tau": 4}, "config.tau should be 4.0 as a RunConfig holds it, got 4"),
    ({"lr": -0.1}, "config: lr must be > 0, got -0.1"),
    ({"megabatches": 0}, "config: megabatches must be at least 1, got 0"),
    ({"seed": -1}, "config: seed must be an integer in 0..2^63-1 (it seeds 64-bit generators), got -1"),
    ({"colour": "red"}, "config: unknown config key(s) colour; valid keys: arch, batch_size, crop_padding, "
                        "dataset, epochs, flip, lr, lr_gamma, megabatches, method, milestones, momentum, protocol, "
                        "prune_linear, pruner, replay, sample_fraction, scope, seed, settings, stream_images, tau, "
                        "val_fraction, weight_decay"),
    ({"milestones": [[1]]}, "config: milestones must be a list of integers, got [[1]]"),
    ({"dataset": "./x.npz"}, 'config.dataset should be "x.npz" as a RunConfig holds it, got "./x.npz"'),
]


@pytest.mark.parametrize("change, reason", CONFIG_CASES)
def test_a_config_a_run_config_would_not_hold_is_rejected(change, reason):
    doc = good()
    assert validate_result({**doc, "config": {**doc["config"], **change}}) == reason


RANGE_CASES = [
    (lambda d: d.update(final_test_accuracy=100.5), "final_test_accuracy should be in [0, 100], got 100.5"),
    (lambda d: d.update(final_density=-0.1), "final_density should be in [0, 1], got -0.1"),
    (lambda d: d.update(mean_gap=101.0), "mean_gap should be in [-100, 100], got 101.0"),
    (lambda d: d.update(test_size=0), "test_size should be >= 1, got 0"),
    (lambda d: d.update(params_total=1.5), "params_total should be an integer, got 1.5"),
    (lambda d: d["steps"][0].update(step=2), "step 1 says it is step 2"),
    (lambda d: d["steps"][0].update(test_errors=-1), "step 1 test_errors should be >= 0, got -1"),
    (lambda d: d["steps"][1].update(density=1.5), "step 2 density should be in [0, 1], got 1.5"),
    (lambda d: d["steps"][1].update(layer_density={"0.weight": 2.0}),
     'step 2 layer_density should be an object of densities in [0, 1], got {"0.weight": 2.0}'),
    (lambda d: d.update(started_at="yesterday"), 'started_at should be an ISO 8601 time, got "yesterday"'),
    (lambda d: d.update(seconds_by_part=[1]), "seconds_by_part should be an object of seconds, got [1]"),
    (lambda d: d.update(seconds_by_part={"startup": -0.5}),
     'seconds_by_part should be an object of seconds, got {"startup": -0.5}'),
    (lambda d: d.update(seconds_by_part={"startup": "1"}),
     'seconds_by_part should be an object of seconds, got {"startup": "1"}'),
    (lambda d: d.update(data={"a": {"b": {"c": {"d": {"e": {}}}}}}), "nested deeper than a result (6 levels)"),
    (lambda d: d.update(seconds=float("nan")), "holds nan, not a finite number"),
    (lambda d: d.update(test_size=100), "inconsistent result, a step has more test errors than test_size"),
]


@pytest.mark.parametrize("change, reason", RANGE_CASES)
def test_numbers_out_of_range_and_odd_shapes_are_rejected(change, reason):
    doc = good()
    assert validate_result(doc) is None
    change(doc)
    assert validate_result(doc) == reason


def test_read_json_refuses_what_the_parser_would_choke_on(tmp_path):
    cases = {"deep.json": (DEEP, "nested too deeply (a result nests 6 levels at most)"),
             "nan.json": ('{"a": NaN}', "holds NaN, which is not a number JSON can hold"),
             "big.json": ("1e400", "holds 1e400, beyond the range of a float"),
             "latin.json": (b"\xe9", "not UTF-8 text"),
             "half.json": ('{"a": ', "not valid JSON (Expecting value: line 1 column 7 (char 6))")}
    for name, (content, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(UnreadableFile) as err:
            read_json(path)
        assert str(err.value) == reason
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:
        f.truncate(16 * 2**20 + 1)  # sparse: no 16 MiB written
    with pytest.raises(UnreadableFile) as err:
        read_json(huge)
    assert str(err.value) == "larger than a result can be (16,777,217 bytes; at most 16,777,216)"
    assert MAX_RESULT_BYTES == 16 * 2**20


def test_edges_of_the_ranges_are_kept():
    doc = good()
    assert validate_result({**doc, "seconds_by_part": {"startup": 0.0, "test": 0.5}}) is None
    errors = [s["test_errors"] for s in doc["steps"]]
    assert validate_result({**doc, "test_size": max(errors)}) is None  # every image of a step wrong: allowed


def test_integers_beyond_64_bits_are_refused_and_the_largest_is_kept():
    doc = good()
    assert validate_result({**doc, "flops_dense": 2**63 - 1}) is None
    assert validate_result({**doc, "params_total": -(2**63 - 1)}) == (
        "params_total should be >= 0, got -9223372036854775807")
    assert validate_result({**doc, "flops_dense": 2**63}) == "holds the integer 9223372036854775808, beyond 64 bits"
    assert validate_result({**doc, "flops_dense": -(2**63)}) == (
        "holds the integer -9223372036854775808, beyond 64 bits")


# ------------------------------------------------------------- a deep file in every command that reads files


def test_a_deeply_nested_file_is_corrupt_to_status_report_and_the_api_and_moved_aside_by_run(tmp_path):
    from almabench.analysis import load_results

    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(DOCS / f"{GOOD['app']}.json", results)
    (results / f"{GOOD['dense']}.json").write_text(DEEP)
    run = CliRunner().invoke(main, ["status", str(results)])
    assert run.exit_code == 0 and "Traceback" not in run.output
    assert f"{GOOD['dense']}.json: nested too deeply (a result nests 6 levels at most)" in run.output, run.output
    seen: list[str] = []
    frame = load_results(results, seen.append)
    assert seen == [f"skipped {results / GOOD['dense']}.json: nested too deeply (a result nests 6 levels at most)"]
    assert set(frame["config_hash"]) == {GOOD["app"]}
    report = CliRunner().invoke(main, ["report", str(results), "--format", "svg"])
    assert report.exit_code == 0 and "Traceback" not in report.output
    # as a cell's own file in --out: --dry-run says corrupt, run moves it aside and runs the cell again
    out = tmp_path / "out"
    config = RunConfig(method="dense", megabatches=2, epochs=1).resolve(flip=False, crop_padding=1, scope="global")
    out.mkdir()
    (out / f"{config.hash()}.json").write_text(DEEP)
    args = ["run", "--methods", "dense", "--megabatches", "2", "--epochs", "1", "--threads", "1", "--out", str(out)]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0 and "Traceback" not in dry.output and "corrupt" in dry.output, dry.output
    assert (out / f"{config.hash()}.json").read_text() == DEEP
    ran = CliRunner().invoke(main, args)
    assert ran.exit_code == 1 and "Traceback" not in ran.output, ran.output
    assert (out / f"{config.hash()}.json.corrupt").read_text() == DEEP
    assert validate_result(json.loads((out / f"{config.hash()}.json").read_text())) is None


def test_a_spec_or_a_setting_nested_too_deeply_is_one_line(tmp_path):
    spec = tmp_path / "deep.toml"
    spec.write_text("[config]\nmilestones = " + "[" * 5000 + "]" * 5000 + "\n")
    for args, line in ((["--spec", str(spec)], f"Error: {spec}: nested too deeply to be a spec"),
                       (["--set", "milestones=" + "[" * 5000 + "]" * 5000], "Error: --set milestones: nested too "
                                                                             "deeply")):
        run = CliRunner().invoke(main, ["run", *args, "--dry-run", "--out", str(tmp_path / "out")])
        assert run.exit_code == 1 and run.output.strip().splitlines() == [line]
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ destinations (§2)


def unwritable(tmp_path: Path) -> tuple[Path, str]:
    """A destination that cannot be made, and the reason the line gives: a folder without write permission for
    a normal user; for root (whom mode bits do not stop), a folder in sysfs, which takes no new entry."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        return locked / "dest", f" ({locked} takes no new folder): permission denied"
    if os.access("/sys", os.W_OK) and not Path("/sys/almabench-dest").exists():
        try:
            os.rmdir(__import__("tempfile").mkdtemp(dir="/sys"))
        except OSError as exc:
            return Path("/sys/almabench-dest"), f" (/sys takes no new folder): {exc.strerror.lower()}"
    pytest.skip("no folder this user cannot write into")


@pytest.mark.parametrize("to", ["parquet", "tensorboard", "wandb", "mlflow"])
def test_a_destination_that_is_a_file_or_cannot_be_written_is_one_line_before_anything_is_written(tmp_path, to):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(DOCS / f"{GOOD['app']}.json", results)
    a_file = tmp_path / "notes"
    a_file.write_text("mine")
    locked, reason = unwritable(tmp_path)
    cases = {a_file: f"{a_file} is a file, not a folder",
             a_file / "sub": f"{a_file / 'sub'} is under a file ({a_file}), not a folder",
             locked: f"cannot write into {locked}/{reason}"}
    before = tree(tmp_path, tmp_path / "nothing")
    for dest, line in cases.items():
        run = CliRunner().invoke(main, ["export", str(results), "--to", to, "--dest", str(dest)])
        assert run.exit_code == 1 and run.output.strip().splitlines() == [
            f"Error: {line}; pass --dest FOLDER to write elsewhere"], run.output
    assert tree(tmp_path, tmp_path / "nothing") == before


def test_export_on_a_read_only_results_folder_names_dest(tmp_path, monkeypatch):
    import errno
    import tempfile

    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(DOCS / f"{GOOD['app']}.json", results)
    real = tempfile.mkdtemp

    def read_only(*args, dir=None, **kwargs):  # noqa: A002 - mkdtemp's own name
        if dir is not None and Path(dir).is_relative_to(results):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    before = tree(tmp_path, tmp_path / "nothing")
    run = CliRunner().invoke(main, ["export", str(results)])
    assert run.exit_code == 1 and run.output.strip().splitlines() == [
        f"Error: cannot write into {results}/parquet/ ({results} takes no new folder): read-only file system; "
        f"pass --dest FOLDER to write elsewhere"]
    assert tree(tmp_path, tmp_path / "nothing") == before


@pytest.mark.parametrize("kind", ["tensorboard", "wandb"])
def test_a_live_log_into_a_file_or_an_unwritable_folder_is_one_line_before_any_cell_runs(tmp_path, kind):
    pytest.importorskip(kind)
    a_file = tmp_path / "notes"
    a_file.write_text("mine")
    locked, reason = unwritable(tmp_path)
    out = tmp_path / "out"
    for folder, line in ((a_file, f"{a_file} is a file, not a folder"),
                         (locked, f"cannot write into {locked}/{reason}")):
        for dry in ([], ["--dry-run"]):
            run = CliRunner().invoke(main, ["run", "--methods", "dense", "--megabatches", "2", "--epochs", "1",
                                            "--out", str(out), "--log", f"{kind}:{folder}", *dry])
            assert run.exit_code == 1 and run.output.strip().splitlines() == [
                f"Error: {line}; pass --log {kind}:FOLDER to write elsewhere"], run.output
    assert not out.exists() and a_file.read_text() == "mine"


def test_the_mlflow_extra_without_sqlalchemy_or_alembic_is_one_line(tmp_path, monkeypatch):
    import importlib.util

    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(DOCS / f"{GOOD['app']}.json", results)
    real = importlib.util.find_spec
    for package in ("sqlalchemy", "alembic"):
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, p=package: None if name == p else real(name, *a))
        run = CliRunner().invoke(main, ["export", str(results), "--to", "mlflow", "--dest", str(tmp_path / "ml")])
        assert run.exit_code == 1 and run.output.strip().splitlines() == [
            f"Error: --to mlflow needs the {package} package: pip install 'almabench[mlflow]'"]
    assert not (tmp_path / "ml").exists()
