"""Robustness round 5 (issue 38), the cases of the command line and the scaffold: each one line and exit 1, nothing
written and nothing hanging."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from almabench.cli import main
from almabench.errors import AlmabenchError
from almabench.extend import plugins
from almabench.extend.contract import check_method


def one_line(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_a_thread_count_past_any_machine_is_refused_before_the_grid_is_built(tmp_path):
    out = tmp_path / "out"
    for value in ("99999999999999999999", "0", "5000"):
        line = one_line(["run", "--threads", value, "--out", str(out)])
        assert line == f"Error: --threads must be between 1 and 4096 (torch threads per cell), got {value}"
    assert not out.exists()


def test_a_grid_of_a_million_cells_is_one_line_at_once_not_minutes_of_silence(tmp_path):
    spec = tmp_path / "big.toml"
    taus = [1 + i / 100 for i in range(1000)]
    spec.write_text(f"[grid]\nmethod = ['app']\nseed = {list(range(1000))}\ntau = {taus}\n")
    line = one_line(["run", "--spec", str(spec), "--dry-run"])
    assert line == (f"Error: {spec}: the grid has 1,000,000 cells (seed 1,000 × tau 1,000); almabench plans at most "
                    f"100,000 in one run: split it into several specs or --out folders")


@pytest.mark.parametrize("name", ["torch", "os", "numpy", "test", "site"])
def test_new_method_refuses_a_name_that_would_hide_an_importable_module(tmp_path, name):
    line = one_line(["new-method", name, "--dest", str(tmp_path)])
    assert line.startswith(f"Error: new-method: '{name}' would make a package {name} that hides the importable module")
    assert list(tmp_path.iterdir()) == []


def test_new_method_refuses_a_250_character_name_and_a_dangling_link_at_its_folder(tmp_path):
    line = one_line(["new-method", "a" * 250, "--dest", str(tmp_path)])
    assert line.startswith("Error: new-method: 'aaaa") and line.endswith("at most 64 characters (e.g. my-method)")
    os.symlink(tmp_path / "nowhere", tmp_path / "almabench-dangling")
    line = one_line(["new-method", "dangling", "--dest", str(tmp_path)])
    assert line == (f"Error: new-method: {tmp_path / 'almabench-dangling'} exists; choose another --dest or name "
                    f"(nothing was written)")
    assert not (tmp_path / "nowhere").exists()


HANGS = """
import time
from almabench.methods import Method, register


@register
class Hangs(Method):
    name = "hangs"

    def before_step(self, ctx):
        while True:
            time.sleep(0.05)
"""


def test_check_method_on_a_hook_that_never_returns_stops_at_its_time_limit(tmp_path: Path):
    plugin = tmp_path / "hangs.py"
    plugin.write_text(HANGS)
    plugins.forget()
    try:
        with pytest.raises(AlmabenchError, match=r"check-method hangs: not finished after 2 s \(the built-ins take "
                                                 r"seconds\): a hook of the method that never returns\?"):
            check_method("hangs", [str(plugin)], timeout=2)
    finally:
        plugins.forget()


def run_on_a_terminal_of(rows: int, columns: int, args: list[str], cwd: Path) -> str:
    """Run `almabench ARGS` with its output on a real pseudo-terminal of that size; what the terminal received."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "almabench.cli", *args], stdin=subprocess.DEVNULL,
                               stdout=slave, stderr=slave, cwd=cwd, close_fds=True)
    os.close(slave)
    received = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        received += chunk
    process.wait(timeout=120)
    os.close(master)
    assert process.returncode == 0, received.decode(errors="replace")
    return received.decode(errors="replace")


def test_a_terminal_of_0_rows_and_0_columns_still_gets_the_progress_bar(tmp_path):
    args = ["run", "--methods", "dense", "--megabatches", "2", "--epochs", "1", "--set", "stream_images=300",
            "--threads", "1", "--out", str(tmp_path / "out")]
    screen = run_on_a_terminal_of(0, 0, args, tmp_path)
    assert "grid:" in screen and "100%" in screen, screen
    assert "cells: 1 done, 0 running, 0 left" in screen


def cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """almabench in a process of its own, under a time limit: a hang fails the test instead of the suite."""
    return subprocess.run([sys.executable, "-m", "almabench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)


TINY = ["--methods", "dense", "--megabatches", "2", "--epochs", "1", "--set", "stream_images=300", "--threads", "1"]


def test_a_fifo_and_a_link_to_dev_zero_among_the_results_are_skipped_and_nothing_hangs(tmp_path):
    out = tmp_path / "out"
    assert cli(["run", *TINY, "--out", str(out)], tmp_path).returncode == 0
    [done] = list(out.glob("*.json"))
    os.mkfifo(out / "x.json")
    os.symlink("/dev/zero", out / "z.json")
    status = cli(["status", str(out)], tmp_path)
    assert status.returncode == 0, status.stderr
    assert "corrupt x.json: not a regular file (a FIFO)" in status.stdout
    assert f"skipped {out / 'z.json'}: a link to /dev/zero, outside {out}" in status.stderr
    report = cli(["report", str(out), "--out", str(tmp_path / "r"), "--format", "png"], tmp_path)
    assert report.returncode == 0, report.stderr
    assert f"warning: skipped {out / 'x.json'}: not a regular file" in report.stderr
    dry = cli(["run", *TINY, "--out", str(out), "--dry-run"], tmp_path)
    assert dry.returncode == 0 and "done     dense" in dry.stdout
    done.unlink()
    os.mkfifo(done)  # the cell's own file a FIFO: corrupt, moved aside, the cell runs again
    rerun = cli(["run", *TINY, "--out", str(out)], tmp_path)
    assert rerun.returncode == 1 and "1 ran, 0 already done" in rerun.stdout, rerun.stdout + rerun.stderr
    assert done.is_file() and (out / f"{done.name}.corrupt").is_fifo()


def test_status_survives_a_deeply_nested_submissions_record(tmp_path):
    out = tmp_path / "out"
    (out / ".slurm").mkdir(parents=True)
    (out / ".slurm" / "submissions.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    status = cli(["status", str(out)], tmp_path)
    assert status.returncode == 0, status.stderr
    assert "Traceback" not in status.stderr


def test_a_plugin_that_exits_on_import_is_one_line_and_one_that_sleeps_is_named(tmp_path, monkeypatch):
    exits = tmp_path / "exits.py"
    exits.write_text("raise SystemExit(0)\n")
    plugins.forget()
    line = one_line(["list", "--plugin", str(exits)])
    assert line == f"Error: --plugin {exits} (file {exits}) failed to import: SystemExit: 0"
    sleeps = tmp_path / "sleeps.py"
    sleeps.write_text("import time\ntime.sleep(1.5)\n")
    monkeypatch.setattr(plugins, "SLOW_IMPORT", 0.3)
    plugins.forget()
    try:
        result = CliRunner().invoke(main, ["list", "--plugin", str(sleeps)])
        assert result.exit_code == 0, result.output
        assert f"note: importing --plugin {sleeps} (file {sleeps}): it has not returned yet (after 0.3 s)" in \
            result.output
    finally:
        plugins.forget()


DOCS = Path(__file__).parents[1] / "docs" / "results" / "cifar10-t8-mid"
ONE = DOCS / "80dcf8ac1363b320.json"  # shrink-perturb, seed 0: a committed, valid result


def changed(path: str, value: object) -> dict:
    """The committed result with one field (a dotted path; steps.N for a step) set to value."""
    import json

    doc = json.loads(ONE.read_text())
    *parents, last = path.split(".")
    target = doc
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[last] = value
    return doc


@pytest.mark.parametrize(("path", "value", "why"), [
    ("data.n_train", "many", 'data.n_train should be a positive integer, got "many"'),
    ("data.image_size", 5, "data.image_size should be [height, width], positive integers, got 5"),
    ("data.notes", 5, "data.notes should be a list of strings, got 5"),
    ("data.fingerprint", {"a": 1}, 'data.fingerprint should be a string, got {"a": 1}'),
    ("environment.git_dirty", "yes", 'environment.git_dirty should be true, false or null, got "yes"'),
    ("environment.precision", {"a": 1}, 'environment.precision should be a string, got {"a": 1}'),
    ("steps.0.best_epoch", "x", 'step 1.best_epoch should be an integer >= 0, got "x"'),
    ("steps.0.train_size", 1.5, "step 1.train_size should be an integer >= 0, got 1.5"),
    ("steps.0.gmp_schedule", {"every": "x"}, 'step 1 gmp_schedule should be an object of numbers, got {"every": '),
    ("steps.0.config_hash", "0000000000000000", "step 1 holds config_hash, which belong to the cell"),
    ("steps.0.method", "dense", "step 1 holds method, which belong to the cell"),
    ("started_at", "1000-01-01T00:00:00", 'started_at should lie between 1970 and 2200, got "1000-01-01T00:00:00"'),
    ("seconds", 1e300, "seconds should be at most 1e+09 s, got 1e+300"),
    ("seconds_by_part.startup", 1.7e308, "seconds_by_part.startup should be at most 1e+09 s, got 1.7e+308"),
    ("steps.0.layer_density", {"a/../b.weight": 0.5}, "step 1 names a layer 'a/../b.weight'"),
    ("steps.0.layer_density", {"a\x00b": 0.5}, "step 1 names a layer 'a\\x00b'"),
    ("steps.0.layer_density", {"a\nb": 0.5}, "step 1 names a layer 'a\\nb'"),
    ("steps.0.layer_density", {f"l{i}.weight": 1.0 for i in range(60_000)},
     "step 1 holds 60,000 layers; a result holds at most 4,096 a step"),
])
def test_every_field_of_a_result_is_checked_and_a_bad_one_is_named(path, value, why):
    from almabench.results.validate import validate_result

    assert validate_result(changed("seconds", 1.0)) is None  # the committed file is valid: only the change is bad
    reason = validate_result(changed(path, value))
    assert reason is not None and reason.startswith(why), reason


def test_a_result_with_a_bad_field_is_one_warning_in_export_and_report_not_a_traceback(tmp_path):
    import json

    folder = tmp_path / "R"
    folder.mkdir()
    (folder / ONE.name).write_text(ONE.read_text())
    other = DOCS / "5c77495858b5fe3b.json"  # scratch, seed 1
    bad = json.loads(other.read_text())
    bad["steps"][0]["gmp_schedule"] = {"every": "x"}
    (folder / other.name).write_text(json.dumps(bad))
    for args in (["export", str(folder), "--to", "parquet", "--dest", str(tmp_path / "pq")],
                 ["report", str(folder), "--out", str(tmp_path / "r"), "--format", "png"]):
        result = cli(args, tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert f"skipped {folder / other.name}: step 1 gmp_schedule should be an object of numbers" in result.stderr


def test_a_method_named_like_mathtext_is_drawn_as_written(tmp_path):
    import json

    folder = tmp_path / "R"
    folder.mkdir()
    for path in (DOCS / "80dcf8ac1363b320.json", DOCS / "ef536895ee06b6b1.json"):  # shrink-perturb, dense: seed 0
        doc = json.loads(path.read_text())
        if doc["config"]["method"] == "shrink-perturb":
            from almabench.cell.config import RunConfig

            doc["config"]["method"] = "$\\foo$"
            doc["config_hash"] = RunConfig.from_dict(doc["config"]).hash()
            path = folder / f"{doc['config_hash']}.json"
        else:
            path = folder / path.name
        path.write_text(json.dumps(doc))
    result = cli(["report", str(folder), "--out", str(tmp_path / "r"), "--format", "png"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "$\\foo$" in (tmp_path / "r" / "tables.md").read_text()
