"""Robustness round 5 (issue 38), the cases of the command line and the scaffold: each one line and exit 1, nothing
written and nothing hanging."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from almabench import plugins
from almabench.cli import main
from almabench.contract import check_method
from almabench.errors import AlmabenchError


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
    import subprocess
    import sys
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
