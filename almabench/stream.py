"""The ALMA stream: the training set shuffled with the seed and cut into T equal megabatches.

Each megabatch is split 90/10 into train and validation parts; the replay policy decides which megabatches
step t trains (and validates) on. The test set is never part of the stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from almabench.errors import AlmabenchError
from almabench.registry import Registry


@dataclass(frozen=True)
class Megabatch:
    train: Tensor  # int64 indices into the training set
    val: Tensor

    @property
    def size(self) -> int:
        return len(self.train) + len(self.val)


def megabatch_size(n_train: int, megabatches: int) -> int:
    """Equal megabatches: the n_train mod T left-over examples are dropped (SPEC: T equal megabatches)."""
    return n_train // megabatches


def check_stream(n_train: int, megabatches: int, val_fraction: float) -> None:
    if megabatches < 1:
        raise AlmabenchError(f"megabatches must be at least 1, got {megabatches}")
    if not 0.0 < val_fraction < 1.0:
        raise AlmabenchError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if megabatch_size(n_train, megabatches) < 2:
        raise AlmabenchError(
            f"{megabatches} megabatches need at least {2 * megabatches} training examples (two per megabatch, "
            f"one to train and one to validate); the dataset has {n_train}"
        )


def make_stream(n_train: int, megabatches: int, seed: int, val_fraction: float = 0.1,
                layout: str = "shuffled") -> list[Megabatch]:
    """T equal megabatches of n_train // T examples, the last val_fraction·|M| (rounded half up) validating,
    laid out as `layout` says (LAYOUTS)."""
    check_stream(n_train, megabatches, val_fraction)
    size = megabatch_size(n_train, megabatches)
    n_val = min(size - 1, max(1, math.floor(val_fraction * size + 0.5)))  # round half up
    return LAYOUTS.get(layout)(n_train, megabatches, seed, size - n_val, n_val)


# A layout maps (n_train, T, seed, train part size, validation part size) to the T megabatches.
Layout = Callable[[int, int, int, int, int], list[Megabatch]]
LAYOUTS: Registry[Layout] = Registry("stream layout")


@LAYOUTS.register("shuffled")
def shuffled_layout(n_train: int, megabatches: int, seed: int, n_fit: int, n_val: int) -> list[Megabatch]:
    """The paper: megabatch t is the t-th slice of a seeded permutation; its tail validates."""
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    size = n_fit + n_val
    chunks = [order[t * size : (t + 1) * size] for t in range(megabatches)]
    return [Megabatch(train=chunk[:n_fit], val=chunk[n_fit:]) for chunk in chunks]


@LAYOUTS.register("dataset-order")
def dataset_order_layout(n_train: int, megabatches: int, seed: int, n_fit: int, n_val: int) -> list[Megabatch]:
    """The released code: no shuffle, no seed. Train parts are consecutive slices from the head of the training
    set, validation parts consecutive slices of the T·n_val examples after them (for CIFAR-10 at T = 8: train
    0-5,624, 5,625-11,249, ...; validation 45,000-45,624, 45,625-46,249, ...)."""
    tail = megabatches * n_fit
    return [Megabatch(train=torch.arange(t * n_fit, (t + 1) * n_fit),
                      val=torch.arange(tail + t * n_val, tail + (t + 1) * n_val)) for t in range(megabatches)]


# A replay policy maps the 1-based step t to the megabatches (0-based) that step t trains on.
ReplayPolicy = Callable[[int], range]
REPLAYS: Registry[ReplayPolicy] = Registry("replay policy")
REPLAYS.register("full")(lambda t: range(0, t))  # M_1 ∪ … ∪ M_t
REPLAYS.register("none")(lambda t: range(t - 1, t))  # M_t only
REPLAYS.register("previous")(lambda t: range(max(0, t - 2), t))  # M_{t-1} ∪ M_t


def step_data(stream: list[Megabatch], step: int, replay: str = "full") -> Megabatch:
    """The training and validation indices of 1-based step t under the replay policy."""
    chosen = [stream[i] for i in REPLAYS.get(replay)(step)]
    return Megabatch(train=torch.cat([m.train for m in chosen]), val=torch.cat([m.val for m in chosen]))
