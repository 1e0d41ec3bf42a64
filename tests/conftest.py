"""Shared fixtures: tiny datasets generated on the fly, in the on-disk formats the real readers take."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch


def make_images(n: int, size: int, channels: int | None, seed: int, num_classes: int = 3):
    """Learnable toy images: class k is a bright band at rows k*size//num_classes, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    shape = (n, size, size) if channels is None else (n, size, size, channels)
    images = rng.integers(0, 60, shape).astype(np.uint8)
    band = size // num_classes
    for i, k in enumerate(labels):
        images[i, k * band : (k + 1) * band] = 220
    return images, labels


@pytest.fixture
def toy_npz(tmp_path: Path) -> Path:
    """An .npz dataset: 120 grey 8×8 train images, 30 test images, 3 classes."""
    x_train, y_train = make_images(120, 8, None, seed=0)
    x_test, y_test = make_images(30, 8, None, seed=1)
    path = tmp_path / "toy.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def write_cifar_layout(root: Path, kind: str, n_per_file: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """torchvision's CIFAR on-disk layout with small random batches; returns the arrays written."""
    rng = np.random.default_rng(seed)
    if kind == "cifar10":
        folder, files, label_key, classes = root / "cifar-10-batches-py", [
            *(f"data_batch_{i}" for i in range(1, 6)), "test_batch"], "labels", 10
    else:
        folder, files, label_key, classes = root / "cifar-100-python", ["train", "test"], "fine_labels", 100
    folder.mkdir(parents=True)
    written: dict[str, np.ndarray] = {}
    for name in files:
        data = rng.integers(0, 256, (n_per_file, 3072)).astype(np.uint8)
        labels = rng.integers(0, classes, n_per_file).tolist()
        entry = {"data": data, label_key: labels}
        if kind == "cifar100":
            entry["coarse_labels"] = [label // 5 for label in labels]
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
        written[name] = data
    meta_name = "batches.meta" if kind == "cifar10" else "meta"
    with open(folder / meta_name, "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(classes)]}, f)
    return written


@pytest.fixture
def one_torch_thread():
    """One torch thread for a test (cells compared must compute alike; two threads spin on 2 shared cores);
    the next test gets its count back. Modules that need it: pytestmark = usefixtures("one_torch_thread")."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
