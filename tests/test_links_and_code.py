"""Issue 37: almabench writes, creates, deletes and reads only inside the folders it was asked for, and a link does
not stretch them; a pickled dataset is data, not code; a Slurm setting reaches the job script only as a value.

Each case hashes everything under tmp_path outside the asked folder before and after (tree, a file by its bytes,
a link by where it points) and finds it unchanged; variants put the link one level deeper, make it a link to a
folder rather than a file, or swap it in between the check and the open (O_NOFOLLOW refuses it)."""

from __future__ import annotations

import os
import pickle
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_untrusted_results import DOCS, GOOD, good, tree

from almabench import safe_paths
from almabench.cli import main
from almabench.errors import AlmabenchError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

T = ["--methods", "dense", "--datasets", "digits", "--archs", "convnet", "--megabatches", "2", "--epochs", "1",
     "--set", "milestones=[1]", "--threads", "1"]


def invoke(*args: str) -> tuple[int, list[str]]:
    run = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in run.output, run.output
    return run.exit_code, run.output.strip().splitlines()


def cell_hash(tmp_path: Path) -> str:
    """The hash of T's one cell, from a dry run (which writes nothing)."""
    code, lines = invoke("run", *T, "--dry-run", "--out", tmp_path / "dry")
    assert code == 0, lines
    return re.search(r"([0-9a-f]{16})\.json", "\n".join(lines)).group(1)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A folder outside every asked folder, with a file and an inner folder in it."""
    folder = tmp_path / "victim"
    (folder / "inner").mkdir(parents=True)
    (folder / "v.txt").write_text("precious\n")
    return folder


def refused(code: int, lines: list[str], *words: str) -> None:
    """Exit 1 and one error line (the last; a run says what it found first), naming what was refused."""
    errors = [line for line in lines if line.startswith("Error: ")]
    assert code == 1 and len(errors) == 1 and lines[-1] == errors[0], lines
    assert all(word in errors[0] for word in words), lines


# ---------------------------------------------------------------------------------------------- run side


@pytest.mark.parametrize("case", ["lock file", "locks folder", "checkpoints folder", "slurm folder"])
def test_a_link_where_a_run_writes_is_one_line_and_nothing_outside_changes(tmp_path, victim, case):
    h = cell_hash(tmp_path)
    out = tmp_path / "o"
    if case == "lock file":
        (out / ".locks").mkdir(parents=True)
        (out / ".locks" / f"{h}.lock").symlink_to(victim / "v.txt")
    else:
        out.mkdir()
        name = {"locks folder": ".locks", "checkpoints folder": ".checkpoints", "slurm folder": ".slurm"}[case]
        (victim / f"{h}.pt").write_bytes(b"not mine to delete")
        (victim / f".{h}.abcd.tmp").write_bytes(b"nor this")
        (out / name).symlink_to(victim, target_is_directory=True)
    before = tree(tmp_path, out)
    refused(*invoke("run", *T, "--out", out), "link" if case == "lock file" else "leads outside")
    assert tree(tmp_path, out) == before
    assert (victim / "v.txt").read_text() == "precious\n"
    assert not list(out.glob("*.json"))  # no cell ran


def test_a_lock_file_swapped_for_a_link_after_the_check_is_not_followed(tmp_path, victim, monkeypatch):
    """The folder is checked, then a link appears at the lock's name before the open: O_NOFOLLOW refuses it."""
    h = cell_hash(tmp_path)
    out = tmp_path / "o"
    real_folder = safe_paths.folder

    def folder_then_swap(root, path):
        made = real_folder(root, path)
        if Path(path).name == ".locks" and not (made / f"{h}.lock").is_symlink():
            (made / f"{h}.lock").symlink_to(victim / "v.txt")
        return made

    monkeypatch.setattr(safe_paths, "folder", folder_then_swap)
    before = tree(tmp_path, out)
    refused(*invoke("run", *T, "--out", out), f"{h}.lock is a link")
    assert tree(tmp_path, out) == before


