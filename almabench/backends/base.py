"""What a backend is (Backend) and the registry of them (BACKENDS): apart from the backends themselves, so that a
backend module (Slurm's) and the grid's checks can name them without importing every backend."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

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
