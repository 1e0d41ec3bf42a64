"""Result files -> one tidy DataFrame (one row per cell and step).

Everything the analysis shows is computed from this frame, so a number in a table can always be traced back
to the file (column `path`) and the config (column `config_hash`) it came from. Files that are not finished,
well-formed results are skipped with one warning line each: a half-written grid must still give a report.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from almabench.cell.config import RunConfig
from almabench.errors import AlmabenchError
from almabench.names import one_line, quoted
from almabench.results.store import UnreadableFile, read_json
from almabench.results.validate import SCHEMA_VERSION, validate_result
from almabench.safe_paths import OutsideFolder, outside

Warn = Callable[[str], None]

CONFIG_KEYS: tuple[str, ...] = tuple(f.name for f in fields(RunConfig))
CONFIG_DEFAULTS: dict[str, Any] = RunConfig().to_dict()
# Config keys that only matter to a method that prunes; a dense cell belongs to every block they split.
PRUNING_KEYS: tuple[str, ...] = ("pruner", "tau", "scope", "sample_fraction", "prune_linear")
# Cell-level scalars copied onto every step row (step-level names win where they clash, see CELL_RENAMES).
CELL_KEYS = ("config_hash", "final_test_accuracy", "cer", "final_density", "final_gap", "mean_gap", "test_size",
             "params_total", "prunable_total", "flops_dense", "started_at", "finished_at")
CELL_RENAMES = {"seconds": "cell_seconds"}


def warn_stderr(message: str) -> None:
    """Default warning sink: one line on stderr, so piped tables on stdout stay clean."""
    print(f"warning: {one_line(message)}", file=sys.stderr)  # a name with a newline must not forge a line


def _hashable(value: Any) -> Any:
    """Lists become tuples so that columns such as milestones can be grouped on."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def problem(result: Any) -> str | None:
    """Why `result` is not a usable finished result, or None if it is. The keys and types a result must have
    are checked by almabench.results.validate.validate_result, the same check `status` and `run` apply."""
    if not isinstance(result, dict):
        return "not a JSON object"
    if "status" not in result or "config_hash" not in result:
        return "not an almabench result (no status/config_hash)"
    if result["status"] != "ok":
        error = f": {str(result['error']).splitlines()[0][:120]}" if result.get("error") else ""
        return f"status {result['status']!r}{error}"
    if result.get("schema_version") != SCHEMA_VERSION:
        return f"schema version {result.get('schema_version')!r} (this almabench reads {SCHEMA_VERSION})"
    return validate_result(result)


def settings_label(settings: dict[str, Any]) -> str:
    """A cell's non-default method settings as its label shows them: 'shrink=0.2, perturb=0' ('' for none)."""
    return ", ".join(f"{k}={v:g}" for k, v in sorted(settings.items()))


def plugin_code(environment: dict[str, Any]) -> str:
    """The plugin code the process that made a cell had imported, as the report names it ('' for none): every
    module under environment.plugins.imported, and the entries the cell used (all that older records name)."""
    plugins = environment.get("plugins")
    if not isinstance(plugins, dict):
        return ""
    imported = plugins.get("imported")
    entries = [*(imported if isinstance(imported, list) else []),
               *(v for k, v in plugins.items() if k != "imported")]
    return ", ".join(dict.fromkeys(str(e.get("from", "?")) for e in entries if isinstance(e, dict)))


