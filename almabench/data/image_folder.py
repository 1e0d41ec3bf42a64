"""The user's own data as an ImageFolder tree: path/{train,test}/<class>/<image>.

Every image must decode and have the same channels (greyscale or colour) and size; alpha channels are dropped.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from almabench.data.base import Dataset
from almabench.data.user import from_arrays, some
from almabench.errors import AlmabenchError
from almabench.names import quoted

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
    return from_arrays(path.name, str(path.resolve()), len(train.classes), torch.stack(images[:n_train]), y_train,
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
        raise AlmabenchError(f"{quoted(path / 'train')}: class folder(s) {some(empty)} have no images "
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
            f"{some([files[i] for i in odd])}; convert them to {majority} (PIL: Image.open(f).convert({mode}))")
    return images


def _check_sizes(path: Path, files: list[str], images: list[Tensor]) -> None:
    sizes = [tuple(image.shape[1:]) for image in images]
    (height, width), odd = _majority(sizes)
    if odd:
        named = [f"{quoted(files[i])} ({sizes[i][0]}×{sizes[i][1]})" for i in odd]
        raise AlmabenchError(f"{quoted(path)}: images must all have one size, but {len(odd)} of {len(files)} are not "
                             f"{height}×{width} like the others: {some(named)}; resize them first")


def _majority(kinds: list) -> tuple[Any, list[int]]:
    """The most common kind (a tie goes to the first seen) and the indices of every other."""
    majority = Counter(kinds).most_common(1)[0][0]
    return majority, [i for i, kind in enumerate(kinds) if kind != majority]
