"""A user's bad dataset stops `almabench run` with one line that names the file and what is valid, before any
cell runs and without touching what --out already holds; and the user-data rules that come with it (augmentation
defaults, one spelling per dataset path, formats only PIL decodes)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from almabench import data as data_module
from almabench.cli import main
from almabench.data import load_dataset, load_image_folder, normalise_dataset_name
from conftest import make_images

KEPT = b'{"kept": "bytes the run must not touch"}\n'
EXTENSIONS = ".jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp"


@pytest.fixture(autouse=True)
def _fresh_cache():
    """load_dataset is cached by name: a test must not see another test's file at a reused path."""
    data_module._load_cached.cache_clear()
    yield
    data_module._load_cached.cache_clear()


def _run_into_kept_folder(tmp_path: Path, dataset: Path) -> tuple[str, Path]:
    """`almabench run` on the dataset into an --out folder that already holds keep.json; the output, and out."""
    out = tmp_path / "results"
    out.mkdir()
    (out / "keep.json").write_bytes(KEPT)
    result = CliRunner().invoke(main, ["run", "--datasets", str(dataset), "--methods", "dense", "--out", str(out),
                                       "--epochs", "1", "--megabatches", "2", "--device", "cpu"])
    assert result.exit_code == 1, result.output
    return result.output, out


def _assert_one_line_error(tmp_path: Path, dataset: Path, expected: str | re.Pattern) -> None:
    """Exit status 1, one "Error:" line equal to (or matching) expected, and --out exactly as it was."""
    output, out = _run_into_kept_folder(tmp_path, dataset)
    assert "Traceback" not in output
    last = output.strip().splitlines()[-1]
    if isinstance(expected, str):
        assert last == f"Error: {expected}"
    else:
        assert re.fullmatch(expected, last.removeprefix("Error: ")), last
    assert sorted(p.name for p in out.iterdir()) == ["keep.json"]
    assert (out / "keep.json").read_bytes() == KEPT


# ----------------------------------------------------------------------------------------------------------
# .npz files


def _four_classes(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x, _ = make_images(n, 8, None, seed=seed)
    return x, np.arange(n) % 4


def _npz_with_labels(y_train: np.ndarray, y_test: np.ndarray) -> dict[str, np.ndarray]:
    x_train, _ = _four_classes(len(y_train))
    x_test, _ = _four_classes(len(y_test), seed=1)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _with_label(label: int, dtype=np.int64) -> np.ndarray:
    y = (np.arange(40) % 4).astype(dtype)
    y[7] = label
    return y


NPZ_LABEL_CASES = {
    "a 255 among four classes": (
        _npz_with_labels(_with_label(255, np.uint8), np.arange(12) % 4),
        "y_train must use labels 0..K-1 with every class present, but its max label is 255 and 251 of 0..255 "
        "never occur (4, 5, 6, 7, 8, ...); relabel its 5 classes 0..4 in y_train and y_test"),
    "a label of 1e9": (
        _npz_with_labels(_with_label(10**9), np.arange(12) % 4),
        "y_train must use labels 0..K-1 with every class present, but its max label is 1000000000 and 999999996 "
        "of 0..1000000000 never occur (4, 5, 6, 7, 8, ...); relabel its 5 classes 0..4 in y_train and y_test"),
    "labels 1..4": (
        _npz_with_labels(np.arange(40) % 4 + 1, np.arange(12) % 4 + 1),
        "y_train must use labels 0..K-1 with every class present, but its max label is 4 and 1 of 0..4 never "
        "occur (0); relabel its 4 classes 0..3 in y_train and y_test"),
    "a test label never seen in training": (
        _npz_with_labels(np.arange(40) % 4, np.array([0, 1, 2, 3, 9, 7, 9])),
        "y_test has label(s) 7, 9 that no training image has (y_train's classes are 0..3); every test label must "
        "be a training class"),
    "a single class": (
        _npz_with_labels(np.zeros(40, np.int64), np.zeros(12, np.int64)),
        "y_train has a single class (0); a classification dataset needs at least 2 classes, labelled 0..K-1"),
    "a negative label": (
        _npz_with_labels(_with_label(-1), np.arange(12) % 4),
        "y_train has negative labels (min -1); labels must be 0..K-1"),
}


@pytest.mark.parametrize("arrays, message", NPZ_LABEL_CASES.values(), ids=NPZ_LABEL_CASES.keys())
def test_npz_labels_must_be_every_class_0_to_k_minus_1(tmp_path, arrays, message):
    path = tmp_path / "labels.npz"
    np.savez(path, **arrays)
    _assert_one_line_error(tmp_path, path, f"{path}: {message}")


def test_npz_object_arrays_are_named_not_unpickled(tmp_path):
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.zeros((8, 8), np.uint8), np.zeros((9, 9), np.uint8)]
    path = tmp_path / "ragged.npz"
    np.savez(path, x_train=ragged, y_train=np.array([0, 1]), x_test=np.zeros((2, 8, 8), np.uint8),
             y_test=np.array([0, 1]))
    _assert_one_line_error(tmp_path, path, f"{path}: x_train is an array of Python objects (dtype=object, e.g. a "
                                           f"list of images of different sizes); store it as one uint8 array N×H×W "
                                           f"or N×H×W×C (every image the same size)")


