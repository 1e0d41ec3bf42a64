"""CIFAR-10 / CIFAR-100 in torchvision's on-disk layout (python pickles), read into tensors in one go.

The batches are pickles, and a pickle can name any function to call: a data root may come from anyone, and the
md5 check is only a warning, so the batches are read with BatchUnpickler, which admits only what the format
holds (dicts, lists, str, bytes, ints and numpy arrays) and refuses any other global with one line.
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from almabench.data.base import AUGMENTATION, DATASETS, Dataset
from almabench.errors import AlmabenchError
from almabench.names import quoted

# This project's offline copy of CIFAR-10 (its machines have no network), beside the clone: named in the hint
# where it exists, never elsewhere, where a user needs --download or the official files.
OFFLINE_BUILDER = Path(__file__).resolve().parents[3] / "shared" / "data" / "build-cifar10.py"


@dataclass(frozen=True)
class CifarLayout:
    name: str
    folder: str
    train_files: tuple[tuple[str, str], ...]  # (file name, official md5)
    test_files: tuple[tuple[str, str], ...]
    label_key: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    url: str
    archive: str
    archive_md5: str


def _layout(name: str, tv_class: Any, label_key: str, num_classes: int, mean, std) -> CifarLayout:
    return CifarLayout(
        name=name,
        folder=tv_class.base_folder,
        train_files=tuple(map(tuple, tv_class.train_list)),
        test_files=tuple(map(tuple, tv_class.test_list)),
        label_key=label_key,
        num_classes=num_classes,
        mean=mean,
        std=std,
        url=tv_class.url,
        archive=tv_class.filename,
        archive_md5=tv_class.tgz_md5,
    )


def _cifar_layouts() -> dict[str, CifarLayout]:
    from torchvision.datasets import CIFAR10, CIFAR100

    return {
        "cifar10": _layout("cifar10", CIFAR10, "labels", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        "cifar100": _layout(
            "cifar100", CIFAR100, "fine_labels", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
        ),
    }


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """_codecs.encode as a protocol-2 pickle uses it to hold bytes (latin-1 text), and nothing else."""
    if encoding.replace("-", "").lower() != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode to {encoding!r}")
    return text.encode("latin1")


# What a CIFAR batch's pickle names: ndarray's reconstruction (numpy 1 and 2 spell its module differently; a
# protocol-5 pickle, as a re-saved copy may be, builds it from a buffer), the array and dtype types, and the bytes
# of a protocol-2 pickle. Dicts, lists, str and ints need no global.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _RECONSTRUCT for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _FROMBUFFER for core in ("core", "_core")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class BatchUnpickler(pickle.Unpickler):
    """A pickle.Unpickler that admits only ALLOWED_GLOBALS: a batch that names anything else (os.system, a
    class with a __reduce__) is refused before that is imported or called."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"its pickle names {module}.{name}, which a CIFAR batch never holds "
                                         f"(refused: a batch is data, not code)") from None


def load_batch(path: Path) -> Any:
    """One batch file through BatchUnpickler; a refused or broken pickle is one line naming the file."""
    with open(path, "rb") as f:
        try:
            return BatchUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError) as exc:
            raise AlmabenchError(f"{quoted(path)} is not a readable CIFAR batch: {exc}") from None


def read_cifar(layout: CifarLayout, root: Path, download: bool = False) -> Dataset:
    """Read torchvision's CIFAR pickles under root/<folder>; an md5 mismatch is a warning, not a failure."""
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    folder = root / layout.folder
    files = layout.train_files + layout.test_files
    missing = [f for f, _ in files if not (folder / f).is_file()]
    if missing and download:
        download_and_extract_archive(layout.url, str(root), filename=layout.archive, md5=layout.archive_md5)
        missing = [f for f, _ in files if not (folder / f).is_file()]
    if missing:
        offline = (f", or make it offline with python {os.path.relpath(OFFLINE_BUILDER)} {quoted(root)}"
                   if layout.name == "cifar10" and OFFLINE_BUILDER.is_file() else "")
        raise AlmabenchError(
            f"{layout.name} not found: {quoted(folder)} lacks {', '.join(missing)}; rerun with --download where a "
            f"network exists, unpack the official {layout.archive} into {quoted(root)}, or pass --data-root where "
            f"it is"
            f"{offline}"
        )
    mismatched = [f for f, md5 in files if not check_integrity(str(folder / f), md5)]
    notes: tuple[str, ...] = ()
    if mismatched:
        notes = (f"md5 differs from the official release for {', '.join(mismatched)} (not the official files)",)
        warnings.warn(f"{layout.name}: {notes[0]}; using them anyway, the data fingerprint is recorded", stacklevel=2)

    def read(names: tuple[tuple[str, str], ...]) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for file_name, _ in names:
            entry = load_batch(folder / file_name)
            if not isinstance(entry, dict) or "data" not in entry or layout.label_key not in entry:
                raise AlmabenchError(f"{quoted(folder / file_name)} is not a {layout.name} batch (no 'data'/"
                                     f"{layout.label_key!r})")
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry[layout.label_key], dtype=np.int64))
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    x_train, y_train = read(layout.train_files)
    x_test, y_test = read(layout.test_files)
    return Dataset(
        name=layout.name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=layout.num_classes,
        mean=layout.mean,
        std=layout.std,
        crop_padding=AUGMENTATION[layout.name].crop_padding,
        source=str(folder),
        checksum_ok=not mismatched,
        notes=notes,
        flip=AUGMENTATION[layout.name].flip,
    )


@DATASETS.register("cifar10")
def load_cifar10(root: Path, download: bool) -> Dataset:
    return read_cifar(_cifar_layouts()["cifar10"], root, download)


@DATASETS.register("cifar100")
def load_cifar100(root: Path, download: bool) -> Dataset:
    return read_cifar(_cifar_layouts()["cifar100"], root, download)
