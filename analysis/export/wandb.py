"""--to wandb (and `run --log wandb`): one offline W&B run per cell, never a connection to a server.

Runs are made with mode "offline" (WANDB_MODE=offline is set too) under DEST/wandb/offline-run-*-<id>, the
id being the cell's config hash, group = runs.group_name (the block), name = the rest of runs.run_name,
config = the cell's config (the keys that vary across an export first), step = megabatch t, summary = the final
metrics. `wandb sync` uploads them later.
A resumed cell opens a second offline run of the same id and logs its recorded steps again: W&B keeps the
first value logged at a step and syncs the run's files in order of start time, so every step is there once.
An export removes the earlier offline runs of the cells it writes.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from almabench.results.validate import HASH_PATTERN

from .dest import inside, tracker_env
from .runs import FIRST_KEYS, export_runs, final_metrics, group_name, hparams, leaf_name, step_scalars

PROJECT = "almabench"
OFFLINE_RUN = re.compile(r"offline-run-\d{8}_\d{6}-[0-9a-f]{16}")


def earlier_runs(runs: Path, config_hash: str) -> list[Path]:
    """The offline runs W&B made for this cell under runs/ (offline-run-YYYYMMDD_HHMMSS-<hash>): folders, never
    a link or anything else whose name merely matches."""
    if not HASH_PATTERN.fullmatch(config_hash) or not runs.is_dir():
        return []
    return [old for old in runs.iterdir() if OFFLINE_RUN.fullmatch(old.name) and old.name.endswith(f"-{config_hash}")
            and old.is_dir() and not old.is_symlink()]


class WandbRun:
    """One cell's offline W&B run under dest/wandb."""

    def __init__(self, dest: Path, config: dict[str, Any], config_hash: str, replace: bool = False,
                 first: tuple[str, ...] | list[str] = FIRST_KEYS) -> None:
        os.environ["WANDB_MODE"] = "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.update(tracker_env(dest))  # a live log's process: W&B's own files under dest, never $HOME
        import wandb

        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        runs = inside(dest, dest / "wandb")  # W&B writes its runs there: a link there must not lead elsewhere
        if replace:
            for old in earlier_runs(runs, config_hash):
                shutil.rmtree(old)
        self.run = wandb.init(
            dir=str(dest), project=PROJECT, id=config_hash, group=group_name(config),
            name=leaf_name(config, config_hash), job_type=str(config["method"]),
            config=hparams(config, config_hash, first),
            mode="offline", reinit="create_new",
            settings=wandb.Settings(console="off", save_code=False, disable_git=True, x_disable_stats=True),
        )

    def step(self, step: dict[str, Any], cer_so_far: int, wall_time: float | None = None) -> None:
        self.run.log(step_scalars(step, cer_so_far), step=int(step["step"]))

    def finish(self, result: dict[str, Any], wall_time: float | None = None) -> None:
        self.run.summary.update(final_metrics(result))

    def close(self) -> None:
        self.run.finish()


def export(results: list[tuple[Path, dict[str, Any]]], root: Path, dest: Path) -> str:
    n = export_runs(WandbRun, results, dest)
    if n:
        import wandb

        wandb.teardown()  # finish() can return before W&B's service has flushed the run files; teardown waits
    return f"{n} offline runs in {dest / 'wandb'}"


LIVE_RUN = WandbRun  # what `almabench run --log` opens for each cell (almabench.grid.watch)
