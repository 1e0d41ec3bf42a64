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

from almabench.errors import AlmabenchError
from almabench.names import quoted

from .runs import final_metrics, group_name, hparams, run_name, step_scalars, step_wall_times, varying_keys

EXPERIMENT = "almabench"
METRIC_BATCH, PARAM_BATCH = 1000, 100  # the most MLflow takes in one log_batch
SEARCH_PAGE = 1000
SQLITE_HEADER = b"SQLite format 3\x00"


def store_uri(dest: Path) -> str:
    return f"sqlite:///{Path(dest).resolve() / 'mlflow.db'}"


def check_store(dest: Path) -> None:
    """One line, before MLflow opens it, where DEST/mlflow.db is a link (SQLite writes through it) or a file
    that is not a SQLite database (MLflow's answer is a long traceback)."""
    db = dest / "mlflow.db"
    if db.is_symlink():
        raise AlmabenchError(f"{quoted(db)} is a link: the store must be a file in --dest; pass --dest FOLDER to "
                             f"write elsewhere")
    if db.exists():
        with db.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
        if header and header != SQLITE_HEADER:
            raise AlmabenchError(f"{quoted(db)} is not an SQLite database (not an MLflow store); move it away or "
                                 f"pass --dest FOLDER to write elsewhere")


def runs_by_hash(client: Any, experiment_id: str) -> dict[str, list[str]]:
    """The ids of the experiment's runs by their config_hash tag, read page by page: matched here rather than in
    a filter string, so no value a result file holds is ever parsed as part of a query."""
    runs: dict[str, list[str]] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=SEARCH_PAGE, page_token=token)
        for run in page:
            runs.setdefault(run.data.tags.get("config_hash", ""), []).append(run.info.run_id)
        token = page.token
        if not token:
            return runs


def export(results: list[tuple[Path, dict[str, Any]]], root: Path, dest: Path) -> str:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # their INFO lines on creating the tables are no news to the user
        logging.getLogger(name).setLevel(logging.WARNING)

    dest.mkdir(parents=True, exist_ok=True)
    check_store(dest)
    client = MlflowClient(tracking_uri=store_uri(dest), registry_uri=store_uri(dest))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    first = varying_keys([result["config"] for _, result in results])
    earlier = runs_by_hash(client, experiment_id)
    for path, result in results:
        config, config_hash = result["config"], result["config_hash"]
        for run_id in earlier.get(config_hash, []):
            client.delete_run(run_id)
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
