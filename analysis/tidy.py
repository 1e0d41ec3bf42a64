"""Result documents -> three tidy, typed tables: cells, steps and layers (one observation per row).

`load.load_results` joins everything onto every step for the report; these tables keep each fact once,
keyed by `config_hash`, for export (parquet) and for pandas users. Every column has a declared dtype, so an
export of two cells and one of two hundred read back alike: integers are nullable `Int64` (a key a method or an
older almabench did not record is <NA>, not a switch to float), booleans `boolean`, text `string`, times
UTC timestamps. The lists of numbers (milestones, data_image_size, data_mean, data_std) are text, the
numbers joined by commas ("1,2"; <NA> where unset), so that they compare, group and drop_duplicates like any
other setting (a column of arrays makes `groupby` raise and `drop_duplicates` keep a row per cell); the free-text
data_notes stays a list. A key this module does not know (a field added later) is typed from its values by the
same rules, or kept as JSON text.

`cells` also holds what the report names a cell by: `label`, its method as the report's tables write it (with its
scope where that is not the paper's global one, and its method settings where not the defaults: 'rigl
(erk-dense-first)', 'shrink-perturb (shrink=0.2)', blocks.scope_in_method), and `block`,
the title of the report's block of the folder (blocks.block_label of the block keys and the settings that vary
across the cells; a dense cell, which the report puts in every pruner's and τ's block, is given the one its own
settings name).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from almabench.cell.config import RunConfig

from .blocks import BLOCK_KEYS, block_label, scope_in_method, with_varying_splits
from .load import Warn, read_results, result_files, results_folder, settings_label, warn_stderr

INT, FLOAT, BOOL, TEXT, TIME, LIST = "Int64", "float64", "boolean", "string", "datetime64[ns, UTC]", "list"
NUMBERS = "numbers"  # a list of numbers, stored as text: "1,2"
_FIELD_DTYPES = {"str": TEXT, "str | None": TEXT, "int": INT, "float": FLOAT, "bool": BOOL, "bool | None": BOOL,
                 "int | None": INT,
                 "tuple[int, ...] | None": NUMBERS, "MethodSettings": TEXT}
CONFIG_COLUMNS: dict[str, str] = {f.name: _FIELD_DTYPES[str(f.type)] for f in fields(RunConfig)}

# One row per cell. seconds_<part> are the result's seconds_by_part; data_* and env_* its `data` and
# `environment` objects.
CELL_COLUMNS: dict[str, str] = {
    "config_hash": TEXT, "file": TEXT, "status": TEXT, "schema_version": INT,
    **CONFIG_COLUMNS,
    "final_test_accuracy": FLOAT, "cer": INT, "final_density": FLOAT, "final_gap": FLOAT, "mean_gap": FLOAT,
    "test_size": INT, "params_total": INT, "prunable_total": INT, "flops_dense": INT,
    "started_at": TIME, "finished_at": TIME, "seconds": FLOAT,
    **{f"seconds_{part}": FLOAT for part in ("startup", "pruning", "training", "validation", "gap", "test",
                                              "checkpoint")},
    "data_name": TEXT, "data_source": TEXT, "data_fingerprint": TEXT, "data_n_train": INT, "data_n_test": INT,
    "data_num_classes": INT, "data_channels": INT, "data_image_size": NUMBERS, "data_mean": NUMBERS,
    "data_std": NUMBERS,
    "data_flip": BOOL, "data_checksum_ok": BOOL, "data_notes": LIST,
    **{f"env_{k}": TEXT for k in ("almabench", "code", "git_commit", "python", "torch", "torchvision", "numpy",
                                  "click", "joblib", "pandas", "scikit-learn", "platform", "device",
                                  "device_name", "precision")},
    "env_git_dirty": BOOL, "env_torch_threads": INT, "env_channels_last": BOOL, "env_compile": BOOL,
    "env_eval_batch_size": INT, "env_memory_reused": BOOL,
}

# One row per cell and megabatch: every scalar of the step record, the running CER and the kept percentages;
# a method's nested schedule flattened (gmp_schedule_every), its list of mask updates counted.
STEP_COLUMNS: dict[str, str] = {
    "config_hash": TEXT, "step": INT,
    "test_accuracy": FLOAT, "test_errors": INT, "cer_so_far": INT, "train_accuracy": FLOAT, "val_accuracy": FLOAT,
    "gap": FLOAT, "density": FLOAT, "target_density": FLOAT,
    "params_remaining": INT, "params_kept": FLOAT, "flops_remaining": INT, "flops_kept": FLOAT,
    "train_size": INT, "val_size": INT, "sample_size": INT, "best_epoch": INT,
    "prune_seconds": FLOAT, "train_seconds": FLOAT, "validation_seconds": FLOAT, "test_seconds": FLOAT,
    "gap_seconds": FLOAT, "seconds": FLOAT, "images_per_second": FLOAT,
    "rewind_iteration": INT, "gmp_schedule_sgd_steps": INT, "gmp_schedule_first": INT, "gmp_schedule_last": INT,
    "gmp_schedule_every": INT, "mask_update_count": INT,
}

# One row per cell, megabatch and prunable weight: its kept fraction.
LAYER_COLUMNS: dict[str, str] = {"config_hash": TEXT, "step": INT, "layer": TEXT, "layer_density": FLOAT}

SORT = ["dataset", "arch", "megabatches", "method", "seed", "config_hash"]


@dataclass(frozen=True)
class ResultTables:
    """The three tidy tables of a results folder; join them on config_hash (and step)."""

    cells: pd.DataFrame
    steps: pd.DataFrame
    layers: pd.DataFrame


def load_tables(root: str | Path, warn: Warn = warn_stderr) -> ResultTables:
    """The tidy tables of every valid result under root, with the same checks as load_results (each skipped
    file gets one warning line); file paths are stored relative to root, so a moved folder exports alike."""
    root = results_folder(root)
    return tables_of(read_results(result_files(root, warn), warn), root)


def tables_of(results: Iterable[tuple[Path, dict[str, Any]]], root: Path) -> ResultTables:
    """The tables of already validated (path, result) pairs, in a stable order (block keys, then seed)."""
    cell_rows, step_rows, layer_rows = [], [], []
    for path, result in results:
        cell_rows.append(_cell_row(result, path.relative_to(root).as_posix()))
        cer = 0
        for s in result["steps"]:
            cer += s["test_errors"]
            step_rows.append(_step_row(result, s, cer))
            layer_rows += [{"config_hash": result["config_hash"], "step": s["step"], "layer": name,
                            "layer_density": density} for name, density in s.get("layer_density", {}).items()]
    cells = typed(cell_rows, CELL_COLUMNS)
    if not cells.empty:
        cells = cells.sort_values(SORT, kind="stable").reset_index(drop=True)
    cells = with_labels(cells, {r["config_hash"]: _prunes(r) for _, r in results})
    rank = {h: i for i, h in enumerate(cells["config_hash"])}
    steps = _in_cell_order(typed(step_rows, STEP_COLUMNS), rank, ["step"])
    layers = _in_cell_order(typed(layer_rows, LAYER_COLUMNS), rank, ["step"])  # layers keep the model's order
    return ResultTables(cells, steps, layers)


def _prunes(result: dict[str, Any]) -> bool:
    """Whether a cell pruned anything (load._rows' rule): a dense cell joins every pruning block."""
    return any(s["target_density"] < 1 or s["density"] < 1 for s in result["steps"])


def with_labels(cells: pd.DataFrame, prunes: dict[str, bool]) -> pd.DataFrame:
    """cells with `label` and `block` after `method` (see the module's docstring)."""
    if cells.empty:
        return cells.assign(label=pd.Series(dtype=TEXT), block=pd.Series(dtype=TEXT))
    frame = cells.astype(object).where(cells.notna(), None)
    for column, dtype in CELL_COLUMNS.items():  # the values as the report's loader holds them: lists as tuples
        if dtype == NUMBERS:
            frame[column] = frame[column].map(lambda v: None if v is None else tuple(_number(x) for x in v.split(",")))
    frame = frame.assign(prunes=frame["config_hash"].map(prunes).astype(bool))
    labels = scope_in_method(frame)["method"]
    keys = [k for k in with_varying_splits(list(BLOCK_KEYS), frame) if k in frame.columns]
    blocks = frame[keys].apply(lambda row: block_label(dict(row)), axis=1)
    at = list(cells.columns).index("method") + 1
    out = cells.copy()
    out.insert(at, "label", labels.astype(TEXT))
    out.insert(at + 1, "block", blocks.astype(TEXT))
    return out


def _number(text: str) -> int | float:
    return int(text) if text.lstrip("-").isdigit() else float(text)


def _in_cell_order(frame: pd.DataFrame, rank: dict[str, int], within: list[str]) -> pd.DataFrame:
    if frame.empty:
        return frame
    order = frame["config_hash"].map(rank).rename("_cell")
    return (frame.assign(_cell=order).sort_values(["_cell", *within], kind="stable").drop(columns="_cell")
            .reset_index(drop=True))


def _cell_row(result: dict[str, Any], file: str) -> dict[str, Any]:
    config = {**RunConfig().to_dict(), **result["config"]}  # a key added later had its default then
    config["settings"] = settings_label(config["settings"])  # the non-default ones; setting_NAME: every one
    row: dict[str, Any] = {"config_hash": result["config_hash"], "file": file, "status": result["status"],
                           "schema_version": result.get("schema_version"), **config}
    row.update({f"setting_{k}": v for k, v in result.get("method_settings", {}).items()})
    for key in ("final_test_accuracy", "cer", "final_density", "final_gap", "mean_gap", "test_size", "params_total",
                "prunable_total", "flops_dense", "started_at", "finished_at", "seconds"):
        row[key] = result.get(key)
    row.update({f"seconds_{k}": v for k, v in (result.get("seconds_by_part") or {}).items()})
    row.update({f"data_{k}": v for k, v in result.get("data", {}).items()})
    row.update({f"env_{k}": v for k, v in result.get("environment", {}).items()})
    return row


def _step_row(result: dict[str, Any], step: dict[str, Any], cer: int) -> dict[str, Any]:
    row: dict[str, Any] = {"config_hash": result["config_hash"], "cer_so_far": cer}
    for key, value in step.items():
        if key == "layer_density":
            continue  # the layers table
        if isinstance(value, dict):
            row.update({f"{key}_{k}": v for k, v in value.items()})
        elif isinstance(value, list):
            row[f"{key.removesuffix('s')}_count"] = len(value)  # mask_updates -> mask_update_count
        else:
            row[key] = value
    row["params_kept"] = 100.0 * step["params_remaining"] / result["params_total"]
    row["flops_kept"] = 100.0 * step["flops_remaining"] / result["flops_dense"]
    return row


def typed(rows: list[dict[str, Any]], schema: dict[str, str]) -> pd.DataFrame:
    """A frame of rows with schema's columns first, in its order and dtypes; other keys after them, sorted,
    each typed from its values (infer_dtype)."""
    frame = pd.DataFrame(rows)
    extra = sorted(set(frame.columns) - set(schema))
    columns = {}
    for name in [*schema, *extra]:
        values = frame[name] if name in frame.columns else pd.Series([None] * len(frame), dtype=object)
        dtype = schema.get(name) or infer_dtype(values)
        columns[name] = as_dtype(values, dtype)
    return pd.DataFrame(columns, index=range(len(frame)))


def infer_dtype(values: pd.Series) -> str:
    """The dtype the declared columns would get: bool, int, number, text; anything else becomes JSON text."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and pd.isna(v))]
    if all(isinstance(v, bool) for v in present):
        return BOOL
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return INT
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return FLOAT
    if all(isinstance(v, str) for v in present):
        return TEXT
    return "json"


def as_dtype(values: pd.Series, dtype: str) -> pd.Series:
    values = values.astype(object).where(values.notna(), None) if values.dtype != object else values
    if dtype == LIST:
        return pd.Series([None if v is None else list(v) for v in values], dtype=object)
    if dtype == NUMBERS:
        return pd.Series([None if v is None else ",".join(map(str, v)) for v in values], dtype=object).astype(TEXT)
    if dtype == "json":
        return pd.Series([None if v is None else json.dumps(v, sort_keys=True) for v in values], dtype=TEXT)
    if dtype == TIME:
        return pd.to_datetime(pd.Series(list(values), dtype=object), utc=True, format="ISO8601").astype(TIME)
    return pd.Series(list(values), dtype=object).astype(dtype)
