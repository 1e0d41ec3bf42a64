"""Where a grid's cells run: joblib backends by name, each with its check and its connection.

loky runs cells in worker processes on this machine; dask and ray send them to a cluster (at --scheduler, or
a local one), through joblib's Parallel; slurm submits them as a job array (almabench.slurm), with no joblib.
Every backend runs the same run_and_store, so the same files come out. Adding one is a function below with its
registry line.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from joblib import parallel_config

from almabench.errors import AlmabenchError
from almabench.registry import Registry


@dataclass(frozen=True)
class Backend:
    """connect(scheduler, workers) opens joblib's parallel_config (and the cluster connection) for a run."""

    connect: Callable[[str | None, int], AbstractContextManager[None]]
    requires: str = ""  # the module it imports; missing: one line naming the extra to install
    extra: str = ""
    cluster: bool = True  # runs on a cluster (at --scheduler, or a local one); --jobs -1: all its workers
    yields_as_done: bool = True  # False: joblib hands back every cell's result together at the end
    scheduler: bool = True  # takes --scheduler
    # runs the cells itself instead of joblib (Slurm): submit(todo, options, out, jobs, settings, events, logs) yields
    # each cell's outcome as run_and_store's; the cells' threads are theirs to choose (not this machine's cores)
    submit: Callable[..., Iterator[dict[str, Any]]] | None = None
    programs: tuple[str, ...] = ()  # the programs it needs on PATH (submitit's Slurm executor runs srun as well)
    where: str = ""  # where one finds them

    def check(self, name: str, scheduler: str | None) -> None:
        """The package is installed and the options make sense: checked before any cell runs."""
        if scheduler and not self.scheduler:
            takers = " or ".join(n for n in BACKENDS if BACKENDS.get(n).scheduler)
            raise AlmabenchError(f"--scheduler is for --backend {takers}, not {name}")
        if self.requires:
            try:
                __import__(self.requires)
            except ImportError:
                raise AlmabenchError(f"--backend {name} needs {self.extra.capitalize()}: "
                                     f"pip install 'almabench[{self.extra}]'") from None
        missing = [p for p in self.programs if shutil.which(p) is None]
        if missing:
            raise AlmabenchError(f"--backend {name} needs {' and '.join(self.programs)} on PATH ({self.where}); "
                                 f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not there")


BACKENDS: Registry[Backend] = Registry("backend")


def check_backend(name: str, scheduler: str | None) -> None:
    BACKENDS.get(name).check(name, scheduler)


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
    from almabench.slurm import submit_and_wait

    return submit_and_wait(*args)


BACKENDS.register("loky")(Backend(_loky, cluster=False, scheduler=False))
BACKENDS.register("dask")(Backend(_dask, requires="dask.distributed", extra="dask"))
# Ray's joblib backend returns no generators: its cells are reported together at the end.
BACKENDS.register("ray")(Backend(_ray, requires="ray.util.joblib", extra="ray", yields_as_done=False))
# Slurm: one job of a job array a cell, submitted with submitit; the parent follows them in the results folder.
BACKENDS.register("slurm")(Backend(lambda scheduler, workers: nullcontext(), requires="submitit", extra="slurm",
                                   scheduler=False, submit=_slurm_cells,
                                   programs=("sbatch", "srun"), where="Slurm's, on a cluster's login node"))
