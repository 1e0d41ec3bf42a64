"""The user's own data as one .npz file: x_train, y_train, x_test, y_test, read without unpickling."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from almabench.data.base import Dataset
from almabench.data.user import from_arrays, some
from almabench.errors import AlmabenchError
from almabench.names import quoted

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
    return from_arrays(path.stem, str(path.resolve()), num_classes, *(arrays[k] for k in NPZ_KEYS))


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
        raise AlmabenchError(f"{quoted(path)}: y_test has label(s) {some(unseen.tolist(), 5)} that no training image "
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
