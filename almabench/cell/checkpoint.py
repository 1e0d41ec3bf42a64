"""A cell's state after each megabatch, so that a killed run resumes where it stopped with the same result.

Saved atomically with torch.save, loaded with weights_only=True: tensors, generator states and plain types only
(the step records travel as a JSON string), no pickle of arbitrary objects.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from almabench.cell.config import RunConfig, RunOptions
from almabench.cell.device import resolve_device
from almabench.cell.train import CellState
from almabench.data import load_dataset
from almabench.errors import AlmabenchError
from almabench.names import quoted
from almabench.results.provenance import environment, with_plugins
from almabench.results.store import checkpoint_path, load_checkpoint, peek_checkpoint, save_checkpoint


class OtherThreads(AlmabenchError):
    """A checkpoint of this very cell computed at another torch thread count. Resuming would record numbers
    partly computed at the other count under this one (files are only repeatable at one count), so the run
    stops instead, naming both: not the cell's failure (no failure record), and the checkpoint is kept. The
    arguments are plain values, so that it pickles back from a worker."""

    def __init__(self, path: str, step: int, saved: int, now: int) -> None:
        super().__init__(path, step, saved, now)
        self.path, self.step, self.saved, self.now = path, step, saved, now

    def __str__(self) -> str:
        done = "megabatch 1" if self.step == 1 else f"megabatches 1-{self.step}"
        return (f"{quoted(self.path)} holds {done} of its cell computed at {self.saved} torch "
                f"thread(s), and this run uses {self.now}: a resume must use the same count; rerun with --threads "
                f"{self.saved} to resume it, or delete it to start that cell over at {self.now}")


def checkpoint_key(config: RunConfig, options: RunOptions, fingerprint: str, env: dict[str, Any]) -> str:
    """What a checkpoint must match to be resumed: the same cell, code (its fingerprint, not the git commit: a
    commit that leaves the computing code alone must not restart hours of work; and the fingerprints of the
    plugins the cell runs, env["plugins"], where it runs any), device, settings and data.
    The thread count is not in it: a checkpoint of another count is refused with a line (OtherThreads), never
    silently started over."""
    return json.dumps({
        "config_hash": config.hash(), "config": config.to_dict(), "data_fingerprint": fingerprint,
        **{k: env[k] for k in ("almabench", "code", "torch", "device", "plugins") if k in env},
        "options": {k: v for k, v in vars(options).items()
                    if k not in ("data_root", "download", "threads", "plugins")},
    }, sort_keys=True)


def check_threads(path: Path, state: dict[str, Any], key: str, threads: int) -> None:
    """Raise OtherThreads where `state` (the checkpoint at path) is this cell's (its key) at another count."""
    saved = state.get("torch_threads")
    if state.get("key") == key and isinstance(saved, int) and saved != threads:
        raise OtherThreads(str(path), int(state["step"]), saved, threads)


def check_resumes(todo: list[RunConfig], options: RunOptions, out: Path, threads: int) -> None:
    """Before any cell of a grid runs: a checkpoint in out/ that its cell would resume, computed at another torch
    thread count than `threads`, stops the run with one line (OtherThreads)."""

    env: dict[str, Any] = {}
    for config in todo:
        path = checkpoint_path(out, config)
        state = peek_checkpoint(path)
        if state is not None:
            env = env or environment(resolve_device(options.device))  # asks git: once, and only if needed
            fingerprint = load_dataset(config.dataset, options.data_root, options.download).fingerprint
            key = checkpoint_key(config, options, fingerprint, with_plugins(env, config))
            check_threads(path, state, key, threads)


class CellCheckpoint:
    """Everything a cell carries from one megabatch to the next, saved after each, restored on resume.

    The state is the model (weights and batch-norm buffers), the masks, the two generators (training batches
    and augmentation on the run's device; sampling of π_t, random scores and SET's regrowth on the CPU), the
    global RNG states, the step records so far, the method's own state (Method.state_dict: IMP's rewind point)
    and the optimiser where the protocol carries it through the stream (the paper's makes a new one at every
    step). A fresh model re-seeds the global RNG, so this is all that step t+1 depends on.
    """

    def __init__(self, path: Path, config: RunConfig, options: RunOptions, device: torch.device,
                 fingerprint: str, env: dict[str, Any]) -> None:
        self.path = Path(path)
        self.device = device
        self.key = checkpoint_key(config, options, fingerprint, env)

    def load(self) -> dict[str, Any] | None:
        try:
            state = load_checkpoint(self.path)
        except ValueError as exc:
            warnings.warn(f"checkpoint {self.path} is {exc}; the cell starts from its first step", stacklevel=2)
            return None
        if state is None:
            return None
        check_threads(self.path, state, self.key, torch.get_num_threads())
        if state.get("key") != self.key:
            warnings.warn(f"checkpoint {self.path} was written by other code, settings or data; the cell starts "
                          f"from its first step", stacklevel=2)
            return None
        return state

    def restore(self, state: dict[str, Any], cell: CellState) -> tuple[list[dict[str, Any]], dt.datetime, float]:
        """Put the saved state into `cell`; returns the step records, the start time and the seconds spent."""
        cell.model.load_state_dict(state["model"])
        if cell.optimiser is not None:
            cell.optimiser.load_state_dict(state["optimiser"])
        cell.masks.set(state["masks"])
        cell.train_generator.set_state(state["train_generator"])
        cell.method_generator.set_state(state["method_generator"])
        cell.method.load_state_dict(state["method"])
        torch.set_rng_state(state["global_rng"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        cell.step = int(state["step"])
        started = dt.datetime.fromisoformat(state["started_at"])
        return json.loads(state["steps"]), started, float(state["seconds"])

    def save(self, cell: CellState, steps: list[dict[str, Any]], started: dt.datetime, seconds: float) -> None:
        state = {
            "key": self.key,
            "step": len(steps),
            "model": cell.model.state_dict(),
            "masks": dict(cell.masks.masks),
            "train_generator": cell.train_generator.get_state(),
            "method_generator": cell.method_generator.get_state(),
            "method": cell.method.state_dict(),
            "global_rng": torch.get_rng_state(),
            "steps": json.dumps(steps),  # JSON types only: a string keeps weights_only loading possible
            "started_at": started.isoformat(),
            "seconds": seconds,
            "torch_threads": torch.get_num_threads(),  # not in the key: a resume at another count is refused
        }
        if cell.optimiser is not None:  # carried through the stream (the released protocol)
            state["optimiser"] = cell.optimiser.state_dict()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        save_checkpoint(self.path, state)
