"""Result files: one JSON per cell, named by the config hash, written atomically (temp file + rename)."""

from __future__ import annotations

import errno
import json
import math
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from almabench.cell.config import RunConfig
from almabench.errors import AlmabenchError
from almabench.results.validate import RESULT_DEPTH, validate_result
from almabench.safe_paths import (
    FileTooLarge,
    NotRegularFile,
    OutsideFolder,
    folder,
    inside,
    open_file,
    outside,
    read_bytes,
)

# Fields that measure time and therefore differ between two otherwise identical runs.
TIMING_STEP_KEYS = ("seconds", "prune_seconds", "train_seconds", "validation_seconds", "test_seconds", "gap_seconds",
                    "images_per_second")


TIMING_TOP_KEYS = ("started_at", "finished_at", "seconds", "seconds_by_part")


def result_path(out: str | Path, config: RunConfig) -> Path:
    return Path(out) / f"{config.hash()}.json"


class StorageError(AlmabenchError):
    """A file under --out could not be written (a full disk, a quota, a read-only or vanished folder).

    Not a failure of the cell: nothing about its numbers is wrong, and a failure record could not be written
    either, so the grid stops (execute.run_grid turns this into one line) instead of marking cells failed.
    The arguments are plain values so that the exception pickles back from a loky or Dask worker.
    """

    def __init__(self, path: str, errno_: int | None, reason: str) -> None:
        super().__init__(path, errno_, reason)
        self.path, self.errno, self.reason = path, errno_, reason

    @classmethod
    def from_os_error(cls, path: Path, exc: OSError) -> StorageError:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return cls(str(path), exc.errno, reason[:1].lower() + reason[1:])

    def __str__(self) -> str:
        return f"{self.reason} writing {self.path}"

    @property
    def out_of_space(self) -> bool:
        return self.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind exc, if any: torch.save reports a failed write as a RuntimeError whose __context__
    is the OSError (ENOSPC) the file raised, and that must read as a full disk, not as a bug."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _create_temp(folder: Path, stem: str) -> tuple[int, Path]:
    """A new hidden temp file next to the target, opened with mode 0o666 so that the kernel applies the
    umask as it does to any file (tempfile.mkstemp forces 0600: results unreadable to a group that shares
    the folder). O_EXCL and a random name keep concurrent writers apart; O_EXCL (and O_NOFOLLOW) never open
    through a link."""
    for _ in range(100):
        tmp = folder / f".{stem}.{secrets.token_hex(4)}.tmp"
        try:
            return open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temp file name for {stem} in {folder}")


def write_atomic(path: Path, write: Callable[[IO[bytes]], object], root: Path | None = None) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers (and a resume after a kill) see
    the old file or the new one, never half of one. A link at the name is replaced, never written through.

    root is the folder the caller was asked to write into (default: path's own folder): a folder on the way that
    leads outside it (a link) is one line (safe_paths.OutsideFolder), and nothing is written.

    A write the file system refuses (ENOSPC, EDQUOT, EROFS, ...) removes the temp file and raises
    StorageError: the caller must stop rather than record the cell as failed.
    """
    try:
        fd, tmp = _create_temp(folder(path.parent if root is None else root, path.parent), path.stem)
    except OSError as exc:
        raise StorageError.from_os_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        cause = os_error_in(exc) if isinstance(exc, Exception) else None
        if cause is not None:
            raise StorageError.from_os_error(path, cause) from None
        raise


def temp_files(out: str | Path, config: RunConfig) -> list[Path]:
    """Temp files that write_atomic left for this cell's result or checkpoint: only a process killed
    mid-write leaves one. Whoever holds the cell's lock may delete them (nobody else writes that cell)."""
    stem = config.hash()  # a checkpoint folder that leads out of out/ is one line: nothing there is ours to delete
    return [p for where in (Path(out), inside(out, Path(out) / CHECKPOINT_DIR)) for p in where.glob(f".{stem}.*.tmp")]


def json_safe(value: Any) -> Any:
    """value with every float JSON cannot hold (inf, -inf, nan) written as its name ("inf", ...): a failure
    record must be writable whatever its config holds. Results are not passed through it: a NaN there fails the
    cell (write_json_atomic refuses it), as a number nobody can read back must not count as done."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json_atomic(path: Path, payload: dict[str, Any], root: Path | None = None) -> None:
    """A result as JSON, atomically; NaN or infinity is refused (ValueError), JSON cannot hold them. root: as
    write_atomic's (the results folder, for a file under .slurm/)."""
    text = json.dumps(payload, indent=1, allow_nan=False) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()), root)


STATES = ("done", "failed", "corrupt", "missing")


# A result file is input that may come from anyone (results folders are shared, the study's are committed), and
# export builds paths from what it says: validate_result checks every value a reader or a writer uses.
MAX_RESULT_BYTES = 16 * 2**20  # the largest result here is 24 kB; T = 100 of ResNet-50's 53 layers is about 2 MB




class UnreadableFile(ValueError):
    """Why a file is no JSON that almabench reads (too large, not UTF-8, not JSON, nested too deeply)."""


def _no_constant(name: str) -> Any:
    raise UnreadableFile(f"holds {name}, which is not a number JSON can hold")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 reads as inf
        raise UnreadableFile(f"holds {text[:40]}, beyond the range of a float")
    return value


