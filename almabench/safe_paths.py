"""The one rule for every file almabench writes, creates, deletes or reads: only inside the folder it was asked
for, and a link does not stretch that folder.

Folders are shared and results come from anyone, so a link may sit where almabench writes (`report -> /else`,
`.locks/<hash>.lock -> ~/notes.txt`). Every such path is resolved (links followed) and checked to lie inside
its root before it is touched; a path that leads out is one line (OutsideFolder, an AlmabenchError the CLI
prints as one line, exit 1) and nothing is written. Files are opened with O_NOFOLLOW where the platform has it,
so a link swapped in at the name after the check is refused by the kernel rather than followed.

The root is what the user named (--out, --dest, RESULTS_DIR): the named folder itself may be a link, it is what
was asked for; what lies below it may not lead out.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from almabench.errors import AlmabenchError
from almabench.names import quoted

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # 0 where the platform has none: the resolve check alone then
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class OutsideFolder(AlmabenchError):
    """A path almabench would write, create, delete or read leads outside the folder it was asked for (through
    a link), or is a link where a file is opened. A plain message, so it pickles back from a worker."""


def outside(root: str | Path, path: str | Path) -> Path | None:
    """Where path really leads, if that is outside root (both resolved, links followed); None if inside."""
    base, target = Path(root).resolve(), Path(path).resolve()
    return None if target == base or target.is_relative_to(base) else target


def inside(root: str | Path, path: str | Path) -> Path:
    """path, if it lies inside root once links are followed; otherwise one line saying where it would have gone."""
    target = outside(root, path)
    if target is not None:
        raise OutsideFolder(f"{quoted(path)} leads outside {quoted(root)} (to {quoted(target)}): nothing is "
                            f"written there")
    return Path(path)


def folder(root: str | Path, path: str | Path) -> Path:
    """The folder path (root itself or a folder under it), made where missing, checked before and after: a link
    on the way that leads outside root is refused, nothing made through it."""
    inside(root, path)
    Path(path).mkdir(parents=True, exist_ok=True)
    return inside(root, path)  # a link swapped in while the folders were made


def open_file(path: str | Path, flags: int, mode: int = 0o666) -> int:
    """os.open without following a final link (O_NOFOLLOW): a link at the name is one line, never opened."""
    try:
        return os.open(path, flags | NOFOLLOW | CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (NOFOLLOW and exc.errno == errno.EMLINK):  # EMLINK: FreeBSD's answer
            raise OutsideFolder(f"{quoted(path)} is a link: almabench opens no file through a link; remove it "
                                f"or write elsewhere") from None
        raise


def create(root: str | Path, path: str | Path, flags: int = os.O_WRONLY, mode: int = 0o666) -> int:
    """A file under root opened for writing (O_CREAT, no final link followed), its folder made and checked."""
    folder(root, Path(path).parent)
    return open_file(path, flags | os.O_CREAT, mode)


def read_bytes(path: str | Path, root: str | Path | None = None, limit: int | None = None) -> bytes:
    """The bytes of path, read only where its real path lies inside root (None: anywhere the caller already
    checked) and without following a link swapped in at the real path after the check. limit: a file larger
    than that many bytes raises FileTooLarge (with its size) before it is read."""
    real = Path(path).resolve()
    target = None if root is None else outside(root, real)
    if target is not None:
        raise OutsideFolder(f"{quoted(path)} is a link to {quoted(target)}, outside {quoted(root or '')}: not read")
    fd = open_file(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO's open must not wait for a writer
    with os.fdopen(fd, "rb") as f:
        status = os.fstat(f.fileno())
        if not stat.S_ISREG(status.st_mode):  # a FIFO would block the read, /dev/zero never end it
            raise NotRegularFile(path, _kind(status.st_mode))
        if limit is not None and status.st_size > limit:
            raise FileTooLarge(status.st_size)
        data = f.read() if limit is None else f.read(limit + 1)
        if limit is not None and len(data) > limit:  # it grew after fstat
            raise FileTooLarge(len(data))
        return data


class NotRegularFile(OSError):
    """read_bytes' refusal of a FIFO, device or socket: reading one would block, or never end."""

    def __init__(self, path: str | Path, kind: str) -> None:
        super().__init__(f"{quoted(path)} is not a regular file ({kind}): not read")
        self.kind = kind


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "not a plain file")


class FileTooLarge(ValueError):
    """read_bytes' refusal of a file larger than its limit; .size is its size in bytes."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def remove(root: str | Path, path: str | Path) -> None:
    """Delete path (a file, or a link itself: never what it points to) where its folder lies inside root."""
    inside(root, Path(path).parent)
    Path(path).unlink(missing_ok=True)
