"""Where an export or a live log writes: the destination checked before anything is written, and every path
under it built from sanitised parts and checked to stay there.

Run names are built from what result files say, and a result file may come from anyone (validate.validate_result
checks it first); a name part that could climb out (`..`), nest (`/`) or reach a link that leads elsewhere is
refused here, so no export writes or removes anything outside its destination.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from almabench.errors import AlmabenchError
from almabench.names import cut_bytes, quoted
from almabench.safe_paths import inside

MAX_PART = 100  # bytes (UTF-8) of one name part: a file name holds 255 bytes, and a run name nests a few parts


def part(value: Any) -> str:
    """value as one path component: a dataset given as a path keeps its name, never a '/' that would nest
    folders, a control character, or a name made of dots alone ('.', '..') that would climb out; at most
    MAX_PART bytes (100 CJK characters are 300), cut with a hash of the whole (names.cut_bytes)."""
    text = cut_bytes("".join("_" if c in "/\\" or not c.isprintable() else c for c in str(value)), MAX_PART)
    return text if text.strip(".") else text.replace(".", "_") or "_"


def default_dest(results: Path, name: str) -> Path:
    """RESULTS/name, the folder an export or live log writes into unless told otherwise: one line where it leads
    out of RESULTS (a link there does not stretch the folder the user named)."""
    return inside(results, Path(results) / name)


TRACKER_FOLDER = ".trackers"  # under DEST: the trackers' own caches, logs and settings


def tracker_env(dest: Path) -> dict[str, str]:
    """The environment that keeps every file W&B and MLflow write of their own (W&B's core-debug logs and
    caches, MLflow's telemetry id) under dest instead of $HOME, and their telemetry off: these are local, offline
    stores, and nothing of them is anyone else's to hear about. The names are those the installed versions read
    (wandb.env, mlflow.environment_variables and mlflow.telemetry; XDG_* for what they find through platformdirs)."""
    home = Path(os.path.abspath(dest)) / TRACKER_FOLDER
    return {
        "WANDB_DIR": str(Path(os.path.abspath(dest))), "WANDB_CACHE_DIR": str(home / "wandb-cache"),
        "WANDB_CONFIG_DIR": str(home / "wandb-config"), "WANDB_DATA_DIR": str(home / "wandb-data"),
        "WANDB_ARTIFACT_DIR": str(home / "wandb-artifacts"), "WANDB_ERROR_REPORTING": "false",
        "WANDB_DISABLE_CODE": "true", "WANDB_DISABLE_GIT": "true",
        "XDG_CACHE_HOME": str(home / "cache"), "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"), "XDG_STATE_HOME": str(home / "state"),
        "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
    }


@contextmanager
def trackers_kept_in(dest: Path) -> Iterator[None]:
    """tracker_env(dest) for the duration of an export, the environment as it was afterwards."""
    inside(dest, Path(dest) / TRACKER_FOLDER)  # a link there would carry the trackers' files out again
    saved = {name: os.environ.get(name) for name in tracker_env(dest)}
    os.environ.update(tracker_env(dest))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_dest(dest: Path, option: str) -> None:
    """Stop with one line, before anything is written, unless dest is a folder this process can write into or
    create: a tracker must never fall back to writing elsewhere (W&B's fallback is the system's temporary
    folder), and a read-only folder must not end in a traceback halfway. option is how the user names another
    folder (`--dest FOLDER`). Nothing is left behind (`run --dry-run` writes nothing): the proof that the
    nearest existing folder takes a new entry is a hidden folder made and removed at once (os.access says
    yes to root on a read-only file system)."""
    wanted = Path(os.path.abspath(dest))
    existing = wanted
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == wanted else f"is under a file ({quoted(existing)})"
        raise AlmabenchError(f"{quoted(dest)} {where}, not a folder; pass {option} to write elsewhere")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".almabench-probe-", dir=existing))
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        inner = "" if existing == wanted else f" ({quoted(existing)} takes no new folder)"
        raise AlmabenchError(f"cannot write into {quoted(dest)}/{inner}: {reason}; pass {option} to write "
                             f"elsewhere") from None