def test_npz_object_labels_are_named(tmp_path):
    x, _ = _four_classes()
    path = tmp_path / "objlabels.npz"
    np.savez(path, x_train=x, y_train=np.array([0, 1, 2, 3] * 10, dtype=object), x_test=x, y_test=np.arange(40) % 4)
    _assert_one_line_error(tmp_path, path, f"{path}: y_train is an array of Python objects (dtype=object, e.g. a "
                                           f"list of images of different sizes); store it as a 1-D integer array")


@pytest.mark.parametrize("content", [b"x_train,y_train\n1,2\n", np.lib.format.MAGIC_PREFIX + b"\x01\x00"],
                         ids=["text", "npy-header"])
def test_a_file_that_is_not_a_zip_is_not_an_npz(tmp_path, content):
    path = tmp_path / "notes.npz"
    path.write_bytes(content)
    _assert_one_line_error(tmp_path, path, f"{path}: not an .npz archive (not a zip file); save one with "
                                           f"numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")


def test_a_saved_npy_array_named_npz_is_not_an_npz(tmp_path):
    path = tmp_path / "array.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((4, 8, 8), np.uint8))
    output, _ = _run_into_kept_folder(tmp_path, path)
    assert output.strip().splitlines()[-1].startswith(f"Error: {path}: not an .npz archive (not a zip file)")


# ----------------------------------------------------------------------------------------------------------
# ImageFolder trees


