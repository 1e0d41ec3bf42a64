"""What every tracker writer shows of a cell, in one place, so that an export and a live log of the same cell
look alike: its run name and group, its per-megabatch scalars, its hyperparameters and its final metrics.

Names group the runs by block in the trackers' run selectors: `cifar10/convnet/T=8/epochs=2/app/seed=0-3a6706ce`,
the config hash's first eight digits keeping two cells that differ elsewhere (lr, ...) apart. A setting the
shipped specs vary (pruner, tau, ...) is added to the leaf where it differs from its default.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Protocol

from almabench.cell.config import NAMED_WITHOUT, RunConfig
from almabench.grid.specs import DESCRIBED_WHEN_SET as NAMED_WHEN_SET  # a run's name shows what a run's lines show

from .dest import part

DEFAULTS = {**RunConfig().to_dict(), **NAMED_WITHOUT}  # a global scope is named as the hash names it: not at all


def group_name(config: dict[str, Any]) -> str:
    """The block a cell belongs to: dataset/arch/T=../epochs=.. (W&B's group; the top of TensorBoard's run)."""
    return (f"{part(config['dataset'])}/{part(config['arch'])}/T={part(config['megabatches'])}"
            f"/epochs={part(config['epochs'])}")


def run_name(config: dict[str, Any], config_hash: str) -> str:
    """group/method/seed=N[,key=value...]-hash8: unique per cell, readable, grouped by block."""
    extras = "".join(f",{k}={part(config[k])}" for k in NAMED_WHEN_SET
                     if k in config and config[k] != DEFAULTS[k])
    return f"{group_name(config)}/{part(config['method'])}/seed={part(config['seed'])}{extras}-{part(config_hash[:8])}"


def leaf_name(config: dict[str, Any], config_hash: str) -> str:
    """The run's name inside its group (W&B's run name)."""
    return run_name(config, config_hash).removeprefix(group_name(config) + "/")


def step_scalars(step: dict[str, Any], cer_so_far: int) -> dict[str, float]:
    """The scalars of one megabatch, by tag: accuracies, gap, densities, CER so far, what is kept, per-layer
    density, and the step's time. Counts are kept as counts (a live log knows no totals)."""
    scalars = {
        "accuracy/test": step["test_accuracy"],
        "accuracy/train": step["train_accuracy"],
        "accuracy/validation": step["val_accuracy"],
        "gap": step["gap"],
        "density/measured": step["density"],
        "density/target": step["target_density"],
        "cer_so_far": cer_so_far,
        "kept/params": step["params_remaining"],
        "kept/flops": step["flops_remaining"],
        "time/step_seconds": step["seconds"],
        "time/images_per_second": step["images_per_second"],
    }
    scalars.update({f"layer_density/{name}": d for name, d in step.get("layer_density", {}).items()})
    return {tag: float(value) for tag, value in scalars.items()}


FINAL_METRICS = {"final/test_accuracy": "final_test_accuracy", "final/cer": "cer", "final/density": "final_density",
                 "final/gap": "final_gap", "final/mean_gap": "mean_gap"}


def final_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The cell's headline numbers, by tag (TensorBoard's hparams metrics, W&B's summary, MLflow's metrics)."""
    return {tag: float(result[key]) for tag, key in FINAL_METRICS.items()}


# The settings a grid varies, in the order a reader looks for them: a tracker's table opens on these (and on any
# other key that varies across an export), the settings every cell shares after them.
FIRST_KEYS = ("method", "seed", "tau", "epochs", "megabatches", "pruner", "scope", "stream_images", "dataset", "arch")


def varying_keys(configs: list[dict[str, Any]]) -> list[str]:
    """The config keys whose values differ across configs (an export's cells): FIRST_KEYS first, in their
    order, then the others alphabetically."""
    full = [{**DEFAULTS, **c} for c in configs]
    varying = {k for k in DEFAULTS if len({repr(c.get(k)) for c in full}) > 1}
    return [k for k in FIRST_KEYS if k in varying] + sorted(varying - set(FIRST_KEYS))


def hparams(config: dict[str, Any], config_hash: str,
            first: tuple[str, ...] | list[str] = FIRST_KEYS) -> dict[str, bool | int | float | str]:
    """The config as hyperparameters, in the order trackers show them: the keys in `first` (those an export
    varies, varying_keys; FIRST_KEYS for a live log, which sees one cell), the config hash, then the rest in
    config order. Scalars as they are, lists as text, unset values as 'unset'."""
    def plain(value: Any) -> bool | int | float | str:
        if value is None:
            return "unset"
        return value if isinstance(value, (bool, int, float, str)) else str(value)

    values = {k: plain(v) for k, v in {**DEFAULTS, **config}.items()}
    head = [k for k in first if k in values]
    return {**{k: values[k] for k in head}, "config_hash": config_hash,
            **{k: v for k, v in values.items() if k not in head}}


def shared_prefix(names: list[str]) -> str:
    """The leading path components ('cifar10/convnet/T=8/') every run name shares, which a run list would show
    on every line before the method and seed; the method and the seed are never part of it, so even one run (or runs
    of one method) shows them."""
    parts = [name.split("/")[:-2] for name in names]  # the last two are the method and the seed
    common: list[str] = []
    for level in zip(*parts) if parts else []:
        if len(set(level)) > 1:
            break
        common.append(level[0])
    return "".join(f"{c}/" for c in common)


def step_wall_times(result: dict[str, Any]) -> list[float]:
    """When each megabatch ended, in seconds since the epoch, rebuilt from the record: the start, the start-up
    (where recorded), then each step's seconds."""
    start = dt.datetime.fromisoformat(result["started_at"]).timestamp()
    clock = start + float((result.get("seconds_by_part") or {}).get("startup", 0.0))
    times = []
    for step in result["steps"]:
        clock += float(step["seconds"])
        times.append(clock)
    return times


class CellRun(Protocol):
    """One cell's run in a tracker, fed megabatch by megabatch (live) or from its finished file (export)."""

    def step(self, step: dict[str, Any], cer_so_far: int, wall_time: float | None = None) -> None: ...

    def finish(self, result: dict[str, Any], wall_time: float | None = None) -> None: ...

    def close(self) -> None: ...


def replay_steps(run: CellRun, steps: list[dict[str, Any]], wall_times: list[float] | None = None) -> int:
    """Feed recorded steps to a run (the export, or a resumed live log catching up); returns the CER so far."""
    cer = 0
    for i, step in enumerate(steps):
        cer += step["test_errors"]
        run.step(step, cer, wall_times[i] if wall_times else None)
    return cer


def export_runs(open_run: Callable[..., CellRun], results: list[tuple[Any, dict[str, Any]]], dest: Any) -> int:
    """Every result as one finished run, its steps at the wall times rebuilt from the record; returns the count.
    open_run(dest, config, config_hash, replace=True, first=...) replaces what an earlier export wrote for the
    cell; `first` are the keys that vary across the export (varying_keys), which its hparams list first."""
    first = varying_keys([result["config"] for _, result in results])
    for _, result in results:
        run = open_run(dest, result["config"], result["config_hash"], replace=True, first=first)
        try:
            times = step_wall_times(result)
            replay_steps(run, result["steps"], times)
            run.finish(result, times[-1])
        finally:
            run.close()
    return len(results)
