"""The types and ranges of a result's fields beyond its headline numbers (validate.validate_result checks those):
the `data` and `environment` objects, the step records' other keys, the clock, and what one file may hold.

Each check answers with why a field is wrong, or None; a file that fails one is skipped with one warning line like
any corrupt file, so that no export, report or tracker meets a value it cannot hold (a year 1000 timestamp, a
layer named `a/../b`, 60,000 layers a step).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from almabench.names import shown as _shown

Check = Any  # a function (value) -> bool

MAX_LAYERS = 4096  # per step: ResNet-50 has 53 prunable layers; 60,000 took the report to 2 GB
MAX_SECONDS = 1e9  # about 31 years: a longer cell is a wrong number (and MLflow's SQLite holds 64-bit ms)
EARLIEST, LATEST = dt.datetime(1970, 1, 1), dt.datetime(2200, 1, 1)  # inside pandas' datetime64[ns] range
LAYER_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,200}")  # a module path as torch names it: no '/', control or NUL


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _str_or_none(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _bool_or_none(v: Any) -> bool:
    return v is None or isinstance(v, bool)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _positive(v: Any) -> bool:
    return _count(v) and v >= 1


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and all(_number(x) for x in v)


def _size(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_positive(x) for x in v)


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


DATA: dict[str, tuple[Check, str]] = {
    "name": (_str, "a string"), "source": (_str, "a string"), "fingerprint": (_str, "a string"),
    "n_train": (_positive, "a positive integer"), "n_test": (_positive, "a positive integer"),
    "num_classes": (_positive, "a positive integer"), "channels": (_positive, "a positive integer"),
    "image_size": (_size, "[height, width], positive integers"), "mean": (_numbers, "a list of numbers"),
    "std": (_numbers, "a list of numbers"), "flip": (_bool, "true or false"),
    "checksum_ok": (_bool_or_none, "true, false or null"), "notes": (_strings, "a list of strings"),
}
ENVIRONMENT: dict[str, tuple[Check, str]] = {
    **{k: (_str_or_none, "a string") for k in ("almabench", "code", "git_commit", "python", "torch", "torchvision",
                                               "numpy", "click", "joblib", "pandas", "scikit-learn", "platform",
                                               "device", "device_name", "precision")},
    "git_dirty": (_bool_or_none, "true, false or null"), "torch_threads": (_count, "an integer >= 0"),
    "channels_last": (_bool, "true or false"), "compile": (_bool, "true or false"),
    "eval_batch_size": (_count, "an integer >= 0"), "memory_reused": (_bool, "true or false"),
    "plugins": (lambda v: isinstance(v, dict), "an object"),
}
# step keys besides store.STEP_NUMBERS: the harness's counts, and the built-in methods' records
STEP: dict[str, tuple[Check, str]] = {
    **{k: (_count, "an integer >= 0") for k in ("train_size", "val_size", "sample_size", "best_epoch",
                                                "rewind_iteration")},
    **{k: (_number, "a number") for k in ("prune_seconds", "train_seconds", "validation_seconds", "test_seconds",
                                          "gap_seconds")},
    "start_seed": (_int, "an integer"), "noise_seed": (_int, "an integer"),
}
# what a step may not carry: the keys that say which cell a row belongs to come from its file, never from a step
CELL_KEYS = frozenset({"config_hash", "method", "dataset", "arch", "megabatches", "seed", "path", "file",
                       "config", "environment", "data", "status"})


def fields_problem(where: str, value: Any, schema: dict[str, tuple[Check, str]]) -> str | None:
    """Why an object's known fields are of the wrong type (None: all right); unknown keys are left alone."""
    if not isinstance(value, dict):
        return f"{where} should be an object"
    for key, (ok, kind) in schema.items():
        if key in value and not ok(value[key]):
            return f"{where}.{key} should be {kind}, got {_shown(value[key])}"
    return None


def step_problem(i: int, step: dict[str, Any]) -> str | None:
    """A step's other keys: their types, no key of the cell's, nested records of numbers, a bounded layer list with
    names a file system and a tracker can hold."""
    reason = fields_problem(f"step {i}", step, STEP)
    if reason is not None:
        return reason
    taken = sorted(CELL_KEYS & set(step))
    if taken:
        return f"step {i} holds {', '.join(taken)}, which belong to the cell (its file), not to a step"
    for key, value in step.items():
        if isinstance(value, dict) and key != "layer_density" and not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
            return f"step {i} {key} should be an object of numbers, got {_shown(value)}"
        if isinstance(value, list) and not all(isinstance(v, dict) for v in value):
            return f"step {i} {key} should be a list of objects, got {_shown(value)}"
    layers = step.get("layer_density", {})
    if isinstance(layers, dict):
        if len(layers) > MAX_LAYERS:
            return f"step {i} holds {len(layers):,} layers; a result holds at most {MAX_LAYERS:,} a step"
        bad = next((name for name in layers if not LAYER_NAME.fullmatch(name) or ".." in name), None)
        if bad is not None:
            return f"step {i} names a layer {bad!r}: letters, digits, '_', '-' and single '.' only"
    return None


def clock_problem(doc: dict[str, Any]) -> str | None:
    """Timestamps inside 1970-2200 and durations under MAX_SECONDS, which every export can hold."""
    for key in ("started_at", "finished_at"):
        try:
            when = dt.datetime.fromisoformat(doc[key]).replace(tzinfo=None)
        except (TypeError, ValueError):
            return f"{key} should be an ISO 8601 time, got {_shown(doc[key])}"
        if not EARLIEST <= when < LATEST:
            return f"{key} should lie between 1970 and 2200, got {_shown(doc[key])}"
    parts = doc.get("seconds_by_part", {})
    durations = [("seconds", doc.get("seconds", 0))]
    durations += [(f"seconds_by_part.{k}", v) for k, v in parts.items()] if isinstance(parts, dict) else []
    for where, value in durations:
        if _number(value) and value > MAX_SECONDS:
            return f"{where} should be at most {MAX_SECONDS:g} s, got {_shown(value)}"
    return None
