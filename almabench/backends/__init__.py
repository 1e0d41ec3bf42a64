"""Where a grid's cells run: joblib backends by name, each with its check and its connection.

loky runs cells in worker processes on this machine; dask and ray send them to a cluster (at --scheduler, or
a local one), through joblib's Parallel; slurm submits them as a job array (almabench.backends.slurm), with no joblib.
Every backend runs the same run_and_store, so the same files come out. Adding one is a function below with its
registry line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from joblib import parallel_config

from almabench.backends.base import BACKENDS, Backend, check_backend
from almabench.errors import AlmabenchError

__all__ = ["BACKENDS", "Backend", "check_backend"]


@contextmanager
def _loky(scheduler: str | None, workers: int) -> Iterator[None]:
    with parallel_config(backend="loky"):
        yield


@contextmanager
def _dask(scheduler: str | None, workers: int) -> Iterator[None]:
    from dask.distributed import Client, LocalCluster

    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="10s", set_as_default=False)
        else:  # a cluster of this machine's cores: one cell per single-threaded worker process
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        raise AlmabenchError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        with parallel_config(backend="dask", client=client):
            yield
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


@contextmanager
def _ray(scheduler: str | None, workers: int) -> Iterator[None]:
    import ray
    from ray.util.joblib import register_ray

    register_ray()
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=scheduler or None, **({} if scheduler else {"num_cpus": workers}))
        except ConnectionError as exc:
            raise AlmabenchError(f"cannot reach the Ray cluster at {scheduler}: {exc}") from None
    try:
        with parallel_config(backend="ray"):
            yield
    finally:
        if started:
            ray.shutdown()


def _slurm_cells(*args: Any) -> Iterator[dict[str, Any]]:
    from almabench.backends.slurm import submit_and_wait

    return submit_and_wait(*args)


BACKENDS.register("loky")(Backend(_loky, cluster=False, scheduler=False))
BACKENDS.register("dask")(Backend(_dask, requires="dask.distributed", extra="dask"))
# Ray's joblib backend returns no generators: its cells are reported together at the end.
BACKENDS.register("ray")(Backend(_ray, requires="ray.util.joblib", extra="ray", yields_as_done=False))
# Slurm: one job of a job array a cell, submitted with submitit; the parent follows them in the results folder.
BACKENDS.register("slurm")(Backend(lambda scheduler, workers: nullcontext(), requires="submitit", extra="slurm",
                                   scheduler=False, submit=_slurm_cells,
                                   programs=("sbatch", "srun"), where="Slurm's, on a cluster's login node"))
