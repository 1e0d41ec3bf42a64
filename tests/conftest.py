"""Shared fixtures: tiny datasets generated on the fly, in the on-disk formats the real readers take."""

from __future__ import annotations

import json
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


# Three cells of about a second each on the embedded digits: big enough to be killed in the middle of.
TINY_SPEC = """
[grid]
method = ["app", "osp", "dense"]

[config]
dataset = "digits"
arch = "convnet"
megabatches = 3
epochs = 2
milestones = [1]
flip = false
crop_padding = 1
"""


def comparable(out: Path) -> dict[str, dict]:
    """A folder's results minus timing: what two runs of one grid must agree on exactly, by file name."""
    from almabench.results.store import without_timing

    return {p.name: without_timing(json.loads(p.read_text())) for p in sorted(out.glob("*.json"))}


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.toml"
    path.write_text(TINY_SPEC)
    return path


@pytest.fixture(scope="module")
def reference(tiny_spec, tmp_path_factory) -> dict[str, dict]:
    """The tiny grid run without interruption by joblib's loky workers, one torch thread a cell: {file name:
    result minus timing}."""
    from almabench.cell.config import RunOptions
    from almabench.grid.execute import run_grid
    from almabench.grid.specs import load_spec

    out = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    outcome = run_grid(load_spec(str(tiny_spec)).configs(), RunOptions(threads=1), out, jobs=2, backend="loky")
    torch.set_num_threads(threads)
    assert outcome.ran == 3 and not outcome.failed
    return comparable(out)
