"""Result files: one JSON per cell, named by the config hash, written atomically (temp file + rename)."""

from __future__ import annotations

import datetime as dt
import errno
import json
import math
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from almabench.config import NAMED_WITHOUT, RunConfig, range_problem
from almabench.errors import AlmabenchError
from almabench.names import shown
from almabench.result_schema import DATA, ENVIRONMENT, clock_problem, fields_problem, step_problem
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

SCHEMA_VERSION = 1

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
# The deepest a result nests: steps[i].mask_updates[j].key is 5 containers; one spare for a method's own records.
RESULT_DEPTH = 6
INT64 = 2**63 - 1  # the parquet export's integers are Int64
HASH_PATTERN = re.compile(r"[0-9a-f]{16}")

# What a finished result must hold, with its type: every key run.run_cell writes (all of them since schema 1),
# so that status, --dry-run's rates and the report can read any file counted as done without a traceback.
RESULT_NUMBERS = ("final_test_accuracy", "cer", "final_density", "final_gap", "mean_gap", "test_size",
                  "params_total", "prunable_total", "flops_dense", "seconds")
RESULT_OBJECTS = ("config", "data", "environment")
RESULT_STRINGS = ("config_hash", "started_at", "finished_at")
STEP_NUMBERS = ("step", "test_accuracy", "test_errors", "train_accuracy", "val_accuracy", "gap", "density",
                "target_density", "params_remaining", "flops_remaining", "seconds", "images_per_second")
CONFIG_STRINGS = ("method", "dataset", "arch")
CONFIG_INTEGERS = ("megabatches", "seed")
# Counts (a parquet Int64 column each) and the range every number a result holds must lie in (None: unbounded).
INTEGERS = frozenset({"cer", "test_size", "params_total", "prunable_total", "flops_dense", "step", "test_errors",
                      "params_remaining", "flops_remaining"})
_PERCENT, _FRACTION, _POINTS, _COUNT = (0.0, 100.0), (0.0, 1.0), (-100.0, 100.0), (0.0, None)
BOUNDS: dict[str, tuple[float, float | None]] = {
    "final_test_accuracy": _PERCENT, "test_accuracy": _PERCENT, "train_accuracy": _PERCENT,
    "val_accuracy": _PERCENT, "final_density": _FRACTION, "density": _FRACTION, "target_density": _FRACTION,
    "final_gap": _POINTS, "mean_gap": _POINTS, "gap": _POINTS, "test_size": (1.0, None), "step": (1.0, None),
    **{k: _COUNT for k in ("cer", "params_total", "prunable_total", "flops_dense", "seconds", "test_errors",
                           "params_remaining", "flops_remaining", "images_per_second")},
}


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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_shown = shown  # almabench.names.shown, shared with result_schema


def _wrong_type(where: str, value: Any, kind: str) -> str:
    return f"{where} should be {kind}, got {_shown(value)}"


def _value_problem(where: str, key: str, value: Any) -> str | None:
    """A number of a known key that is not an integer where it counts, or lies outside its range."""
    if key in INTEGERS and not _is_integer(value):
        return _wrong_type(where, value, "an integer")
    low, high = BOUNDS.get(key, (None, None))
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
        return f"{where} should be {bounds}, got {_shown(value)}"
    return None


