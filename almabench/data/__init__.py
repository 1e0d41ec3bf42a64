"""Datasets as uint8 tensors loaded once: the embedded default, CIFAR-10/100 on disk, and the user's own data.

One module per source, as methods are: digits and cifar register their loaders in DATASETS (base); a path
is the user's own data, an .npz file (npz) or an ImageFolder tree (image_folder). load_dataset is the one way
in, by name or path, cached.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from almabench.data import cifar, digits  # noqa: F401  (registration)
from almabench.data.base import (
    AUGMENTATION,
    DATASETS,
    Augmentation,
    Dataset,
    Loader,
    channel_stats,
    default_data_root,
    fingerprint,
)
from almabench.data.cifar import CifarLayout, read_cifar
from almabench.data.image_folder import load_image_folder
from almabench.data.npz import load_npz
from almabench.errors import AlmabenchError
from almabench.names import quoted

__all__ = [
    "AUGMENTATION", "DATASETS", "Augmentation", "CifarLayout", "Dataset", "Loader", "augmentation_of", "channel_stats",
    "default_data_root", "fingerprint", "is_known_dataset", "load_dataset", "load_image_folder", "load_npz",
    "normalise_dataset_name", "read_cifar",
]


def augmentation_of(name: str, root: str | Path = "", download: bool = False) -> Augmentation:
    """The dataset's recipe: from AUGMENTATION for the shipped datasets, else read off the loaded data."""
    if name in AUGMENTATION:
        return AUGMENTATION[name]
    data = load_dataset(name, root, download)
    return Augmentation(data.flip, data.crop_padding)


def load_dataset(name: str, root: str | Path = "", download: bool = False) -> Dataset:
    """A registered dataset by name, or the user's own data by path (an .npz file or an ImageFolder tree)."""
    root_ = str(Path(root).expanduser()) if root else str(default_data_root())
    return _load_cached(normalise_dataset_name(name), root_, download)


def normalise_dataset_name(name: str) -> str:
    """One spelling per dataset: a registered name as is, a path with os.path.normpath (still relative if it was),
    so that ./data/x.npz and data/x.npz are the same dataset in a config and its hash."""
    return name if name in DATASETS else os.path.normpath(name)


@lru_cache(maxsize=4)
def _load_cached(name: str, root: str, download: bool) -> Dataset:
    if name in DATASETS:
        return DATASETS.get(name)(Path(root), download)
    path = Path(name).expanduser()
    if path.suffix == ".npz":
        if not path.is_file():
            raise AlmabenchError(f"dataset file {quoted(path)} does not exist")
        return load_npz(path)
    if path.is_dir():
        return load_image_folder(path)
    raise AlmabenchError(DATASETS.unknown(name) + ", or a path to an .npz file or an ImageFolder tree")


def is_known_dataset(name: str) -> bool:
    path = Path(name).expanduser()
    return name in DATASETS or (path.suffix == ".npz" and path.is_file()) or path.is_dir()
