"""--to mlflow: one MLflow run per cell in a local SQLite store, DEST/mlflow.db (MLflow has deprecated its
file store), in the experiment "almabench".

Params are the cell's config (logged with the keys that vary across the export first), metrics the
per-megabatch scalars (step = megabatch t, timestamps rebuilt from the record) and the final metrics, tags the
block (`block`, and dataset, arch, T, method, seed, config hash and file). Exporting a cell again replaces its
earlier run (found by its config-hash tag).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .runs import final_metrics, group_name, hparams, run_name, step_scalars, step_wall_times, varying_keys

EXPERIMENT = "almabench"
METRIC_BATCH, PARAM_BATCH = 1000, 100  # the most MLflow takes in one log_batch


def store_uri(dest: Path) -> str:
    return f"sqlite:///{Path(dest).resolve() / 'mlflow.db'}"


def export(results: list[tuple[Path, dict[str, Any]]], root: Path, dest: Path) -> str:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # their INFO lines on creating the tables are no news to the user
        logging.getLogger(name).setLevel(logging.WARNING)

    dest.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=store_uri(dest), registry_uri=store_uri(dest))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    first = varying_keys([result["config"] for _, result in results])
    for path, result in results:
        config, config_hash = result["config"], result["config_hash"]
        for old in client.search_runs([experiment_id], f"tags.config_hash = '{config_hash}'"):
            client.delete_run(old.info.run_id)
        times = [int(1000 * t) for t in step_wall_times(result)]
        tags = {"block": group_name(config), "dataset": str(config["dataset"]), "arch": str(config["arch"]),
                "T": str(config["megabatches"]), "method": str(config["method"]), "seed": str(config["seed"]),
                "config_hash": config_hash, "file": path.relative_to(root).as_posix()}
        run = client.create_run(experiment_id, start_time=times[0] - int(1000 * result["steps"][0]["seconds"]),
                                tags=tags, run_name=run_name(config, config_hash))
        metrics, cer = [], 0
        for step, time_ms in zip(result["steps"], times):
            cer += step["test_errors"]
            metrics += [Metric(tag, value, time_ms, int(step["step"]))
                        for tag, value in step_scalars(step, cer).items()]
        last = int(result["steps"][-1]["step"])
        metrics += [Metric(tag, value, times[-1], last) for tag, value in final_metrics(result).items()]
        params = [Param(k, str(v)) for k, v in hparams(config, config_hash, first).items()]
        for i in range(0, len(params), PARAM_BATCH):
            client.log_batch(run.info.run_id, params=params[i:i + PARAM_BATCH])
        for i in range(0, len(metrics), METRIC_BATCH):
            client.log_batch(run.info.run_id, metrics=metrics[i:i + METRIC_BATCH])
        client.set_terminated(run.info.run_id, end_time=times[-1])
    return f"{len(results)} runs in {store_uri(dest)}"