def _shape_problem(doc: Any) -> str | None:
    """Nesting deeper than a result's schema, a float that is not finite or an integer beyond 64 bits, anywhere."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > RESULT_DEPTH:
                return f"nested deeper than a result ({RESULT_DEPTH} levels)"
            stack += [(v, depth + 1) for v in (value.values() if isinstance(value, dict) else value)]
        elif isinstance(value, float) and not math.isfinite(value):
            return f"holds {value!r}, not a finite number"
        elif _is_integer(value) and not -INT64 <= value <= INT64:
            return f"holds the integer {_shown(value)}, beyond 64 bits"
    return None


def _config_problem(config: dict[str, Any], config_hash: str) -> str | None:
    missing = [k for k in (*CONFIG_STRINGS, *CONFIG_INTEGERS) if k not in config]
    if missing:
        return f"partial result, config lacks {', '.join(missing)}"
    for key in CONFIG_STRINGS:
        if not isinstance(config[key], str):
            return _wrong_type(f"config.{key}", config[key], "a string")
    for key in CONFIG_INTEGERS:
        if not _is_integer(config[key]):
            return _wrong_type(f"config.{key}", config[key], "an integer")
    try:  # a key the file lacks was added after it ran, at its default then (NAMED_WITHOUT's, for scope)
        run_config = RunConfig.from_dict({**NAMED_WITHOUT, **config})
    except AlmabenchError as exc:
        return f"config: {exc}"
    canonical = run_config.to_dict()
    for key, value in config.items():  # as RunConfig holds it: 4 is not 4.0, "5" not 5, "./x.npz" not "x.npz"
        if json.dumps(value) != json.dumps(canonical[key]):
            return f"config.{key} should be {_shown(canonical[key])} as a RunConfig holds it, got {_shown(value)}"
    reason = range_problem(run_config)
    if reason is not None:
        return f"config: {reason}"
    if run_config.hash() != config_hash:
        return f"config_hash {config_hash} is not the hash of its config ({run_config.hash()})"
    return None


def _steps_problem(steps: Any) -> str | None:
    if not isinstance(steps, list) or not steps or not all(isinstance(s, dict) for s in steps):
        return _wrong_type("steps", steps, "a non-empty list of objects (one per megabatch)")
    for i, step in enumerate(steps, start=1):
        lacking = [k for k in STEP_NUMBERS if k not in step]
        if lacking:
            return f"partial result, step {i} lacks {', '.join(lacking)}"
        for key in STEP_NUMBERS:
            if not _is_number(step[key]):
                return _wrong_type(f"step {i} {key}", step[key], "a number")
            reason = _value_problem(f"step {i} {key}", key, step[key])
            if reason is not None:
                return reason
        if step["step"] != i:
            return f"step {i} says it is step {_shown(step['step'])}"
        layers = step.get("layer_density", {})
        if not isinstance(layers, dict) or not all(_is_number(d) and 0 <= d <= 1 for d in layers.values()):
            return _wrong_type(f"step {i} layer_density", layers, "an object of densities in [0, 1]")
    return None


def _times_problem(doc: dict[str, Any]) -> str | None:
    """The timestamps and the time by part the exports rebuild a run's clock from."""
    for key in ("started_at", "finished_at"):
        try:
            dt.datetime.fromisoformat(doc[key])
        except ValueError:
            return _wrong_type(key, doc[key], "an ISO 8601 time")
    parts = doc.get("seconds_by_part", {})
    if not isinstance(parts, dict) or not all(_is_number(v) and v >= 0 for v in parts.values()):
        return _wrong_type("seconds_by_part", parts, "an object of seconds")
    return None


def validate_result(doc: Any) -> str | None:
    """Why doc is not a usable finished result (status "ok"), or None if it is.

    The one check behind status, run (which moves such a file aside and reruns its cell), the report and
    export (which skip it with a warning): a file with "final_test_accuracy": "high" or steps that are not a
    list is no result, however well-formed its JSON. Numbers are int or float, never bool (JSON's true is not
    1), finite and in their range; the config is one a RunConfig holds, and config_hash is its hash (export
    builds paths and names from both); nothing nests deeper than a result does.
    """
    if not isinstance(doc, dict):
        return "not a JSON object"
    missing = [k for k in (*RESULT_STRINGS, *RESULT_OBJECTS, "steps", *RESULT_NUMBERS) if k not in doc]
    if missing:
        return f"partial result, missing {', '.join(missing)}"
    for key in RESULT_STRINGS:
        if not isinstance(doc[key], str):
            return _wrong_type(key, doc[key], "a string")
    for key in RESULT_OBJECTS:
        if not isinstance(doc[key], dict):
            return _wrong_type(key, doc[key], "an object")
    for key in RESULT_NUMBERS:
        if not _is_number(doc[key]):
            return _wrong_type(key, doc[key], "a number")
    reason = _shape_problem(doc)
    if reason is not None:
        return reason
    if not HASH_PATTERN.fullmatch(doc["config_hash"]):
        return _wrong_type("config_hash", doc["config_hash"], "16 hex digits")
    for key in RESULT_NUMBERS:
        reason = _value_problem(key, key, doc[key])
        if reason is not None:
            return reason
    reason = (_config_problem(doc["config"], doc["config_hash"]) or _steps_problem(doc["steps"])
              or _times_problem(doc) or clock_problem(doc) or fields_problem("data", doc["data"], DATA)
              or fields_problem("environment", doc["environment"], ENVIRONMENT)
              or next((r for i, s in enumerate(doc["steps"], start=1) if (r := step_problem(i, s))), None))
    if reason is not None:
        return reason
    steps, megabatches = doc["steps"], doc["config"]["megabatches"]
    if len(steps) != megabatches:
        return f"partial result, {len(steps)} of {megabatches} steps"
    if sum(s["test_errors"] for s in steps) != doc["cer"]:
        return "inconsistent result, cer is not the sum of the steps' test_errors"
    if any(s["test_errors"] > doc["test_size"] for s in steps):
        return "inconsistent result, a step has more test errors than test_size"
    return None


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
    changed: str = ""  # a done cell made by other plugin code than the code installed now: how (almabench.stale)


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


# ----------------------------------------------------------------------------------------------------------
# Checkpoints inside a cell: <out>/.checkpoints/<config_hash>.pt, written after every megabatch, deleted once
# the cell's result file is written. Only tensors, strings and numbers go in (JSON for the step records), so
# they load with torch.load(..., weights_only=True): nothing is unpickled.

CHECKPOINT_DIR = ".checkpoints"
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
