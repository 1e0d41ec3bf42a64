"""What a Slurm cell leaves under the results folder that both sides read: its log, its records, its checkpoint's
step records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from almabench.errors import AlmabenchError
from almabench.results.store import SLURM_DIR
from almabench.safe_paths import read_bytes


def log_path(out: Path, job: str) -> Path:
    """A task's stderr (submitit's name; stdout is the .out beside it)."""
    return out / SLURM_DIR / f"{job}_0_log.err"


def checkpoint_steps(checkpoint: Path) -> list[dict[str, Any]]:
    """The step records of a checkpoint, read lazily (mmap); [] where there is none or it is unusable."""
    from almabench.results.store import peek_checkpoint

    state = peek_checkpoint(checkpoint)
    try:
        return list(json.loads(state["steps"])) if state is not None else []
    except (KeyError, TypeError, ValueError):
        return []


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(read_bytes(path, path.parent))
    except (OSError, ValueError, AlmabenchError):
        return None
    return doc if isinstance(doc, dict) else None

