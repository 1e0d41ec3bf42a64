"""Every check before a grid's first cell runs (or is submitted), and its results folder made.

Shared by the executor (grid.execute) and the Slurm backend's detached submission; the backend is handed in as
an object, so that nothing here imports the backends.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from almabench.cell.checkpoint import check_resumes
from almabench.cell.config import RunConfig, RunOptions
from almabench.cell.device import resolve_device
from almabench.cell.train import resolve_precision
from almabench.data import load_dataset
from almabench.errors import AlmabenchError
from almabench.extend.stale import mark_changed, move_replaced
from almabench.grid.locks import LOCK_DIR
from almabench.grid.specs import check_grid
from almabench.results.store import CHECKPOINT_DIR, SLURM_DIR, CellFile, cell_files, read_json
from almabench.safe_paths import inside

if TYPE_CHECKING:
    from almabench.backends.base import Backend


def prepare_out(out: Path) -> None:
    """Create the results folder and prove it takes a file (os.access says yes to root on a read-only one)."""
    if out.exists() and not out.is_dir():
        raise AlmabenchError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlmabenchError(f"cannot create results folder {out}: {exc.strerror or exc}") from None
    for sub in (LOCK_DIR, CHECKPOINT_DIR, SLURM_DIR):  # before anything is written: no link out of out/ there
        inside(out, out / sub)
    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise AlmabenchError(f"results folder {out} is not writable: {exc.strerror or exc}") from None


def prepare_grid(configs: list[RunConfig], options: RunOptions, out: Path, jobs: int, backend: Backend,
                 name: str, scheduler: str | None = None, rerun_changed: bool = False,
                 ) -> tuple[list[CellFile], list[RunConfig], RunOptions, int]:
    """Every check before a cell runs (or is submitted), and the folder made: (the cells' files, the cells to
    run, the options they run with, the torch threads a cell uses or 0 where only its worker knows). Finished
    cells made by other plugin code (almabench.extend.stale) are marked; with rerun_changed their files are moved aside
    and they run again. backend is the Backend registered as name (almabench.backends): handed in, so that the
    grid never imports the backends that call it."""
    if jobs < 1 and not (jobs == -1 and backend.cluster):
        raise AlmabenchError(f"--jobs must be at least 1, got {jobs}")
    backend.check(name, scheduler)
    configs = check_grid(configs, options)
    precision = resolve_precision(options.precision, resolve_device(options.device))
    prepare_out(out)
    cells = mark_changed(cell_files(configs, out))
    check_same_data(cells, options)
    if rerun_changed:
        for cell in cells:
            if cell.changed:
                move_replaced(cell)
    todo = [cell.config for cell in cells if cell.state != "done" or (rerun_changed and cell.changed)]
    _warn_other_precision(cells, precision)
    if jobs > 1 and options.threads == 0 and backend.submit is None:
        options = RunOptions(**{**options.__dict__, "threads": max(1, (os.cpu_count() or 1) // jobs)})
    threads = options.threads or (0 if backend.cluster else torch.get_num_threads())  # 0: unknown
    if threads:
        check_resumes(todo, options, out, threads)
    return cells, todo, options, threads


def check_same_data(cells: list[CellFile], options: RunOptions) -> None:
    """A done cell is only done for the data it ran on: a file at the same path (or another copy of CIFAR)
    holding other pixels or labels must not count as done, nor be overwritten. Stops with one line instead."""
    for cell in cells:
        if cell.state != "done":
            continue
        try:
            recorded = read_json(cell.path, cell.path.parent)["data"]["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an older or partial record: nothing to compare
        current = load_dataset(cell.config.dataset, options.data_root, options.download).fingerprint
        if recorded != current:
            raise AlmabenchError(
                f"{cell.path} was computed on other data than {cell.config.dataset} holds now (data fingerprint "
                f"{recorded}, now {current}); run into another --out, or move that file away to recompute it")


def _warn_other_precision(cells: list[CellFile], precision: str) -> None:
    """Precision is not part of a cell's name (bf16 and fp32 are two roundings of one computation), so a
    cell done in the other one is kept: say so, rather than let the tables mix them unnoticed."""
    other = Counter(cell.detail for cell in cells if cell.state == "done" and cell.detail not in ("", precision))
    for recorded, count in sorted(other.items()):
        warnings.warn(f"{count} cell(s) in this folder were run in {recorded} and are kept; this run computes in "
                      f"{precision} (another --out runs them again in {precision})", stacklevel=4)
