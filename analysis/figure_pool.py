"""Figures drawn on every core: a report's figures are independent, so they are planned in the report's process
(each with its data and its file name, figure_files.FigureJob) and drawn by a pool of processes (joblib's loky).

Matplotlib holds a lock around its global state and most of a figure's cost is pure-Python drawing, so
threads would not help; processes do. A worker imports matplotlib, seaborn and pandas once (a few seconds on a
busy machine), so a small report is drawn in its own process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol, TypeVar

POOL_FROM = 16  # figures: fewer are drawn in this process, since starting the workers costs more than they save

T = TypeVar("T", covariant=True)


class Job(Protocol[T]):
    """Anything with a render() that draws and saves one figure (figure_files.FigureJob), and its rough cost."""

    @property
    def cost(self) -> float: ...

    def render(self) -> T: ...


def default_jobs() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _render(job: Job[T]) -> T:
    return job.render()


def render(jobs: Sequence[Job[T]], n_jobs: int | None = 1) -> list[T]:
    """Every job's render(), returned in the jobs' order: on n_jobs processes (None: default_jobs) where there are
    at least POOL_FROM jobs, in this process otherwise or at n_jobs 1. The pool gets the costliest jobs first, so
    that a large figure drawn last does not keep one worker busy while the others wait."""
    workers = min(default_jobs() if n_jobs is None else n_jobs, len(jobs))
    if workers <= 1 or len(jobs) < POOL_FROM:
        return [job.render() for job in jobs]
    from joblib import Parallel, delayed

    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].cost)  # stable: equal costs keep their order
    done = Parallel(n_jobs=workers, backend="loky")(delayed(_render)(jobs[i]) for i in order)
    results: dict[int, T] = dict(zip(order, done))
    return [results[i] for i in range(len(jobs))]
