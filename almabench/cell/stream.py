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


def validation_size(size: int, val_fraction: float) -> int:
    """The validating tail of a megabatch of `size`: val_fraction·size rounded half up, held inside 1..size-1."""
    return min(size - 1, max(1, math.floor(val_fraction * size + 0.5)))


def smallest_trainable_stream(megabatches: int, val_fraction: float) -> int:
    """The fewest images whose megabatches each train on at least one batch (two images: a batch of one is
    dropped, batch norm cannot train on it)."""
    size = 3
    while size - validation_size(size, val_fraction) < 2:
        size += 1
    return size * megabatches


def check_stream(n_train: int, megabatches: int, val_fraction: float, stream_images: int | None = None) -> None:
    """One line for a stream that cannot be cut: T < 1, a validation fraction outside (0, 1), a stream size the
    data cannot give, a stream_images whose megabatches train on less than one batch, or megabatches of fewer than
    two examples."""
    if megabatches < 1:
        raise AlmabenchError(f"megabatches must be at least 1, got {megabatches}")
    if not 0.0 < val_fraction < 1.0:
        raise AlmabenchError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if stream_images is not None:
        if not 1 <= stream_images <= n_train:
            raise AlmabenchError(f"stream_images must be in 1..{n_train:,} (the training images the dataset holds), "
                                 f"got {stream_images:,}")
        size = megabatch_size(stream_images, megabatches)
        trains = size - validation_size(size, val_fraction) if size >= 2 else size
        if trains < 2:  # zero SGD steps in a megabatch, and torch's scheduler warning
            raise AlmabenchError(
                f"stream_images = {stream_images:,} cut into {megabatches} megabatches trains on {trains} image(s) "
                f"per megabatch, less than one batch (two images; batch norm cannot train on one); use at least "
                f"{smallest_trainable_stream(megabatches, val_fraction):,}")
        n_train = stream_images
    if megabatch_size(n_train, megabatches) < 2:
        raise AlmabenchError(
            f"{megabatches} megabatches need at least {2 * megabatches} training examples (two per megabatch, "
            f"one to train and one to validate); the dataset has {n_train}"
        )


def make_stream(n_train: int, megabatches: int, seed: int, val_fraction: float = 0.1,
                layout: str = "shuffled", pool: Tensor | None = None) -> list[Megabatch]:
    """T equal megabatches of n // T examples, the last val_fraction·|M| (rounded half up) validating, laid out
    as `layout` says (LAYOUTS). n is n_train, or with `pool` (training indices, see stream_pool) len(pool): the
    layout then runs over the pool's positions, and the megabatches hold the pool's indices."""
    n = n_train if pool is None else len(pool)
    check_stream(n, megabatches, val_fraction)
    size = megabatch_size(n, megabatches)
    n_val = validation_size(size, val_fraction)
    stream = LAYOUTS.get(layout)(n, megabatches, seed, size - n_val, n_val)
    if pool is None:
        return stream
    return [Megabatch(train=pool[m.train], val=pool[m.val]) for m in stream]


POOL_SEED = 0  # one class-balanced order per dataset: every method and seed of a stream size sees the same images


def balanced_order(labels: Tensor, seed: int = POOL_SEED) -> Tensor:
    """Every training index once, class-balanced: each class is shuffled with `seed`, and the r-th image of every
    class comes before the (r+1)-th of any, classes in label order at equal r. The first N of it hold each
    class within one image of N/K (K classes), as long as no class runs out."""
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(labels), generator=generator)
    _, klass = torch.unique(labels[shuffled], return_inverse=True)
    by_class = torch.argsort(klass, stable=True)  # positions grouped by class, each group in shuffled order
    counts = torch.bincount(klass)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(klass)
    rank[by_class] = torch.arange(len(klass)) - torch.repeat_interleave(starts, counts)
    num_classes = len(counts)
    return shuffled[torch.argsort(rank * num_classes + klass, stable=True)]


def stream_pool(labels: Tensor, stream_images: int | None) -> Tensor | None:
    """The training indices a stream of `stream_images` draws from (None: the whole training set): the first N
    of balanced_order, the same for every seed, so paired-by-seed comparisons share their images."""
    return None if stream_images is None else balanced_order(labels)[:stream_images]


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
