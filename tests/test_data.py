import hashlib
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from almabench.data import load_dataset, load_image_folder, load_npz
from almabench.errors import AlmabenchError
from conftest import make_images, write_cifar_layout

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.parametrize("kind, classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_layout_loads_through_the_real_reader(tmp_path, kind, classes):
    written = write_cifar_layout(tmp_path, kind, n_per_file=20)
    with pytest.warns(UserWarning, match="md5 differs"):
        data = load_dataset(kind, tmp_path)
    n_train = 100 if kind == "cifar10" else 20
    assert data.x_train.shape == (n_train, 3, 32, 32) and data.x_train.dtype == torch.uint8
    assert data.x_test.shape == (20, 3, 32, 32) and data.y_test.dtype == torch.int64
    assert data.num_classes == classes and data.channels == 3 and data.crop_padding == 4
    first = written["data_batch_1" if kind == "cifar10" else "train"][0]
    assert torch.equal(data.x_train[0], torch.from_numpy(first.reshape(3, 32, 32)))
    assert data.checksum_ok is False and "md5" in data.notes[0]
    assert len(data.fingerprint) == 16


def test_missing_cifar_names_the_folder_and_how_to_get_it(tmp_path):
    with pytest.raises(AlmabenchError, match=r"cifar-10-batches-py lacks data_batch_1.*--download"):
        load_dataset("cifar10", tmp_path / "nowhere")


def test_half_a_cifar_dataset_is_named_with_what_is_missing(tmp_path):
    write_cifar_layout(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(AlmabenchError, match="lacks data_batch_3$|lacks data_batch_3;"):
        load_dataset("cifar10", tmp_path)


def test_npz_dataset_reads_its_own_shape_and_statistics(toy_npz):
    data = load_dataset(str(toy_npz))
    assert data.x_train.shape == (120, 1, 8, 8) and data.num_classes == 3
    raw = np.load(toy_npz)["x_train"] / 255.0
    assert data.mean[0] == pytest.approx(raw.mean(), abs=1e-6)
    assert data.std[0] == pytest.approx(raw.std(ddof=1), abs=1e-5)


def test_npz_with_channels_last_images_becomes_nchw(tmp_path):
    x, y = make_images(10, 8, 3, seed=0)
    np.savez(tmp_path / "rgb.npz", x_train=x, y_train=y, x_test=x[:4], y_test=y[:4])
    data = load_npz(tmp_path / "rgb.npz")
    assert data.x_train.shape == (10, 3, 8, 8)
    assert torch.equal(data.x_train[2, 1], torch.from_numpy(x[2, :, :, 1]))


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(4, int)}, "missing key.*x_test, y_test"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(3, int), "x_test": np.zeros((2, 8, 8), np.uint8),
      "y_test": np.zeros(2, int)}, "x_train has 4 images but y_train has 3 labels"),
    ({"x_train": np.zeros((4, 8, 8), np.float32), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 8, 8), np.uint8),
      "y_test": np.zeros(2, int)}, "x_train must be uint8"),
])
def test_bad_npz_is_named_with_what_is_wrong(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(AlmabenchError, match=message):
        load_npz(tmp_path / "bad.npz")


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")  # write_png, to make the tree
def test_image_folder_tree_loads_into_uint8_tensors(tmp_path):
    from torchvision.io import write_png

    x, y = make_images(12, 8, 3, seed=3)
    for split in ("train", "test"):
        for i, (image, label) in enumerate(zip(x, y)):
            folder = tmp_path / split / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            write_png(torch.from_numpy(image).permute(2, 0, 1).contiguous(), str(folder / f"{i}.png"))
    data = load_image_folder(tmp_path)
    assert data.x_train.shape == (12, 3, 8, 8) and data.x_train.dtype == torch.uint8
    assert data.num_classes == len(set(y.tolist()))
    assert sorted(data.y_train.tolist()) == sorted(np.unique(y, return_inverse=True)[1].tolist())


def test_embedded_digits_split_is_fixed():
    from sklearn.datasets import load_digits

    data = load_dataset("digits")
    assert (data.n_train, len(data.y_test), data.num_classes, data.channels) == (1437, 360, 10, 1)
    digits = load_digits()  # every fifth image (index % 5 == 0) tests, in order; the others train
    assert data.y_test.tolist() == digits.target[::5].tolist()
    assert data.y_train.tolist() == np.delete(digits.target, np.s_[::5]).tolist()
    assert data.fingerprint == "0e680e36e077b083"  # pinned: any change to the images, labels or split shows here


def test_fingerprint_is_sha256_over_dtype_shape_and_bytes():
    from almabench.data import fingerprint

    x, y = torch.tensor([[1, 2], [3, 4]], dtype=torch.uint8), torch.tensor([0, 1])
    expected = hashlib.sha256(b"uint8(2, 2)\x01\x02\x03\x04int64(2,)" + np.array([0, 1], np.int64).tobytes())
    assert fingerprint(x, y) == expected.hexdigest()[:16]
    assert fingerprint(x, y) != fingerprint(x.T, y) != fingerprint(x, y.to(torch.int32))


@pytest.mark.skipif(not (SHARED_DATA / "build-cifar10.py").is_file(), reason="../shared/data is not beside this clone")
def test_offline_cifar10_copy_loads_with_a_recorded_checksum_warning(tmp_path):
    subprocess.run([sys.executable, str(SHARED_DATA / "build-cifar10.py"), str(tmp_path)], check=True,
                   capture_output=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset("cifar10", tmp_path)
    assert any("md5 differs" in str(w.message) for w in caught)
    assert data.x_train.shape == (50000, 3, 32, 32) and data.x_test.shape == (10000, 3, 32, 32)
    labels = np.load(SHARED_DATA / "cifar10-labels.npz")
    assert np.array_equal(data.y_train.numpy(), labels["y_train"])
    assert np.bincount(data.y_test.numpy()).tolist() == [1000] * 10
    assert data.checksum_ok is False
