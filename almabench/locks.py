"""Per-cell locks, so that two `almabench run` into one --out never run (or overwrite) the same cell.

Design: one lock file per cell, <out>/.locks/<config_hash>.lock, locked with fcntl.flock(LOCK_EX | LOCK_NB)
by the process that runs the cell (the in-process run, or the loky / Dask worker), for as long as it runs it:

- per cell, not per folder: two runs into one folder share the grid between them (each skips what the other
  is running), and a run of grid A is not held up by a run of an unrelated grid B into the same folder;
- taken by the process that runs the cell, not by the parent for the whole grid: the parent would have to
  hold the locks of cells that are only queued, and a second run could then do nothing of them in parallel;
  and the lock then lives and dies with the process whose work it protects;
- flock, not a "lock exists" file: the kernel releases it when its process dies (kill -9, out of memory,
  a killed loky worker), so there are no stale locks to clean up. The lock files themselves stay (a few
  bytes each, reused by later runs): deleting one while another process waits on it would let two hold it;
- non-blocking: a run never waits on another, it skips the cell and says so;
- flock locks belong to an open file description, so two threads of one process (a Dask worker with
  several threads) exclude each other as well as two processes do. Across machines this needs a file system
  with working flock (local disks; Linux NFS clients emulate flock with POSIX byte-range locks).

The lock file holds "<pid> <host>" of the `almabench run` that holds it, only so that the other run can say
whom it is waiting for; nothing relies on it being there.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from almabench.config import RunConfig
from almabench.safe_paths import create
from almabench.store import StorageError

LOCK_DIR = ".locks"


def lock_path(out: str | Path, config: RunConfig) -> Path:
    return Path(out) / LOCK_DIR / f"{config.hash()}.lock"


def this_run() -> str:
    """The owner string of this process: "<pid> <host>"."""
    return f"{os.getpid()} {socket.gethostname()}"


def describe_owner(owner: str) -> str:
    """ "pid 123" (on this host), "pid 123 on node7" (on another), "Slurm job 45_6" (almabench.slurm's tasks),
    "pid unknown" (not yet written)."""
    pid, _, host = owner.strip().partition(" ")
    if pid == "slurm" and host:
        return f"Slurm job {host}"
    if not pid.isdigit():
        return "pid unknown"
    return f"pid {pid}" if host in ("", socket.gethostname()) else f"pid {pid} on {host}"


@contextmanager
def cell_lock(out: str | Path, config: RunConfig, owner: str = "") -> Iterator[str | None]:
    """Hold the cell's lock for the body: yields None while this process holds it, or the owner string of
    the run that holds it ("" if unknown) without waiting. Released on exit, or by the kernel on death.
    A .locks that leads out of `out`, or a link at the lock file, is one line (safe_paths): never truncated."""
    path = lock_path(out, config)
    try:
        fd = create(out, path, os.O_RDWR)
    except OSError as exc:
        raise StorageError.from_os_error(path, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield os.pread(fd, 200, 0).decode(errors="replace").strip()
            return
        _write_owner(fd, owner or this_run())
        try:
            yield None
        finally:
            _write_owner(fd, "")
    finally:
        os.close(fd)  # releases the flock


def _write_owner(fd: int, owner: str) -> None:
    """Best effort: the owner is only for messages, so a full disk must not fail the cell here."""
    try:
        os.ftruncate(fd, 0)
        if owner:
            os.pwrite(fd, f"{owner}\n".encode(), 0)
    except OSError:
        pass
