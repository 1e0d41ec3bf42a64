"""Datasets as uint8 tensors loaded once: the embedded default, CIFAR-10/100 on disk, and the user's own data.

Every dataset is held as `x` uint8 N×C×H×W and `y` int64, so training can gather batches by index on the
device instead of decoding images one by one. A fingerprint of the four arrays goes into every result, so a
number can be traced to the exact pixels it came from (the offline CIFAR copy has JPEG pixels, for example).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from almabench.errors import AlmabenchError
from almabench.names import quoted
from almabench.registry import Registry


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
        offline = f"make it offline with python ../shared/data/build-cifar10.py {quoted(root)}, or "
        raise AlmabenchError(
            f"{layout.name} not found: {quoted(folder)} lacks {', '.join(missing)}; "
            f"{offline if layout.name == 'cifar10' else ''}rerun with --download where a network exists, or pass "
            f"--data-root where it is"
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


# ----------------------------------------------------------------------------------------------------------
# The user's own data: classes, channels, size and mean/std are read from the data itself. Anything the data
# cannot mean is an AlmabenchError naming the file and what would be valid, raised while the grid is checked,
# so a bad file stops the run before a cell runs or anything in --out is touched.
# Augmentation defaults: padding by image size, and no flip (a mirrored image may be another class: text,
# digits, arrows); users who know their images are mirror-symmetric set flip = true in the config.


def _padding_for(size: int) -> int:
    """⌊size/8⌋, at least 1 and at most 4, and always below the size (a crop must keep a pixel): 0 for 1 px."""
    return min(4 if size >= 32 else max(1, size // 8), size - 1)


def _some(items: Sequence[object], limit: int = 3) -> str:
    """The first few items, comma-separated, and how many more: error messages stay one readable line."""
    shown = ", ".join(quoted(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _from_arrays(name: str, source: str, num_classes: int, x_train, y_train, x_test, y_test) -> Dataset:
    """A user's Dataset from checked N×C×H×W uint8 images and labels 0..num_classes-1."""
    x_train, x_test = torch.as_tensor(x_train), torch.as_tensor(x_test)
    y_train, y_test = torch.as_tensor(y_train, dtype=torch.int64), torch.as_tensor(y_test, dtype=torch.int64)
    mean, std = channel_stats(x_train)
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   num_classes=num_classes, mean=mean, std=std, crop_padding=_padding_for(min(x_train.shape[2:])),
                   flip=False, source=source)


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_NPZ_WANTS = {"x": "one uint8 array N×H×W or N×H×W×C (every image the same size)", "y": "a 1-D integer array"}