@pytest.mark.parametrize("where", ["tensorboard", "tensorboard/digits"])
def test_a_live_log_through_a_link_is_one_line_and_writes_nothing_there(tmp_path, victim, where):
    pytest.importorskip("tensorboard")
    out = tmp_path / "o"
    (out / where).parent.mkdir(parents=True, exist_ok=True)
    (out / where).symlink_to(victim, target_is_directory=True)
    before = tree(tmp_path, out)
    refused(*invoke("run", *T, "--out", out, "--log", "tensorboard"), "leads outside")
    assert tree(tmp_path, out) == before


# ------------------------------------------------------------------------------------- report and export


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "R"
    folder.mkdir()
    for name in GOOD.values():
        shutil.copy(DOCS / f"{name}.json", folder)
    return folder


@pytest.mark.parametrize("where", ["report", "report/figures"])
def test_a_link_at_the_reports_folder_or_its_figures_is_one_line(tmp_path, results, victim, where):
    (results / where).parent.mkdir(parents=True, exist_ok=True)
    (results / where).symlink_to(victim, target_is_directory=True)
    before = tree(tmp_path, results)
    refused(*invoke("report", results, "--format", "svg"), "leads outside")
    assert tree(tmp_path, results) == before


@pytest.mark.parametrize("to", ["parquet", "tensorboard", "mlflow", "wandb"])
def test_a_link_at_an_exports_default_destination_is_one_line(tmp_path, results, victim, to):
    pytest.importorskip({"parquet": "pyarrow", "tensorboard": "tensorboard", "mlflow": "sqlalchemy",
                         "wandb": "wandb"}[to])
    (results / to).symlink_to(victim, target_is_directory=True)
    if to == "wandb":  # an earlier run of a cell in R, outside R: the export used to delete it
        (victim / "wandb" / f"offline-run-20250101_000000-{GOOD['app']}" / "files").mkdir(parents=True)
    before = tree(tmp_path, results)
    refused(*invoke("export", results, "--to", to), "leads outside", str(results))
    assert tree(tmp_path, results) == before


