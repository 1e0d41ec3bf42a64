"""What every data source gives: a Dataset of uint8 tensors, its fingerprint, and the registry of named sources.

Every dataset is held as `x` uint8 N×C×H×W and `y` int64, so training can gather batches by index on the
device instead of decoding images one by one. A fingerprint of the four arrays goes into every result, so a
number can be traced to the exact pixels it came from (the offline CIFAR copy has JPEG pixels, for example).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from torch import Tensor

from almabench.registry import Registry, callable_entry


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image classification dataset held in memory as tensors.

    crop_padding and flip are the dataset's own augmentation defaults (a run's config may override them). flip is
    on only for CIFAR-10/100 (natural photographs); off for digits (a mirrored digit is another digit) and for the
    user's own data (.npz, ImageFolder), where a mirrored image may be another class (text, digits, arrows):
    users who know their images may be mirrored set flip = true (--set flip=true).
    """

    name: str
    x_train: Tensor  # uint8, N×C×H×W
    y_train: Tensor  # int64, N
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    mean: tuple[float, ...]  # per channel, in [0, 1]
    std: tuple[float, ...]
    crop_padding: int  # default padding of the random-crop augmentation
    flip: bool  # default of the random horizontal-flip augmentation
    source: str  # where it was read from
    checksum_ok: bool | None = None  # None: the format carries no checksum
    notes: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.x_train.shape[2]), int(self.x_train.shape[3])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.x_train, self.y_train, self.x_test, self.y_test)

    def describe(self) -> dict:
        """Provenance recorded in every result file."""
        return {
            "name": self.name,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "n_train": self.n_train,
            "n_test": int(self.x_test.shape[0]),
            "num_classes": self.num_classes,
            "channels": self.channels,
            "image_size": list(self.image_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "flip": self.flip,
            "checksum_ok": self.checksum_ok,
            "notes": list(self.notes),
        }


def fingerprint(*arrays: Tensor) -> str:
    """sha256 over shapes, dtypes and bytes of the arrays (first 16 hex digits)."""
    digest = hashlib.sha256()
    for array in arrays:
        a = array.detach().cpu().contiguous().numpy()
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()[:16]


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, scaled to [0, 1]."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double() / 255.0
    std = flat.std(dim=1).clamp_min(1e-3)
    return tuple(round(v, 6) for v in flat.mean(dim=1).tolist()), tuple(round(v, 6) for v in std.tolist())


def default_data_root() -> Path:
    """$ALMABENCH_DATA, else the user cache folder ($XDG_CACHE_HOME or ~/.cache)/almabench/data."""
    if os.environ.get("ALMABENCH_DATA"):
        return Path(os.environ["ALMABENCH_DATA"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "almabench" / "data"


Loader = Callable[[Path, bool], Dataset]
DATASETS: Registry[Loader] = Registry("dataset", "almabench.datasets", callable_entry)


@dataclass(frozen=True)
class Augmentation:
    """A dataset's own augmentation recipe: what a cell uses wherever its config leaves flip/crop_padding unset."""

    flip: bool
    crop_padding: int  # pixels of zero padding before the random crop


# Known without reading a pixel, so that cells can be named (and `status` can count them) before data loads.
AUGMENTATION = {
    "digits": Augmentation(flip=False, crop_padding=1),  # a mirrored digit is another digit; 8 px images
    "cifar10": Augmentation(flip=True, crop_padding=4),  # the paper's: crop 32 with padding 4, flip
    "cifar100": Augmentation(flip=True, crop_padding=4),
}
