"""Robustness round 5 (issue 38): where flock fails with ENOLCK, EOPNOTSUPP or ENOSYS (Lustre without its flock
mount option, some NFS), cells are locked with an exclusive-create .held file and one warning line, not a raw
OSError; a .held file left by a dead run on this host is taken over, one of a live run or another host is not."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from almabench.cell.config import RunConfig
from almabench.cli import main
from almabench.grid import locks

CONFIG = RunConfig(method="dense", megabatches=2, epochs=1)


@pytest.fixture(params=[errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS])
def no_flock(request, monkeypatch):
    """fcntl.flock failing as a file system without flock makes it fail."""
    def refuse(fd: int, operation: int) -> None:
        raise OSError(request.param, os.strerror(request.param))

    monkeypatch.setattr(locks.fcntl, "flock", refuse)
    monkeypatch.setattr(locks, "_warned", set())
    return request.param


def held(out) -> list[str]:
    return sorted(p.name for p in (out / locks.LOCK_DIR).glob("*.held"))


def test_without_flock_a_held_file_locks_the_cell_and_goes_when_it_is_released(tmp_path, no_flock):
    with pytest.warns(UserWarning, match=f"refuses flock \\({errno.errorcode[no_flock]}\\)"):
        with locks.cell_lock(tmp_path, CONFIG, "123 here") as holder:
            assert holder is None
            assert held(tmp_path) == [f"{CONFIG.hash()}.held"]
            assert (tmp_path / locks.LOCK_DIR / f"{CONFIG.hash()}.held").read_text() == "123 here\n"
            with locks.cell_lock(tmp_path, CONFIG, "456 there") as second:
                assert second == "123 here"  # busy: named, not waited for
    assert held(tmp_path) == []
    with locks.cell_lock(tmp_path, CONFIG) as again:  # and taken again afterwards
        assert again is None


def test_a_held_file_of_a_dead_run_here_is_taken_over_and_one_of_a_live_run_or_another_host_is_not(
        tmp_path, no_flock, recwarn):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path = tmp_path / locks.LOCK_DIR / f"{CONFIG.hash()}.held"
    path.parent.mkdir()
    host = socket.gethostname()
    for owner, taken in ((f"{dead.stdout.strip()} {host}", True), (f"{os.getpid()} {host}", False),
                         ("1 node7", False), ("slurm 45_6", False)):
        path.write_text(owner + "\n")
        with locks.cell_lock(tmp_path, CONFIG, "789 me") as holder:
            assert holder == (None if taken else owner), owner
        assert path.exists() is not taken, owner
    path.write_text("")  # a run killed between creating the file and writing its owner
    with locks.cell_lock(tmp_path, CONFIG) as holder:
        assert holder == ""  # too recent to call stale
    old = time.time() - locks.STALE_EMPTY_S - 5
    os.utime(path, (old, old))
    with locks.cell_lock(tmp_path, CONFIG) as holder:
        assert holder is None


def test_another_oserror_of_flock_is_still_one_storage_error(tmp_path, monkeypatch):
    def refuse(fd: int, operation: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(locks.fcntl, "flock", refuse)
    with pytest.raises(locks.StorageError, match="input/output error"):
        with locks.cell_lock(tmp_path, CONFIG):
            pass


def test_run_on_a_file_system_without_flock_runs_with_one_warning_line(tmp_path, no_flock):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", "--methods", "dense", "--megabatches", "2", "--epochs", "1",
                                       "--set", "stream_images=300", "--threads", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if "flock" in line]
    assert warning == [f"warning: {out}: the file system refuses flock ({errno.errorcode[no_flock]}); cells are "
                       f"locked with .held files under .locks/ instead"]
    assert len(list(out.glob("*.json"))) == 1 and held(out) == []
