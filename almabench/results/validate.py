"""Is a result file what it claims? validate_result checks every value a reader or a writer uses, so that a file
from anyone (results folders are shared, the study's are committed) is read as a result or skipped with one line
naming what is wrong, never a traceback in a report or an export."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any

from almabench.cell.config import NAMED_WITHOUT, RunConfig, range_problem
from almabench.errors import AlmabenchError
from almabench.names import shown
from almabench.results.schema import DATA, ENVIRONMENT, clock_problem, fields_problem, step_problem

# The deepest a result nests: steps[i].mask_updates[j].key is 5 containers; one spare for a method's own records.
RESULT_DEPTH = 6

_PERCENT, _FRACTION, _POINTS, _COUNT = (0.0, 100.0), (0.0, 1.0), (-100.0, 100.0), (0.0, None)

BOUNDS: dict[str, tuple[float, float | None]] = {
    "final_test_accuracy": _PERCENT, "test_accuracy": _PERCENT, "train_accuracy": _PERCENT,
    "val_accuracy": _PERCENT, "final_density": _FRACTION, "density": _FRACTION, "target_density": _FRACTION,
    "final_gap": _POINTS, "mean_gap": _POINTS, "gap": _POINTS, "test_size": (1.0, None), "step": (1.0, None),
    **{k: _COUNT for k in ("cer", "params_total", "prunable_total", "flops_dense", "seconds", "test_errors",
                           "params_remaining", "flops_remaining", "images_per_second")},
}

_shown = shown  # almabench.names.shown


SCHEMA_VERSION = 1


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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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

