"""Planning: what a grid still costs (almabench run --dry-run) and what a results folder holds (status).

Nothing here runs a cell or writes a file: the cells' states in the folder, the training image-passes each
still needs, and a time at the end-to-end rate of the finished results beside them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from almabench.cell.config import RunConfig, RunOptions
from almabench.cell.device import resolve_device
from almabench.cell.stream import check_stream
from almabench.data import load_dataset
from almabench.errors import AlmabenchError
from almabench.extend.stale import mark_changed
from almabench.grid.progress import step_passes
from almabench.grid.specs import check_config, check_resolved, resolve_configs
from almabench.names import quoted
from almabench.results.store import CellFile, cell_files, read_json, result_state
from almabench.safe_paths import outside


def image_passes(config: RunConfig, n_train: int) -> int:
    """Training images one cell processes: epochs × Σ_t |train_t| (the replay set of each step)."""
    return sum(step_passes(config, n_train))


def _rate_key(arch: str, channels: int, image_size: Any, device: str) -> tuple:
    return arch, int(channels), tuple(int(x) for x in image_size), device.split(":")[0]


def measured_rates(out: Path) -> dict[tuple, tuple[float, int]]:
    """End-to-end training images per second (pruning and evaluation included) of the finished results in
    out/, by (arch, channels, image size, device type): {key: (images/s, number of results)}."""
    totals: dict[tuple, list[float]] = {}
    for path in sorted(out.glob("*.json")) if out.is_dir() else []:
        state, _ = result_state(path)
        if state != "done":
            continue
        try:
            result = read_json(path, out)
            data, env = result["data"], result["environment"]
            key = _rate_key(result["config"]["arch"], data["channels"], data["image_size"], env["device"])
            images = result["config"]["epochs"] * sum(s["train_size"] for s in result["steps"])
            seconds = float(result["seconds"])
        except (KeyError, TypeError, ValueError):
            continue
        if seconds > 0 and images > 0:
            entry = totals.setdefault(key, [0.0, 0.0, 0])
            entry[0] += images
            entry[1] += seconds
            entry[2] += 1
    return {k: (v[0] / v[1], int(v[2])) for k, v in totals.items()}


@dataclass
class Plan:
    cells: list[CellFile]
    passes: dict[RunConfig, int | None]  # training image-passes of each cell, None where the data is unknown
    seconds: dict[RunConfig, float | None]  # estimated seconds of each cell still to run
    rates: dict[tuple, tuple[float, int]]  # rate key -> (images/s, results measured)
    keys: dict[RunConfig, tuple]
    unreadable: list[str]  # why a dataset of the grid cannot be read (missing CIFAR files, ...): the run would stop

    @property
    def todo(self) -> list[CellFile]:
        return [c for c in self.cells if c.state != "done"]

    def counts(self) -> dict[str, int]:
        return {state: sum(c.state == state for c in self.cells) for state in ("done", "failed", "corrupt", "missing")}


def plan_grid(configs: list[RunConfig], options: RunOptions, out: Path) -> Plan:
    """What running the grid into out/ would do, without running or writing anything."""
    if not configs:
        raise AlmabenchError("the grid is empty")
    for config in configs:
        check_config(config)
    if out.exists() and not out.is_dir():
        raise AlmabenchError(f"--out {out} exists and is not a folder")
    device = resolve_device(options.device).type
    rates = measured_rates(out)
    unreadable, shapes, loaded = [], {}, {}
    for name in dict.fromkeys(c.dataset for c in configs):
        try:
            data = loaded[name] = load_dataset(name, options.data_root, options.download)
            shapes[name] = (data.n_train, data.channels, data.image_size)
        except AlmabenchError as exc:
            unreadable.append(str(exc))
    configs = resolve_configs(configs, options, strict=False)  # a cell's file name depends on its resolved values
    for config in configs:
        if config.dataset in loaded:
            check_resolved(config, loaded[config.dataset])
    cells = mark_changed(cell_files(configs, out))
    passes: dict[RunConfig, int | None] = {}
    seconds: dict[RunConfig, float | None] = {}
    keys: dict[RunConfig, tuple] = {}
    for cell in cells:
        c = cell.config
        if c.dataset not in shapes:
            passes[c] = seconds[c] = None
            continue
        n_train, channels, size = shapes[c.dataset]
        try:
            check_stream(n_train, c.megabatches, c.val_fraction, c.stream_images)
        except AlmabenchError as exc:
            raise AlmabenchError(f"{quoted(c.dataset)}: {exc}") from None
        passes[c] = n_passes = image_passes(c, n_train)
        keys[c] = _rate_key(c.arch, channels, size, device)
        rate = rates.get(keys[c])
        seconds[c] = n_passes / rate[0] if rate else None
    return Plan(cells, passes, seconds, rates, keys, unreadable)


def folder_states(out: Path) -> list[tuple[Path, str, str, dict[str, Any] | None, str | None]]:
    """Every <hash>.json in out/: (path, state, detail, config or None, data fingerprint or None)."""
    rows = []
    for path in sorted(out.glob("*.json")):
        target = outside(out, path)
        if target is not None:  # a link does not stretch the folder: not read, not counted
            warnings.warn(f"skipped {path}: a link to {target}, outside {out}", stacklevel=2)
            continue
        state, detail = result_state(path)
        doc: Any = None
        if state in ("done", "failed"):
            try:
                doc = read_json(path, out)
            except (OSError, ValueError):
                doc = None
        config = doc.get("config") if isinstance(doc, dict) else None
        data = doc.get("data") if isinstance(doc, dict) else None
        fingerprint = data.get("fingerprint") if isinstance(data, dict) else None
        rows.append((path, state, detail, config if isinstance(config, dict) else None,
                     fingerprint if isinstance(fingerprint, str) else None))
    return rows