@pytest.fixture
def linked_secret(tmp_path: Path, results: Path) -> Path:
    """A valid result outside R, whose environment.platform is SECRET, linked into R/sub/ (one level deeper)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    doc = good("app")
    doc["environment"]["platform"] = "SECRET"
    secret = elsewhere / f"{GOOD['app']}.json"
    secret.write_text(__import__("json").dumps(doc))
    (results / f"{GOOD['app']}.json").unlink()
    (results / "sub").mkdir()
    (results / "sub" / "x.json").symlink_to(secret)
    (results / f"{GOOD['app']}.json").symlink_to(secret)  # and one at the top, where status looks
    return secret


def test_result_files_that_link_out_of_results_are_skipped_with_one_warning(tmp_path, results, linked_secret):
    pytest.importorskip("pyarrow")
    before = tree(tmp_path, results)
    for args in (["report", results, "--format", "svg"], ["export", results], ["status", results]):
        run = CliRunner().invoke(main, [str(a) for a in args])
        assert run.exit_code == 0, run.output
        assert "SECRET" not in run.output and "Traceback" not in run.output
        skipped = [line for line in run.output.splitlines() if "outside" in line]
        assert sorted(skipped) == sorted(
            f"warning: skipped {results / name}: a link to {linked_secret}, outside {results}"
            for name in ([f"{GOOD['app']}.json", "sub/x.json"] if args[0] != "status" else [f"{GOOD['app']}.json"]))
    assert "SECRET" not in (results / "report" / "report.md").read_text()
    assert b"SECRET" not in (results / "parquet" / "cells.parquet").read_bytes()
    assert tree(tmp_path, results) == before


def test_read_bytes_refuses_a_final_link_and_a_real_path_outside_its_root(tmp_path, victim):
    root = tmp_path / "root"
    root.mkdir()
    (root / "out.json").symlink_to(victim / "v.txt")
    with pytest.raises(AlmabenchError, match="outside"):
        safe_paths.read_bytes(root / "out.json", root)
    with pytest.raises(AlmabenchError, match="is a link"):
        safe_paths.open_file(root / "out.json", os.O_RDONLY)
    (root / "in.json").write_text("{}")
    (root / "alias.json").symlink_to(root / "in.json")  # a link inside the folder is read
    assert safe_paths.read_bytes(root / "alias.json", root) == b"{}"


# ------------------------------------------------------------------------------------------------- CIFAR


class Payload:
    """A pickle that runs a command when it is read: touches its marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def poisoned_root(tmp_path: Path, kind: str, marker: Path) -> Path:
    from conftest import write_cifar_layout

    root = tmp_path / f"data-{kind}"
    write_cifar_layout(root, kind)
    folder = root / ("cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python")
    first = "data_batch_1" if kind == "cifar10" else "train"
    (folder / first).write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0], "fine_labels": [0]},
                                              protocol=2))
    return root


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
@pytest.mark.parametrize("via", ["--data-root", "ALMABENCH_DATA"])
def test_a_cifar_batch_that_would_run_code_is_refused_and_runs_nothing(tmp_path, monkeypatch, kind, via):
    marker = tmp_path / "MARKER"
    root = poisoned_root(tmp_path, kind, marker)
    args = ["run", "--dry-run", "--datasets", kind, "--methods", "dense", "--out", tmp_path / "o"]
    if via == "--data-root":
        args += ["--data-root", root]
    else:
        monkeypatch.setenv("ALMABENCH_DATA", str(root))
    code, lines = invoke(*args)
    first = "data_batch_1" if kind == "cifar10" else "train"
    assert code == 1 and any(f"{first} is not a readable CIFAR batch: its pickle names posix.system" in line
                             for line in lines), lines
    assert len([line for line in lines if line.startswith("Error")]) == 1
    assert not marker.exists()


def test_the_batch_reader_takes_what_the_format_holds_in_every_protocol(tmp_path):
    import numpy as np

    from almabench.data.cifar import load_batch

    entry = {"data": np.arange(12, dtype=np.uint8).reshape(2, 6), "labels": [1, 2], b"batch_label": "x",
             "filenames": [b"a.png"]}
    for protocol in (2, 4, 5):
        path = tmp_path / f"p{protocol}"
        path.write_bytes(pickle.dumps(entry, protocol=protocol))
        read = load_batch(path)
        assert (read["data"] == entry["data"]).all() and read["labels"] == [1, 2] and read["filenames"] == [b"a.png"]


