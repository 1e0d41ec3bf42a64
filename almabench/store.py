"""Result files: one JSON per cell, named by the config hash, written atomically (temp file + rename)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from almabench.config import RunConfig

SCHEMA_VERSION = 1

# Fields that measure time and therefore differ between two otherwise identical runs.
TIMING_STEP_KEYS = ("seconds", "prune_seconds", "train_seconds", "images_per_second")
TIMING_TOP_KEYS = ("started_at", "finished_at", "seconds")


def result_path(out: str | Path, config: RunConfig) -> Path:
    return Path(out) / f"{config.hash()}.json"


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers (and a resume after a kill) see
    the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """A result as JSON, atomically; NaN or infinity is refused (ValueError), JSON cannot hold them."""
    text = json.dumps(payload, indent=1, allow_nan=False) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


STATES = ("done", "failed", "corrupt", "missing")


def result_state(path: Path) -> tuple[str, str]:
    """(state, detail) of one cell's file: done (detail: the precision it ran in), failed (detail: the error),
    corrupt (detail: why) or missing.

    A file is corrupt when it is not JSON, not an object, has an unknown status, or names another config than
    its file name says: it is neither a result nor a failure record, and must not be mistaken for either.
    """
    if not path.exists():
        return "missing", ""
    try:
        doc = json.loads(path.read_text())
    except UnicodeDecodeError:
        return "corrupt", "not UTF-8 text"
    except ValueError as exc:
        return "corrupt", f"not valid JSON ({exc})"
    except OSError as exc:
        return "corrupt", f"unreadable ({exc.strerror or exc})"
    if not isinstance(doc, dict):
        return "corrupt", "not a JSON object"
    if doc.get("config_hash") != path.stem:
        return "corrupt", f"its config_hash {doc.get('config_hash')!r} does not match its file name"
    if doc.get("status") == "ok":
        if not isinstance(doc.get("steps"), list) or not isinstance(doc.get("config"), dict):
            return "corrupt", "a result without steps or config"
        environment = doc.get("environment")
        return "done", str(environment.get("precision", "")) if isinstance(environment, dict) else ""
    if doc.get("status") == "failed":
        return "failed", str(doc.get("error", "no error recorded"))
    return "corrupt", f"unknown status {doc.get('status')!r}"


def move_aside(path: Path) -> Path:
    """Rename a corrupt file to <name>.corrupt (or .corrupt.1, ...) so that nothing is deleted silently."""
    target = path.with_name(path.name + ".corrupt")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt.{n}")
    os.replace(path, target)
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
    """torch.save to a temp file in the same folder, fsync, rename: a kill leaves the old checkpoint or the new."""
    import torch

    write_atomic(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, **payload}, f))


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any] | None:
    """The checkpoint at path (weights_only: no pickle), None if there is none; ValueError if unusable."""
    import torch

    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"unreadable ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("not an almabench checkpoint of this version")
    return state


def checkpoint_progress(path: Path) -> tuple[int, int] | None:
    """(megabatches done, T) of a checkpoint, read lazily (mmap: the weights stay on disk); None if unusable."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(state["step"]), int(json.loads(state["key"])["config"]["megabatches"])
    except Exception:  # noqa: BLE001 - a status line, never a failure
        return None