def read_json(path: Path, root: Path | None = None) -> Any:
    """A result (or failure record) file parsed safely: at most MAX_RESULT_BYTES, UTF-8, strict JSON (no NaN or
    Infinity, no number beyond a float), and a nesting too deep for the parser (a RecursionError) is an
    UnreadableFile like any other bad file, never a traceback. OSError (unreadable) is left to the caller, and so
    is OutsideFolder: a file whose real path lies outside root (None: not checked here) is not read."""
    try:
        data = read_bytes(path, root, MAX_RESULT_BYTES)
    except FileTooLarge as exc:
        size = f"{exc.size:,} bytes; at most {MAX_RESULT_BYTES:,}"
        raise UnreadableFile(f"larger than a result can be ({size})") from None
    except NotRegularFile as exc:
        raise UnreadableFile(f"not a regular file ({exc.kind})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile("not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise UnreadableFile(f"nested too deeply (a result nests {RESULT_DEPTH} levels at most)") from None
    except UnreadableFile:
        raise
    except ValueError as exc:
        raise UnreadableFile(f"not valid JSON ({exc})") from None




def result_state(path: Path) -> tuple[str, str]:
    """(state, detail) of one cell's file: done (detail: the precision it ran in), failed (detail: the error),
    corrupt (detail: why) or missing.

    A file is corrupt when it is not JSON, not an object, has an unknown status, names another config than
    its file name says, or is a result that validate_result refuses (a field of the wrong type, missing keys):
    it is neither a result nor a failure record, and must not be mistaken for either.
    """
    if not path.exists():
        return "missing", ""
    try:
        doc = read_json(path, path.parent)  # a link to a file outside its folder is not read
    except OutsideFolder:
        return "corrupt", f"a link to {Path(path).resolve()}, outside {path.parent}; not read"
    except UnreadableFile as exc:
        return "corrupt", str(exc)
    except OSError as exc:
        return "corrupt", f"unreadable ({exc.strerror or exc})"
    if not isinstance(doc, dict):
        return "corrupt", "not a JSON object"
    if doc.get("config_hash") != path.stem:
        return "corrupt", f"its config_hash {doc.get('config_hash')!r} does not match its file name"
    if doc.get("status") == "ok":
        reason = validate_result(doc)
        if reason is not None:
            return "corrupt", reason
        return "done", str(doc["environment"].get("precision", ""))
    if doc.get("status") == "failed":
        return "failed", str(doc.get("error", "no error recorded"))
    return "corrupt", f"unknown status {doc.get('status')!r}"


@dataclass(frozen=True)
class CellFile:
    """Where a cell's result file stands in a results folder (not train.CellState, the cell's training state)."""

    config: RunConfig
    path: Path
    state: str  # done, failed, corrupt, missing (STATES)
    detail: str = ""  # the error of a failed cell, what is wrong with a corrupt file
    changed: str = ""  # a done cell made by other plugin code than the code installed now: how (almabench.extend.stale)


def cell_files(configs: list[RunConfig], out: Path) -> list[CellFile]:
    """The state of every (distinct) cell's file in out/, in grid order."""
    cells = []
    for config in dict.fromkeys(configs):
        path = result_path(out, config)
        state, detail = result_state(path)
        cells.append(CellFile(config, path, state, detail))
    return cells


def move_aside(path: Path, why: str = "corrupt") -> Path:
    """Rename a corrupt file to <name>.corrupt (or .corrupt.1, ...; another `why`, another suffix) so that nothing
    is deleted silently."""
    target = path.with_name(f"{path.name}.{why}")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{why}.{n}")
    try:
        os.replace(path, target)
    except OSError as exc:
        raise StorageError.from_os_error(target, exc) from None
    return target


def without_timing(result: dict[str, Any]) -> dict[str, Any]:
    """The result minus wall-clock measurements: what two runs with the same seed must agree on exactly."""
    out = {k: v for k, v in result.items() if k not in TIMING_TOP_KEYS}
    out["steps"] = [{k: v for k, v in s.items() if k not in TIMING_STEP_KEYS} for s in result["steps"]]
    return out


CHECKPOINT_DIR = ".checkpoints"


SLURM_DIR = ".slurm"  # almabench.backends.slurm's submissions and job logs


CHECKPOINT_FORMAT = 1


def checkpoint_path(out: str | Path, config: RunConfig) -> Path:
    return Path(out) / CHECKPOINT_DIR / f"{config.hash()}.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temp file in the same folder, fsync, rename: a kill leaves the old checkpoint or the new.
    The results folder (path's grandparent) is the root: a .checkpoints that leads out of it is one line."""
    import torch

    write_atomic(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, **payload}, f), path.parent.parent)


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any] | None:
    """The checkpoint at path (weights_only: no pickle), None if there is none; ValueError if unusable."""
    import torch

    if not path.is_file():
        return None
    if outside(path.parent.parent, path) is not None:  # read only inside the results folder
        raise ValueError(f"a link to {path.resolve()}, outside {path.parent.parent}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"unreadable ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("not an almabench checkpoint of this version")
    return state


def peek_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at path read lazily (mmap: the weights stay on disk), None if there is none or it is
    unusable (its cell starts over, with the warning load_checkpoint's reader gives)."""
    import torch

    if not path.is_file() or outside(path.parent.parent, path) is not None:
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - unusable: the cell's own load says why
        return None
    return state if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT else None


def checkpoint_progress(path: Path) -> tuple[int, int] | None:
    """(megabatches done, T) of a checkpoint, read lazily (mmap: the weights stay on disk); None if unusable."""
    state = peek_checkpoint(path)
    try:
        return int(state["step"]), int(json.loads(state["key"])["config"]["megabatches"])  # type: ignore[index]
    except Exception:  # noqa: BLE001 - a status line, never a failure
        return None

