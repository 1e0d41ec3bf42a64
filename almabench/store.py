"""Result files: one JSON per cell, named by the config hash, written atomically (temp file + rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from almabench.config import RunConfig

SCHEMA_VERSION = 1

# Fields that measure time and therefore differ between two otherwise identical runs.
TIMING_STEP_KEYS = ("seconds", "prune_seconds", "train_seconds", "images_per_second")
TIMING_TOP_KEYS = ("started_at", "finished_at", "seconds")


def result_path(out: str | Path, config: RunConfig) -> Path:
    return Path(out) / f"{config.hash()}.json"


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_result(path: Path) -> dict[str, Any] | None:
    """The result stored at path, or None if it is missing, unreadable or not a finished result."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("status") == "ok" else None


def without_timing(result: dict[str, Any]) -> dict[str, Any]:
    """The result minus wall-clock measurements: what two runs with the same seed must agree on exactly."""
    out = {k: v for k, v in result.items() if k not in TIMING_TOP_KEYS}
    out["steps"] = [{k: v for k, v in s.items() if k not in TIMING_STEP_KEYS} for s in result["steps"]]
    return out
