"""Issue 32 §3: a closed stderr, a terminal of 0 columns, a results path that is not a folder in the Python API,
and the CIFAR hint on a machine without this project's offline copy."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from almabench.cell.config import RunConfig, RunOptions
from almabench.errors import AlmabenchError
from almabench.grid.progress import FALLBACK_COLUMNS, GridProgress, bar_columns


def test_a_run_with_stderr_closed_runs_its_cells_without_a_bar_and_says_so(tmp_path):
    out = tmp_path / "out"
    command = (f"{sys.executable} -m almabench.cli run --methods dense --megabatches 2 --epochs 1 --threads 1 "
               f"--out {out} 2>&-")
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert lines[1] == "note: no progress bar: stderr is closed"
    assert lines[-1] == f"1 ran, 0 already done, 0 failed; results in {out}/"
    assert len(list(out.glob("*.json"))) == 1


def test_with_both_streams_closed_a_line_goes_nowhere_rather_than_failing(monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)
    monkeypatch.setattr(sys, "stdout", None)
    progress = GridProgress(n_train=lambda c, o: 100)
    progress.begin([RunConfig(megabatches=2, epochs=1)], RunOptions())
    progress.write("a line", err=True)
    assert progress.bar is None and not progress.shown


def terminal(columns: int) -> tuple[int, io.TextIOWrapper]:
    """A pseudo-terminal; columns = 0 is the size a new one reports until someone sets it (as `script` leaves it)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24 if columns else 0, columns, 0, 0))
    return master, os.fdopen(slave, "w")


def test_a_terminal_of_0_columns_gets_a_bar_80_wide_and_a_sized_one_its_own_width():
    for columns, expected in ((0, FALLBACK_COLUMNS), (100, None)):
        master, file = terminal(columns)
        try:
            assert bar_columns(file) == expected
            progress = GridProgress(file=file, lines=io.StringIO(), n_train=lambda c, o: 100)
            progress.begin([RunConfig(megabatches=2, epochs=1).resolve(False, 1, scope="global")], RunOptions())
            assert progress.shown and progress.bar.ncols == expected
            progress.close()
            drawn = os.read(master, 4096).decode().replace("\n", "\r").split("\r")
            if columns == 0:
                assert max(map(len, drawn)) == FALLBACK_COLUMNS
        finally:
            file.close()
            os.close(master)
    assert bar_columns(io.StringIO()) is None


@pytest.mark.parametrize("loader", ["load_results", "load_tables"])
def test_the_python_api_on_a_path_that_is_not_a_folder_raises_what_the_cli_says(tmp_path, loader):
    import almabench.analysis

    load = getattr(almabench.analysis, loader)
    a_file = tmp_path / "notes.json"
    a_file.write_text("{}")
    for path, message in ((tmp_path / "nowhere", f"results folder {tmp_path / 'nowhere'} does not exist"),
                          (a_file, f"results folder {a_file} is a file, not a folder")):
        with pytest.raises(AlmabenchError) as err:
            load(path)
        assert str(err.value) == message


def test_the_cifar_hint_names_the_offline_copy_only_where_it_exists(tmp_path, monkeypatch):
    import almabench.data.cifar as cifar

    monkeypatch.setattr(cifar, "OFFLINE_BUILDER", tmp_path / "nowhere" / "build-cifar10.py")
    with pytest.raises(AlmabenchError) as err:
        cifar.read_cifar(cifar._cifar_layouts()["cifar10"], tmp_path / "data")
    assert str(err.value) == (
        f"cifar10 not found: {tmp_path}/data/cifar-10-batches-py lacks data_batch_1, data_batch_2, data_batch_3, "
        f"data_batch_4, data_batch_5, test_batch; rerun with --download where a network exists, unpack the official "
        f"cifar-10-python.tar.gz into {tmp_path}/data, or pass --data-root where it is")
    builder = tmp_path / "shared" / "build-cifar10.py"
    builder.parent.mkdir()
    builder.write_text("")
    monkeypatch.setattr(cifar, "OFFLINE_BUILDER", builder)
    monkeypatch.chdir(tmp_path / "shared")
    with pytest.raises(AlmabenchError, match=f", or make it offline with python build-cifar10.py {tmp_path}/data$"):
        cifar.read_cifar(cifar._cifar_layouts()["cifar10"], tmp_path / "data")
