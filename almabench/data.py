"""Datasets as uint8 tensors loaded once: the embedded default, CIFAR-10/100 on disk, and the user's own data.

Every dataset is held as `x` uint8 N×C×H×W and `y` int64, so training can gather batches by index on the
device instead of decoding images one by one. A fingerprint of the four arrays goes into every result, so a
number can be traced to the exact pixels it came from (the offline CIFAR copy has JPEG pixels, for example).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from almabench.errors import AlmabenchError
from almabench.registry import Registry


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image classification dataset held in memory as tensors."""

    name: str
    x_train: Tensor  # uint8, N×C×H×W
    y_train: Tensor  # int64, N
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    mean: tuple[float, ...]  # per channel, in [0, 1]
    std: tuple[float, ...]
    crop_padding: int  # default padding of the random-crop augmentation
    source: str  # where it was read from
    checksum_ok: bool | None = None  # None: the format carries no checksum
    notes: tuple[str, ...] = ()
    flip: bool = False  # whether random horizontal flips are part of its recipe (a mirrored digit is another)

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
DATASETS: Registry[Loader] = Registry("dataset")


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


def augmentation_of(name: str, root: str | Path = "", download: bool = False) -> Augmentation:
    """The dataset's recipe: from AUGMENTATION for the shipped datasets, else read off the loaded data."""
    if name in AUGMENTATION:
        return AUGMENTATION[name]
    data = load_dataset(name, root, download)
    return Augmentation(data.flip, data.crop_padding)


def load_dataset(name: str, root: str | Path = "", download: bool = False) -> Dataset:
    """A registered dataset by name, or the user's own data by path (an .npz file or an ImageFolder tree)."""
    return _load_cached(name, str(Path(root).expanduser()) if root else str(default_data_root()), download)


@lru_cache(maxsize=4)
def _load_cached(name: str, root: str, download: bool) -> Dataset:
    if name in DATASETS:
        return DATASETS.get(name)(Path(root), download)
    path = Path(name).expanduser()
    if path.suffix == ".npz":
        if not path.is_file():
            raise AlmabenchError(f"dataset file {path} does not exist")
        return load_npz(path)
    if path.is_dir():
        return load_image_folder(path)
    raise AlmabenchError(DATASETS.unknown(name) + ", or a path to an .npz file or an ImageFolder tree")


def is_known_dataset(name: str) -> bool:
    path = Path(name).expanduser()
    return name in DATASETS or (path.suffix == ".npz" and path.is_file()) or path.is_dir()


# ----------------------------------------------------------------------------------------------------------
# The embedded default: scikit-learn's handwritten digits (1,797 8×8 images, shipped inside the package).