def _save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _tree(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 3, size: int = 8) -> Path:
    """root/{train,test}/<class>/<i>.png, colour images of one size."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in classes:
            for i in range(per_class):
                _save(root / split / name / f"{i}.png", rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return root


def _truncated(file: Path) -> None:
    whole = file.read_bytes()
    file.write_bytes(whole[: len(whole) // 2])


def _bad_trees() -> dict[str, tuple[Callable[[Path], None], Callable[[Path], str]]]:
    """Case: (what to do to a good tree at root, the message expected after 'Error: ')."""
    return {
        "an empty train class folder": (
            lambda root: (root / "train" / "bird").mkdir(),
            lambda root: f"{root}/train: class folder(s) bird have no images ({EXTENSIONS}); put images in them or "
                         f"remove them"),
        "a train class folder of text files only": (
            lambda root: _save_text(root / "train" / "bird" / "notes.txt"),
            lambda root: f"{root}/train: class folder(s) bird have no images ({EXTENSIONS}); put images in them or "
                         f"remove them"),
        "an empty test folder": (
            lambda root: _empty_folder(root / "test"),
            lambda root: f"{root}/test has no class folders; an ImageFolder dataset needs test/<class>/<image> files "
                         f"({EXTENSIONS})"),
        "test class folders without images": (
            lambda root: [_empty_folder(root / "test" / name) for name in ("cat", "dog")],
            lambda root: f"{root}/test has no images; an ImageFolder dataset needs test/<class>/<image> files "
                         f"({EXTENSIONS})"),
        "a truncated png": (
            lambda root: _truncated(root / "train" / "dog" / "1.png"),
            lambda root: f"{root}/train/dog/1.png: not a readable image, truncated or corrupt (Out of bound read in "
                         f"decode_png. Probably, the input image is corrupted); replace it with a readable image or "
                         f"remove it"),
        "a 0-byte png": (
            lambda root: (root / "test" / "cat" / "2.png").write_bytes(b""),
            lambda root: f"{root}/test/cat/2.png: empty image file (0 bytes); replace it with a readable image or "
                         f"remove it"),
        "a text file named .png": (
            lambda root: (root / "train" / "cat" / "0.png").write_text("not a picture\n"),
            lambda root: f"{root}/train/cat/0.png: not an image (neither torchvision nor PIL knows its format); "
                         f"replace it with a readable image or remove it"),
        "a truncated bmp (decoded by PIL)": (
            lambda root: _truncated(_save(root / "train" / "cat" / "9.bmp", np.zeros((8, 8, 3), np.uint8))),
            lambda root: re.compile(re.escape(f"{root}/train/cat/9.bmp: not a readable image, truncated or corrupt "
                                              f"(image file is truncated") + r".*\); replace it with a readable "
                                    r"image or remove it")),  # PIL's own words: "(21 bytes not processed)" in 12.0
        "one greyscale image among colour ones": (
            lambda root: _save(root / "train" / "dog" / "2.png", np.zeros((8, 8), np.uint8)),
            lambda root: f"{root}: 1 of 12 images are greyscale while the others are colour (RGB): "
                         f"{root}/train/dog/2.png; convert them to colour (RGB) (PIL: Image.open(f).convert('RGB'))"),
        "one colour image among greyscale ones": (
            lambda root: _all_grey_but(root, root / "test" / "cat" / "0.png"),
            lambda root: f"{root}: 1 of 12 images are colour (RGB) while the others are greyscale: "
                         f"{root}/test/cat/0.png; convert them to greyscale (PIL: Image.open(f).convert('L'))"),
        "one image of another size": (
            lambda root: _save(root / "test" / "dog" / "0.png", np.zeros((9, 8, 3), np.uint8)),
            lambda root: f"{root}: images must all have one size, but 1 of 12 are not 8×8 like the others: "
                         f"{root}/test/dog/0.png (9×8); resize them first"),
        "a single class": (
            lambda root: [_remove_class(root, "dog")],
            lambda root: f"{root}/train has a single class folder (cat); a classification dataset needs at least 2"),
        "a test class with no training images": (
            lambda root: _save(root / "test" / "eel" / "0.png", np.zeros((8, 8, 3), np.uint8)),
            lambda root: f"{root}: test classes eel have no training images"),
    }


def _save_text(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("a note, not an image\n")


def _empty_folder(folder: Path) -> None:
    for file in folder.rglob("*.png"):
        file.unlink()
    for sub in sorted(folder.iterdir(), reverse=True):
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()


def _all_grey_but(root: Path, colour: Path) -> None:
    for file in root.rglob("*.png"):
        if file != colour:
            Image.open(file).convert("L").save(file)


def _remove_class(root: Path, name: str) -> None:
    for split in ("train", "test"):
        for file in (root / split / name).iterdir():
            file.unlink()
        (root / split / name).rmdir()


BAD_TREES = _bad_trees()


@pytest.mark.parametrize("case", BAD_TREES.keys())
def test_a_bad_image_folder_is_one_line_naming_the_file(tmp_path, case):
    spoil, message = BAD_TREES[case]
    root = _tree(tmp_path / "pets")
    spoil(root)
    _assert_one_line_error(tmp_path, root, message(root))


def test_an_image_folder_without_test_names_the_layout(tmp_path):
    root = tmp_path / "pets"
    _save(root / "train" / "cat" / "0.png", np.zeros((8, 8, 3), np.uint8))
    _assert_one_line_error(tmp_path, root, f"{root}: an ImageFolder dataset needs test/<class>/<image> files "
                                           f"({EXTENSIONS})")


def test_image_folder_formats_and_alpha_load_as_their_pixels(tmp_path):
    """BMP goes through PIL, RGBA loses its alpha, an empty test class folder is allowed; labels follow names."""
    rng = np.random.default_rng(5)
    pixels = {name: rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for name in ("a", "b", "c")}
    _save(tmp_path / "train" / "ant" / "a.bmp", pixels["a"])
    rgba = np.concatenate([pixels["b"], np.full((8, 8, 1), 7, np.uint8)], axis=2)
    _save(tmp_path / "train" / "bee" / "b.png", rgba)
    _save(tmp_path / "test" / "bee" / "c.png", pixels["c"])
    (tmp_path / "test" / "ant").mkdir()
    data = load_image_folder(tmp_path)
    assert data.x_train.shape == (2, 3, 8, 8) and data.num_classes == 2
    assert torch.equal(data.x_train[0], torch.from_numpy(pixels["a"]).permute(2, 0, 1))
    assert torch.equal(data.x_train[1], torch.from_numpy(pixels["b"]).permute(2, 0, 1))
    assert data.y_train.tolist() == [0, 1] and data.y_test.tolist() == [1]
    assert torch.equal(data.x_test[0], torch.from_numpy(pixels["c"]).permute(2, 0, 1))


def test_greyscale_image_folder_has_one_channel(tmp_path):
    root = _tree(tmp_path / "pets")
    _all_grey_but(root, root / "nothing")
    data = load_image_folder(root)
    expected = np.array(Image.open(root / "train" / "dog" / "2.png"))
    assert data.channels == 1 and torch.equal(data.x_train[5, 0], torch.from_numpy(expected))


# ----------------------------------------------------------------------------------------------------------
# Augmentation defaults and one spelling per dataset


def test_every_dataset_declares_its_flip_default(tmp_path, toy_npz):
    digits = load_dataset("digits")
    assert (digits.flip, digits.crop_padding) == (False, 1)
    user = load_dataset(str(toy_npz))
    assert (user.flip, user.crop_padding) == (False, 1)  # 8×8 images: padding 8 // 8
    folder = load_image_folder(_tree(tmp_path / "big", size=32))
    assert (folder.flip, folder.crop_padding) == (False, 4)
    assert digits.describe()["flip"] is False


def test_cifar_flips_by_default(tmp_path):
    from conftest import write_cifar_layout

    write_cifar_layout(tmp_path, "cifar10")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_dataset("cifar10", tmp_path)
    assert (data.flip, data.crop_padding) == (True, 4) and data.describe()["flip"] is True


@pytest.mark.parametrize("name, normal", [
    ("digits", "digits"), ("cifar10", "cifar10"),
    ("./data/x.npz", "data/x.npz"), ("data//x.npz", "data/x.npz"), ("data/./sub/../x.npz", "data/x.npz"),
    ("images/", "images"), ("../elsewhere/x.npz", "../elsewhere/x.npz"), ("/abs/./x.npz", "/abs/x.npz"),
    ("~/x.npz", "~/x.npz"),
])
def test_a_dataset_path_has_one_spelling(name, normal):
    assert normalise_dataset_name(name) == normal


def test_two_spellings_of_a_path_load_the_same_dataset_once(toy_npz, monkeypatch):
    monkeypatch.chdir(toy_npz.parent)
    first = load_dataset(f"./{toy_npz.name}")
    assert load_dataset(toy_npz.name) is first