def load_npz(path: Path) -> Dataset:
    """An .npz with x_train, y_train, x_test, y_test: uint8 images N×H×W or N×H×W×C, integer labels 0..K-1."""
    arrays = _read_npz(path)
    for split in ("train", "test"):
        arrays[f"x_{split}"] = _check_npz_split(path, split, arrays[f"x_{split}"], arrays[f"y_{split}"])
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise AlmabenchError(
            f"{quoted(path)}: train images are {arrays['x_train'].shape[1:]} (C×H×W) but test images are "
            f"{arrays['x_test'].shape[1:]}"
        )
    num_classes = _check_labels(path, arrays["y_train"], arrays["y_test"])
    return _from_arrays(path.stem, str(path.resolve()), num_classes, *(arrays[k] for k in NPZ_KEYS))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The four arrays, never unpickling: an .npz is a zip of .npy files, and object arrays need pickle."""
    if not zipfile.is_zipfile(path):
        raise AlmabenchError(f"{quoted(path)}: not an .npz archive (not a zip file); save one with "
                             f"numpy.savez(path, {', '.join(f'{k}=...' for k in NPZ_KEYS)})")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input error
        raise AlmabenchError(f"{quoted(path)}: not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    with archive:
        missing = [k for k in NPZ_KEYS if k not in archive.files]
        if missing:
            raise AlmabenchError(f"{quoted(path)}: missing key(s) {', '.join(missing)} (needs {', '.join(NPZ_KEYS)})")
        return {k: _read_npz_member(path, archive, k) for k in NPZ_KEYS}


def _read_npz_member(path: Path, archive, key: str) -> np.ndarray:
    want = _NPZ_WANTS[key[0]]
    try:
        return archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise AlmabenchError(f"{quoted(path)}: {key} is an array of Python objects (dtype=object, e.g. a list of "
                                 f"images of different sizes); store it as {want}") from None
        raise AlmabenchError(f"{quoted(path)}: cannot read {key} ({exc}); store it as {want}") from None
    except Exception as exc:  # noqa: BLE001 - a damaged member (bad zip entry, truncated data)
        raise AlmabenchError(f"{quoted(path)}: cannot read {key} ({type(exc).__name__}: {exc}); the archive is "
                             f"damaged") from None


def _check_npz_split(path: Path, split: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The split's images as N×C×H×W, after checking their dtype and shape against the labels'."""
    if x.dtype != np.uint8:
        raise AlmabenchError(f"{quoted(path)}: x_{split} must be uint8 images, got dtype {x.dtype}")
    if x.ndim not in (3, 4):
        raise AlmabenchError(f"{quoted(path)}: x_{split} must be N×H×W or N×H×W×C, got shape {x.shape}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise AlmabenchError(f"{quoted(path)}: y_{split} must be a 1-D integer array, got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise AlmabenchError(f"{quoted(path)}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
    if len(x) == 0:
        raise AlmabenchError(f"{quoted(path)}: x_{split} is empty")
    if x.ndim == 3:
        x = x[..., None]
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _check_labels(path: Path, y_train: np.ndarray, y_test: np.ndarray) -> int:
    """The number of classes K. Training labels must be exactly 0..K-1, since K sizes the model's output layer
    (a stray 255 among four classes would silently give 256 outputs; a 1e9 would try to allocate them), and a
    test label no training image has can only be scored wrong."""
    for split, y in (("train", y_train), ("test", y_test)):
        if int(y.min()) < 0:
            raise AlmabenchError(f"{quoted(path)}: y_{split} has negative labels (min {int(y.min())}); labels must "
                                 f"be 0..K-1")
    classes = np.unique(y_train)
    if len(classes) < 2:
        raise AlmabenchError(f"{quoted(path)}: y_train has a single class ({int(classes[0])}); a classification "
                             f"dataset needs at least 2 classes, labelled 0..K-1")
    top = int(classes[-1])
    if top + 1 != len(classes):
        absent = top + 1 - len(classes)
        shown = ", ".join(map(str, _missing_labels(classes))) + (", ..." if absent > 5 else "")
        raise AlmabenchError(
            f"{quoted(path)}: y_train must use labels 0..K-1 with every class present, but its max label is {top} and "
            f"{absent} of 0..{top} never occur ({shown}); relabel its {len(classes)} classes "
            f"0..{len(classes) - 1} in y_train and y_test")
    unseen = np.setdiff1d(y_test, classes)
    if len(unseen):
        raise AlmabenchError(f"{quoted(path)}: y_test has label(s) {_some(unseen.tolist(), 5)} that no training image "
                             f"has (y_train's classes are 0..{top}); every test label must be a training class")
    return len(classes)


def _missing_labels(present: np.ndarray, limit: int = 5) -> list[int]:
    """The first `limit` labels of 0..max absent from the sorted `present`, without building the range (max may
    be 1e9)."""
    missing: list[int] = []
    expected = 0
    for label in present.tolist():
        missing.extend(range(expected, min(label, expected + limit - len(missing))))
        if len(missing) == limit:
            break
        expected = label + 1
    return missing


# An ImageFolder tree: path/{train,test}/<class>/<image>. Every image must decode and have the same channels
# (greyscale or colour) and size; alpha channels are dropped.

_GREY, _COLOUR = "greyscale", "colour (RGB)"


def load_image_folder(path: Path) -> Dataset:
    """A torchvision ImageFolder tree path/{train,test}/<class>/<image>; every image must have one size."""
    train, test = (_scan_split(path, split) for split in ("train", "test"))
    _check_classes(path, train, test)
    files = [file for split in (train, test) for file, _ in split.samples]
    images = [_decode(file) for file in files]
    images = _same_channels(path, files, images)
    _check_sizes(path, files, images)
    n_train = len(train.samples)
    y_train, y_test = ([train.class_to_idx[split.classes[c]] for _, c in split.samples] for split in (train, test))
    return _from_arrays(path.name, str(path.resolve()), len(train.classes), torch.stack(images[:n_train]), y_train,
                        torch.stack(images[n_train:]), y_test)


def _image_extensions() -> str:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return " ".join(IMG_EXTENSIONS)


def _scan_split(path: Path, split: str):
    """torchvision's ImageFolder index of path/split (files only, nothing decoded), checked to hold images."""
    from torchvision.datasets import ImageFolder

    folder = path / split
    needs = f"an ImageFolder dataset needs {split}/<class>/<image> files ({_image_extensions()})"
    if not folder.is_dir():
        raise AlmabenchError(f"{quoted(path)}: {needs}")
    _check_each_folder_once(folder)
    try:
        index = ImageFolder(str(folder), allow_empty=True)
    except FileNotFoundError:  # no class folder at all
        raise AlmabenchError(f"{quoted(folder)} has no class folders; {needs}") from None
    if not index.samples:
        raise AlmabenchError(f"{quoted(folder)} has no images; {needs}")
    return index


def _check_each_folder_once(folder: Path) -> None:
    """ImageFolder follows links to folders: a link back up the tree (class/loop -> ../class) would have it read
    the same images again and again (until the path is too long), so a folder reached twice stops the run."""
    seen: dict[str, str] = {}
    for here, folders, _ in os.walk(folder, followlinks=True):
        folders.sort()  # the first of two names of one folder is the one named in the message, on every run
        first = seen.setdefault(os.path.realpath(here), here)
        if first != here:
            raise AlmabenchError(f"{quoted(here)} leads back to {quoted(first)} (a symlink loop, or two links to one "
                                 f"folder): its images would be read more than once; remove the link")


def _check_classes(path: Path, train, test) -> None:
    """Every training class has images (its label would otherwise never be learnt), there are at least two, and
    every test class is a training class. An empty test class folder is allowed: it scores nothing."""
    counts = Counter(label for _, label in train.samples)
    empty = [name for i, name in enumerate(train.classes) if counts[i] == 0]
    if empty:
        raise AlmabenchError(f"{quoted(path / 'train')}: class folder(s) {_some(empty)} have no images "
                             f"({_image_extensions()}); put images in them or remove them")
    if len(train.classes) < 2:
        raise AlmabenchError(f"{quoted(path / 'train')} has a single class folder ({quoted(train.classes[0])}); a "
                             f"classification dataset needs at least 2")
    unknown = sorted(set(test.classes) - set(train.classes))
    if unknown:
        raise AlmabenchError(f"{quoted(path)}: test classes {', '.join(map(quoted, unknown))} have no training images")


def _decode(file: str) -> Tensor:
    """C×H×W uint8 with 1 (greyscale) or 3 (colour) channels: torchvision.io for JPEG, PNG, WebP and GIF, PIL for
    the other formats ImageFolder accepts (BMP, TIFF, PPM, PGM). A file neither can read is named."""
    from torchvision.io import ImageReadMode, decode_image

    if os.path.getsize(file) == 0:
        raise AlmabenchError(f"{quoted(file)}: empty image file (0 bytes); replace it with a readable image or "
                             f"remove it")
    try:
        with warnings.catch_warnings():  # torchvision 0.29 announces a move of its decoders to TorchCodec
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            image = decode_image(file, mode=ImageReadMode.UNCHANGED)
    except RuntimeError as exc:
        reason = re.sub(r"^.*?:\d+, ", "", str(exc).splitlines()[0])  # drop torchvision's "function, file:line, "
        if "Unsupported image file" not in reason:
            raise AlmabenchError(f"{quoted(file)}: not a readable image, truncated or corrupt ({reason}); replace it "
                                 f"with a readable image or remove it") from None
        return _decode_with_pil(file)
    if image.shape[0] in (2, 4):  # grey + alpha, RGBA or CMYK: let the decoder convert, as it knows which
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            image = decode_image(file, mode=ImageReadMode.GRAY if image.shape[0] == 2 else ImageReadMode.RGB)
    return image


def _decode_with_pil(file: str) -> Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as opened:
            grey = opened.mode in ("1", "L", "LA", "La", "F") or opened.mode.startswith("I")
            array = np.asarray(opened.convert("L" if grey else "RGB"))
    except UnidentifiedImageError:
        raise AlmabenchError(f"{quoted(file)}: not an image (neither torchvision nor PIL knows its format); replace "
                             f"it with a readable image or remove it") from None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's truncated or corrupt files
        raise AlmabenchError(f"{quoted(file)}: not a readable image, truncated or corrupt ({exc}); replace it with a "
                             f"readable image or remove it") from None
    return torch.from_numpy(array.reshape(*array.shape[:2], -1).transpose(2, 0, 1).copy())  # PIL's is read-only


def _same_channels(path: Path, files: list[str], images: list[Tensor]) -> list[Tensor]:
    """The images unchanged if all are greyscale or all colour; otherwise the files of the minority are named.
    Converting silently either way would hide a mistake (a stray scan among photographs)."""
    kinds = [_GREY if image.shape[0] == 1 else _COLOUR for image in images]
    majority, odd = _majority(kinds)
    if odd:
        minority = _COLOUR if majority == _GREY else _GREY
        mode = "'L'" if majority == _GREY else "'RGB'"
        raise AlmabenchError(
            f"{quoted(path)}: {len(odd)} of {len(files)} images are {minority} while the others are {majority}: "
            f"{_some([files[i] for i in odd])}; convert them to {majority} (PIL: Image.open(f).convert({mode}))")
    return images


def _check_sizes(path: Path, files: list[str], images: list[Tensor]) -> None:
    sizes = [tuple(image.shape[1:]) for image in images]
    (height, width), odd = _majority(sizes)
    if odd:
        named = [f"{quoted(files[i])} ({sizes[i][0]}×{sizes[i][1]})" for i in odd]
        raise AlmabenchError(f"{quoted(path)}: images must all have one size, but {len(odd)} of {len(files)} are not "
                             f"{height}×{width} like the others: {_some(named)}; resize them first")


def _majority(kinds: list) -> tuple[object, list[int]]:
    """The most common kind (a tie goes to the first seen) and the indices of every other."""
    majority = Counter(kinds).most_common(1)[0][0]
    return majority, [i for i, kind in enumerate(kinds) if kind != majority]
