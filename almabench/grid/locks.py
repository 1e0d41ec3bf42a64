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

Where flock fails with ENOLCK, EOPNOTSUPP or ENOSYS (Lustre mounted without its flock option, some NFS), the
cell is locked instead by creating <config_hash>.held with O_EXCL, holding "<pid> <host>", removed on exit
(one warning line per results folder). Such a file outlives a killed process, so it is taken over when it is
stale: its owner is a pid on this host that is no longer alive, or it stayed empty for STALE_EMPTY_S (a run
killed between creating and writing it). A lock held by a process on another host cannot be checked from here;
the message names the host, and a run known to be dead there is cleared by removing the .held file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from almabench.cell.config import RunConfig
from almabench.results.store import StorageError
from almabench.safe_paths import create

LOCK_DIR = ".locks"


def lock_path(out: str | Path, config: RunConfig) -> Path:
    return Path(out) / LOCK_DIR / f"{config.hash()}.lock"


def this_run() -> str:
    """The owner string of this process: "<pid> <host>"."""
    return f"{os.getpid()} {socket.gethostname()}"


def describe_owner(owner: str) -> str:
    """ "pid 123" (on this host), "pid 123 on node7" (on another), "Slurm job 45_6" (almabench.backends.slurm's tasks),
    "pid unknown" (not yet written)."""
    pid, _, host = owner.strip().partition(" ")
    if pid == "slurm" and host:
        return f"Slurm job {host}"
    if not pid.isdigit():
        return "pid unknown"
    return f"pid {pid}" if host in ("", socket.gethostname()) else f"pid {pid} on {host}"


NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # a file system without working flock
STALE_EMPTY_S = 60.0  # an empty .held file older than this was left by a run killed before it wrote its owner
_warned: set[str] = set()  # results folders already told that they are locked with .held files


@contextmanager
def cell_lock(out: str | Path, config: RunConfig, owner: str = "") -> Iterator[str | None]:
    """Hold the cell's lock for the body: yields None while this process holds it, or the owner string of
    the run that holds it ("" if unknown) without waiting. Released on exit, or by the kernel on death.
    A .locks that leads out of `out`, or a link at the lock file, is one line (safe_paths): never truncated.
    Where the file system has no flock, the lock is a .held file instead (module docstring)."""
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
        except OSError as exc:
            if exc.errno not in NO_FLOCK:
                raise StorageError.from_os_error(path, exc) from None
            _warn_no_flock(out, exc)
        else:
            _write_owner(fd, owner or this_run())
            try:
                yield None
            finally:
                _write_owner(fd, "")
            return
    finally:
        os.close(fd)  # releases the flock
    with created_lock(out, path.with_suffix(".held"), owner or this_run()) as holder:
        yield holder


def _warn_no_flock(out: str | Path, exc: OSError) -> None:
    key = os.path.abspath(out)
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"{out}: the file system refuses flock ({errno.errorcode.get(exc.errno or 0, exc.errno)}); "
                      f"cells are locked with .held files under {LOCK_DIR}/ instead", stacklevel=4)


@contextmanager
def created_lock(out: str | Path, path: Path, owner: str) -> Iterator[str | None]:
    """The lock of a file system without flock: path created with O_EXCL holds the owner; None while held here,
    else the holder's owner string. A stale file (is_stale) is removed and the lock taken once more."""
    for attempt in range(2):
        try:
            fd = create(out, path, os.O_WRONLY | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read_owner(path)
            if attempt == 0 and is_stale(path, holder):
                path.unlink(missing_ok=True)
                continue
            yield holder
            return
        except OSError as exc:
            raise StorageError.from_os_error(path, exc) from None
        try:
            _write_owner(fd, owner)
        finally:
            os.close(fd)
        try:
            yield None
        finally:
            path.unlink(missing_ok=True)
        return
    yield _read_owner(path)  # taken by another run between our removal of the stale file and our creation


def _read_owner(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[:200].strip()
    except OSError:
        return ""


def is_stale(path: Path, owner: str) -> bool:
    """Whether a .held file's run is known to be gone: a pid on this host that is not alive, or no owner written
    for STALE_EMPTY_S. Another host's pid and a Slurm job's cannot be checked from here: never stale."""
    pid, _, host = owner.partition(" ")
    if not owner:
        try:
            return time.time() - path.stat().st_mtime > STALE_EMPTY_S
        except OSError:
            return False
    if not pid.isdigit() or host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def _write_owner(fd: int, owner: str) -> None:
    """Best effort: the owner is only for messages, so a full disk must not fail the cell here."""
    try:
        os.ftruncate(fd, 0)
        if owner:
            os.pwrite(fd, f"{owner}\n".encode(), 0)
    except OSError:
        pass