def _rows(result: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The tidy rows of one valid result: config keys, cell scalars, data/env provenance, then the step. A method's
    settings are a label (column settings: the non-default ones) and a column each (setting_NAME: every declared
    one, with the value the cell ran with)."""
    # A key a result lacks was added to RunConfig after it ran, and had its default then (the hash rule).
    config = {**CONFIG_DEFAULTS, **result["config"]}
    config["settings"] = settings_label(config["settings"])
    cell: dict[str, Any] = {k: _hashable(v) for k, v in config.items()}
    cell.update({f"setting_{k}": v for k, v in result.get("method_settings", {}).items()})
    cell.update({k: result.get(k) for k in CELL_KEYS})
    cell.update({new: result.get(old) for old, new in CELL_RENAMES.items()})
    cell.update({f"data_{k}": _hashable(v) for k, v in result.get("data", {}).items()})
    cell.update({f"env_{k}": _hashable(v) for k, v in result.get("environment", {}).items()})
    cell["path"] = str(path)
    cell["plugin_code"] = plugin_code(result.get("environment", {}))
    cell["prunes"] = any(s["target_density"] < 1 or s["density"] < 1 for s in result["steps"])
    rows = []
    for s in result["steps"]:
        row = dict(cell)
        row.update(s)
        row["params_kept"] = 100.0 * s["params_remaining"] / result["params_total"]
        row["flops_kept"] = 100.0 * s["flops_remaining"] / result["flops_dense"]
        rows.append(row)
    return rows


EXPORT_FOLDERS = ("wandb",)  # W&B's own run folders (an export or live log under RESULTS) hold JSON of their own


def result_files(root: Path, warn: Warn = warn_stderr) -> list[Path]:
    """Every *.json under root (recursively), in a stable order; hidden temp files are not results, nor is
    anything under a folder named in EXPORT_FOLDERS. A file whose real path lies outside root (a link out) is
    skipped with one warning line: a link does not stretch the folder the user named."""
    files = []
    for path in sorted(p for p in root.rglob("*.json") if not p.is_dir() and not p.name.startswith(".")
                       and not set(p.relative_to(root).parts[:-1]) & set(EXPORT_FOLDERS)):
        target = outside(root, path)
        if target is not None:
            warn(f"skipped {path}: a link to {target}, outside {root}")
        elif not path.is_file():  # a FIFO would block the read, a device never end it
            warn(f"skipped {path}: not a regular file")
        else:
            files.append(path)
    return files


def read_results(paths: Iterable[Path], warn: Warn = warn_stderr) -> list[tuple[Path, dict[str, Any]]]:
    """The valid results among paths, each cell once; every skipped file gets one warning line. Where two files
    hold one cell, the file named by its config hash is read and the other skipped: a copy under another name
    (say 0000000000000000.json) must not hide the real file, wherever it sorts."""
    valid = []
    for path in paths:
        try:
            result = read_json(path)  # the real path result_files checked, without following a link swapped in
        except OutsideFolder as err:
            warn(f"skipped {path}: {err}")
            continue
        except OSError as err:
            warn(f"skipped {path}: unreadable ({err.__class__.__name__})")
            continue
        except UnreadableFile as err:
            warn(f"skipped {path}: {'empty file' if not path.stat().st_size else err}")
            continue
        reason = problem(result)
        if reason is not None:
            warn(f"skipped {path}: {reason}")
            continue
        valid.append((path, result))
    kept: dict[str, Path] = {}
    for path, result in sorted(valid, key=lambda item: item[0].stem != item[1]["config_hash"]):  # stable sort
        kept.setdefault(result["config_hash"], path)
    out = []
    for path, result in valid:
        first = kept[result["config_hash"]]
        if first != path:
            warn(f"skipped {path}: same cell (config {result['config_hash']}) as {first}")
            continue
        out.append((path, result))
    return out


def printable_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """frame with every text value that does not print (a method named "app\\nwarning: FAKE", an escape
    sequence, a file name with a newline) replaced by its quoted, escaped form (names.quoted): the report prints,
    draws and names files after these values, and a newline there would forge a line of its own."""
    def bad(column: pd.Series) -> bool:
        return any(isinstance(v, str) and not v.isprintable() for v in column.to_numpy())

    columns = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c].dtype) and bad(frame[c])]
    return frame.assign(**{c: frame[c].map(lambda v: quoted(v) if isinstance(v, str) else v) for c in columns})


def results_folder(root: str | Path) -> Path:
    """root as a Path, or the one line the CLI gives where it is missing or a file: an empty frame would say
    "no results" of a folder that is not there (a typo), which is not the same answer."""
    root = Path(root)
    if not root.is_dir():
        where = "is a file, not a folder" if root.exists() else "does not exist"
        raise AlmabenchError(f"results folder {root} {where}")
    return root


def load_results(root: str | Path | Sequence[str | Path], warn: Warn = warn_stderr) -> pd.DataFrame:
    """One row per (cell, step) for every valid result file under root (a folder, or several: a cell found in
    two of them is read once, with a warning); an empty frame if there are none (AlmabenchError if a root is not
    a folder)."""
    roots = [results_folder(root)] if isinstance(root, str | Path) else [results_folder(r) for r in root]
    files = [path for r in roots for path in result_files(r, warn)]
    rows = [row for path, result in read_results(files, warn) for row in _rows(result, path)]
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values(["dataset", "arch", "megabatches", "method", "seed", "config_hash", "step"],
                                  kind="stable").reset_index(drop=True)
    return frame


def filter_results(frame: pd.DataFrame, methods: Iterable[str] | None = None, dataset: str | None = None,
                   arch: str | None = None, megabatches: int | None = None) -> pd.DataFrame:
    """The rows matching every filter given (None: no filter on that key)."""
    keep = pd.Series(True, index=frame.index)
    if methods:
        keep &= frame["method"].isin(list(methods))
    if dataset is not None:
        keep &= frame["dataset"] == dataset
    if arch is not None:
        keep &= frame["arch"] == arch
    if megabatches is not None:
        keep &= frame["megabatches"] == megabatches
    return frame[keep].reset_index(drop=True)


def cells(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: its final step, which carries the cell-level metrics and the final kept fractions."""
    last = frame.sort_values("step", kind="stable").groupby("config_hash", sort=False).tail(1)
    return last.sort_index().reset_index(drop=True)


def layer_densities(frame: pd.DataFrame) -> pd.DataFrame:
    """Long frame of per-layer densities: the frame's columns (minus the dict) plus `layer`, `layer_density`."""
    if "layer_density" not in frame.columns:
        return pd.DataFrame(columns=[*frame.columns, "layer", "layer_density"])
    rows = frame[frame["layer_density"].map(lambda d: isinstance(d, dict) and bool(d))]
    if rows.empty:
        return pd.DataFrame(columns=[*frame.columns, "layer"])
    pairs = rows["layer_density"].map(lambda d: list(d.items()))
    long = rows.drop(columns="layer_density").assign(pair=pairs).explode("pair")
    long["layer"] = long["pair"].map(lambda p: p[0])
    long["layer_density"] = long["pair"].map(lambda p: float(p[1]))
    return long.drop(columns="pair").reset_index(drop=True)