@DATASETS.register("digits")
def load_digits(root: Path, download: bool) -> Dataset:
    """sklearn's digits; a fixed split: every fifth image (index % 5 == 0) is the test set (360 / 1,437)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.clip(bunch.images * 16.0, 0, 255).astype(np.uint8)[:, None]  # 0..16 -> 0..255
    labels = bunch.target.astype(np.int64)
    test = np.arange(len(labels)) % 5 == 0
    x_train = torch.from_numpy(images[~test])
    mean, std = channel_stats(x_train)
    return Dataset(
        name="digits",
        x_train=x_train,
        y_train=torch.from_numpy(labels[~test]),
        x_test=torch.from_numpy(images[test]),
        y_test=torch.from_numpy(labels[test]),
        num_classes=10,
        mean=mean,
        std=std,
        crop_padding=AUGMENTATION["digits"].crop_padding,
        source="sklearn.datasets.load_digits",
        flip=AUGMENTATION["digits"].flip,
    )


# ----------------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 in torchvision's on-disk layout (python pickles), read into tensors in one go.


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


def _layout(name: str, tv_class: type, label_key: str, num_classes: int, mean, std) -> CifarLayout:
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
        offline = f", or build the offline copy: python ../shared/data/build-cifar10.py {root}"
        raise AlmabenchError(
            f"{layout.name} not found: {folder} lacks {', '.join(missing)}; rerun with --download where a "
            f"network exists or pass --data-root{offline if layout.name == 'cifar10' else ''}"
        )
    mismatched = [f for f, md5 in files if not check_integrity(str(folder / f), md5)]
    notes: tuple[str, ...] = ()
    if mismatched:
        notes = (f"md5 differs from the official release for {', '.join(mismatched)} (not the official files)",)
        warnings.warn(f"{layout.name}: {notes[0]}; using them anyway, the data fingerprint is recorded", stacklevel=2)

    def read(names: tuple[tuple[str, str], ...]) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for file_name, _ in names:
            with open(folder / file_name, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            if "data" not in entry or layout.label_key not in entry:
                raise AlmabenchError(f"{folder / file_name} is not a {layout.name} batch (no 'data'/{layout.label_key!r})")
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


# ----------------------------------------------------------------------------------------------------------
# The user's own data: classes, channels, size and mean/std are read from the data itself.


def _padding_for(size: int) -> int:
    return 4 if size >= 32 else max(1, size // 8)


def _from_arrays(name: str, source: str, x_train, y_train, x_test, y_test) -> Dataset:
    x_train, x_test = torch.as_tensor(x_train), torch.as_tensor(x_test)
    y_train, y_test = torch.as_tensor(y_train, dtype=torch.int64), torch.as_tensor(y_test, dtype=torch.int64)
    mean, std = channel_stats(x_train)
    num_classes = int(max(int(y_train.max()), int(y_test.max())) + 1)
    return Dataset(name, x_train, y_train, x_test, y_test, num_classes, mean, std,
                   _padding_for(min(x_train.shape[2:])), source)


def load_npz(path: Path) -> Dataset:
    """An .npz with x_train, y_train, x_test, y_test: uint8 images N×H×W or N×H×W×C, integer labels."""
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
        raise AlmabenchError(f"{path}: not a readable .npz file ({exc})") from None
    keys = ("x_train", "y_train", "x_test", "y_test")
    missing = [k for k in keys if k not in archive.files]
    if missing:
        raise AlmabenchError(f"{path}: missing key(s) {', '.join(missing)} (needs {', '.join(keys)})")
    arrays = {k: archive[k] for k in keys}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8:
            raise AlmabenchError(f"{path}: x_{split} must be uint8 images, got dtype {x.dtype}")
        if x.ndim not in (3, 4):
            raise AlmabenchError(f"{path}: x_{split} must be N×H×W or N×H×W×C, got shape {x.shape}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise AlmabenchError(f"{path}: y_{split} must be a 1-D integer array, got {y.dtype} {y.shape}")
        if len(x) != len(y):
            raise AlmabenchError(f"{path}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
        if len(x) == 0:
            raise AlmabenchError(f"{path}: x_{split} is empty")
        if y.min() < 0:
            raise AlmabenchError(f"{path}: y_{split} has negative labels")
        if x.ndim == 3:
            x = x[..., None]
        arrays[f"x_{split}"] = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # -> N×C×H×W
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise AlmabenchError(
            f"{path}: train images are {arrays['x_train'].shape[1:]} (C×H×W) but test images are "
            f"{arrays['x_test'].shape[1:]}"
        )
    return _from_arrays(path.stem, str(path.resolve()), *(arrays[k] for k in keys))


def load_image_folder(path: Path) -> Dataset:
    """A torchvision ImageFolder tree path/{train,test}/<class>/<image>; every image must have one size."""
    from torchvision.datasets import ImageFolder
    from torchvision.io import ImageReadMode, decode_image

    for split in ("train", "test"):
        if not (path / split).is_dir():
            raise AlmabenchError(f"{path}: an ImageFolder dataset needs {split}/<class>/<image> folders")
    train = ImageFolder(str(path / "train"), allow_empty=False)
    test = ImageFolder(str(path / "test"), allow_empty=True)
    unknown = sorted(set(test.classes) - set(train.classes))
    if unknown:
        raise AlmabenchError(f"{path}: test classes {', '.join(unknown)} have no training images")

    def decode(file: str, mode: ImageReadMode = ImageReadMode.UNCHANGED) -> Tensor:
        with warnings.catch_warnings():  # torchvision 0.29 announces a move of its decoders to TorchCodec
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            return decode_image(file, mode=mode)

    mode = ImageReadMode.GRAY if decode(train.samples[0][0]).shape[0] == 1 else ImageReadMode.RGB

    def read(samples: list[tuple[str, int]], class_names: list[str]) -> tuple[Tensor, Tensor]:
        images = [decode(file, mode) for file, _ in samples]
        shapes = {tuple(im.shape) for im in images}
        if len(shapes) > 1:
            raise AlmabenchError(f"{path}: images have different sizes {sorted(shapes)[:3]}; resize them first")
        labels = [train.class_to_idx[class_names[c]] for _, c in samples]
        return torch.stack(images), torch.tensor(labels, dtype=torch.int64)

    x_train, y_train = read(train.samples, train.classes)
    x_test, y_test = read(test.samples, test.classes)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise AlmabenchError(f"{path}: train images are {tuple(x_train.shape[1:])} but test images are {tuple(x_test.shape[1:])}")
    return _from_arrays(path.name, str(path.resolve()), x_train, y_train, x_test, y_test)