def test_the_real_cifar10_batches_still_read():
    root = Path.home() / ".cache" / "almabench" / "data"
    if not (root / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip("no CIFAR-10 under ~/.cache/almabench/data")
    from almabench.data.cifar import load_batch

    batch = load_batch(root / "cifar-10-batches-py" / "test_batch")
    assert batch["data"].shape == (10000, 3072) and len(batch["labels"]) == 10000


# ------------------------------------------------------------------------------------------------- Slurm


@pytest.fixture
def stand_in_slurm(tmp_path: Path, monkeypatch) -> Path:
    """An sbatch that keeps a copy of the script it is given and answers with a job id; an squeue that fails."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    copy = tmp_path / "submitted.sh"
    for name, body in (("sbatch", f'cp "$1" {copy}\necho "Submitted batch job 4242"\n'), ("squeue", "exit 1\n")):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return copy


SETTINGS = {"partition": "gpu,long", "time": "1-02:00:00", "account": "proj-7", "qos": "high", "constraint": "a100&ib",
            "mem": "32G", "cpus_per_task": "3", "gpus_per_node": "1"}


def test_each_slurm_setting_reaches_the_job_script_only_as_its_value(tmp_path, stand_in_slurm):
    pytest.importorskip("submitit")
    out = tmp_path / "o"
    pairs = [arg for key, value in SETTINGS.items() for arg in ("--slurm", f"{key}={value}")]
    code, lines = invoke("run", *T, "--backend", "slurm", "--detach", *pairs, "--out", out)
    assert code == 0, lines
    script = stand_in_slurm.read_text().splitlines()
    shell = [line for line in script if line.strip() and not line.startswith("#")]
    for key, value in SETTINGS.items():
        option = f"--{key.replace('_', '-')}="
        assert [line for line in script if option in line] == [f"#SBATCH {option}{shlex.quote(value)}"], script
        if not value.isdigit():  # a text value is nowhere else: not in a shell line, not in another directive
            assert [line for line in script if value in line] == [f"#SBATCH {option}{shlex.quote(value)}"], script
    assert len(shell) == 2 and shell[0] == "export SUBMITIT_EXECUTOR=slurm", shell  # and the srun line


@pytest.mark.parametrize("pair", ["partition=gpu\n#SBATCH --output=/tmp/x\ntouch INJECTED #", "qos=high\r",
                                  "account=a\x1bb", "mem=4G\n", "time=1:00\ntouch x", "cpus_per_task=2\n",
                                  "partition=gpu;touch x", "constraint=a$(touch x)"])
def test_a_slurm_setting_with_a_newline_control_or_shell_character_is_one_line_before_anything_is_written(
        tmp_path, stand_in_slurm, pair):
    out = tmp_path / "o"
    refused(*invoke("run", *T, "--backend", "slurm", "--detach", "--slurm", pair, "--out", out), "--slurm")
    assert not out.exists() and not stand_in_slurm.exists()


def test_a_spec_slurm_table_is_checked_as_the_command_line_is(tmp_path, stand_in_slurm):
    spec = tmp_path / "s.toml"
    spec.write_text('[config]\ndataset = "digits"\nmethod = "dense"\n\n[slurm]\n'
                    'partition = "gpu\\n#SBATCH --output=/tmp/x\\ntouch INJECTED #"\n')
    out = tmp_path / "o"
    refused(*invoke("run", "--spec", spec, "--backend", "slurm", "--detach", "--out", out), "[slurm]")
    assert not out.exists() and not stand_in_slurm.exists()


def test_a_submissions_file_that_is_a_link_is_refused_before_sbatch_runs(tmp_path, victim, stand_in_slurm):
    pytest.importorskip("submitit")
    out = tmp_path / "o"
    (out / ".slurm").mkdir(parents=True)
    (out / ".slurm" / "submissions.jsonl").symlink_to(victim / "v.txt")
    before = tree(tmp_path, out)
    refused(*invoke("run", *T, "--backend", "slurm", "--detach", "--out", out), "submissions.jsonl is a link")
    assert tree(tmp_path, out) == before and not stand_in_slurm.exists()


def test_a_script_the_cli_refuses_never_reaches_a_shell(tmp_path):
    """The CLI in a child process, under a time limit: the injection is refused there too (exit 1, one line)."""
    marker = tmp_path / "INJECTED"
    done = subprocess.run([sys.executable, "-m", "almabench.cli", "run", *T, "--backend", "slurm", "--detach",
                           "--slurm", f"partition=gpu\ntouch {marker}", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not marker.exists() and not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------------- plugins


@pytest.fixture
def patching_plugin(tmp_path: Path):
    """A --plugin file that registers nothing and patches a built-in method (issue 37's case: app's schedule)."""
    from almabench.extend import plugins

    plugins.forget()
    path = tmp_path / "patch.py"
    path.write_text("from almabench.methods import METHODS\n\nMETHODS.get('app').patched_by_a_plugin = True\n")
    yield path
    plugins.forget()
    from almabench.methods import METHODS

    if hasattr(METHODS.get("app"), "patched_by_a_plugin"):
        del METHODS.get("app").patched_by_a_plugin


def test_a_cell_made_beside_a_plugin_names_it_and_the_report_marks_it(tmp_path, patching_plugin):
    import json

    out = tmp_path / "o"
    code, lines = invoke("run", *T, "--plugin", patching_plugin, "--out", out)
    assert code == 0, lines
    (doc,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert doc["config"]["method"] == "dense"  # not a plugin's method: named all the same
    (entry,) = doc["environment"]["plugins"]["imported"]
    assert entry["origin"] == "file" and entry["from"] == str(patching_plugin) and len(entry["fingerprint"]) == 16
    assert list(doc["environment"]["plugins"]) == ["imported"]
    shutil.copy(DOCS / f"{GOOD['app']}.json", out)  # a committed cell, made without plugins
    run = CliRunner().invoke(main, ["report", str(out), "--format", "svg"])
    assert run.exit_code == 0, run.output
    assert (f"warning: 1 cell(s) were made in a process that imported plugin code, which may change what any cell "
            f"computes: {doc['config_hash']} (marked † under Configurations)") in run.output
    report = (out / "report" / "report.md").read_text()
    (row,) = [line for line in report.splitlines() if doc["config_hash"] in line and line.startswith("|")]
    assert f"† {patching_plugin}" in row
    (other,) = [line for line in report.splitlines() if GOOD["app"] in line and line.startswith("|")]
    assert "†" not in other


def test_a_cell_made_with_no_plugin_imported_has_no_plugins_key(tmp_path):
    import json

    from almabench.extend import plugins

    plugins.forget()
    out = tmp_path / "o"
    code, lines = invoke("run", *T, "--out", out)
    assert code == 0, lines
    (doc,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert "plugins" not in doc["environment"]


# ------------------------------------------------------------------------------------------------ trackers


@pytest.mark.parametrize("to", ["wandb", "mlflow"])
def test_an_export_to_a_tracker_writes_nothing_under_home(tmp_path, results, to):
    """In a child process whose environment says neither CI nor pytest (MLflow turns its telemetry off there by
    itself), HOME an empty folder: after the export, it is still empty; everything is under the destination."""
    pytest.importorskip(to if to == "wandb" else "sqlalchemy")
    home = tmp_path / "home"
    home.mkdir()
    quiet = ("CI", "PYTEST_CURRENT_TEST", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME",
             "WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "MLFLOW_DISABLE_TELEMETRY",
             "DO_NOT_TRACK")
    env = {**{k: v for k, v in os.environ.items() if k not in quiet}, "HOME": str(home)}
    before = tree(tmp_path, tmp_path / "dest")
    done = subprocess.run([sys.executable, "-m", "almabench.cli", "export", str(results), "--to", to, "--dest",
                           str(tmp_path / "dest")], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert list(home.rglob("*")) == []
    assert tree(tmp_path, tmp_path / "dest") == before


def test_dry_run_and_status_name_a_specs_plugin_code_before_importing_it(tmp_path):
    from almabench.extend import plugins

    plugins.forget()
    spec = tmp_path / "s.toml"
    shutil.copy(Path(__file__).parent / "plugins" / "half.py", tmp_path / "half.py")
    spec.write_text('plugins = ["half.py"]\n[grid]\nmethod = ["half"]\n[config]\ndataset = "digits"\n'
                    'megabatches = 2\nepochs = 1\n')
    try:
        for args in (["run", "--dry-run", "--spec", spec, "--out", tmp_path / "o"],
                     ["status", tmp_path, "--spec", spec]):
            plugins.forget()
            code, lines = invoke(*args)
            assert code == 0, lines
            assert f"importing plugin code named by the spec {spec}: {tmp_path / 'half.py'}" in lines, lines
    finally:
        plugins.forget()
