"""Issue 23's round of bad inputs and surprises: each ends in one line that names the problem and what would be
valid, a non-zero exit, no traceback, and --out exactly as it was; the fixes that are not errors (a default
that fits 1 px images, where a grid comes from, a label off its line, a hint on a busy machine) are checked
the same way, by what they print or draw."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from almabench.cell.config import RunConfig, RunOptions
from almabench.cli import main
from almabench.data.cifar import OFFLINE_BUILDER
from almabench.grid.execute import run_and_store
from almabench.grid.specs import resolve_configs
from almabench.results.store import result_path

FAST = ["--megabatches", "2", "--epochs", "1", "--threads", "1"]
KEPT = b'{"kept": "bytes the run must not touch"}\n'

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def kept_folder(tmp_path: Path) -> Path:
    out = tmp_path / "results"
    out.mkdir()
    (out / "keep.json").write_bytes(KEPT)
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(args: list[str], out: Path) -> str:
    """Run the CLI; assert exit 1, no traceback and --out untouched; return the last line without 'Error: '."""
    before = snapshot(out)
    result = CliRunner().invoke(main, [*args, "--out", str(out)] if args[0] == "run" else args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a ClickException, not a crash
    assert "Traceback" not in result.output
    assert snapshot(out) == before
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: "), result.output
    return last.removeprefix("Error: ")


# ------------------------------------------------------------------------------- infinite learning rates


@pytest.mark.parametrize("key", ["lr", "weight_decay", "momentum", "lr_gamma", "sample_fraction"])
def test_an_infinite_setting_stops_before_any_cell_runs(tmp_path, key):
    out = kept_folder(tmp_path)
    assert one_line_error(["run", "--methods", "app", *FAST, "--set", f"{key}=inf"], out) == (
        f"{key} must be a finite number, got inf")
    assert one_line_error(["run", "--methods", "app", *FAST, "--set", f"{key}=-inf"], out) == (
        f"{key} must be a finite number, got -inf")


def test_a_failure_record_is_written_whatever_floats_its_config_holds(tmp_path):
    (config,) = resolve_configs([RunConfig(method="dense", megabatches=2, epochs=1, lr=math.inf,
                                           weight_decay=math.inf)], RunOptions())
    done = run_and_store(config, RunOptions(threads=1), tmp_path)  # the API skips the grid's checks
    assert done["status"] == "failed"
    record = json.loads(result_path(tmp_path, config).read_text())  # strict JSON: no Infinity token
    assert record["status"] == "failed" and record["error"].startswith("FloatingPointError: training loss is nan")
    assert (record["config"]["lr"], record["config"]["weight_decay"]) == ("inf", "inf")
    status = CliRunner().invoke(main, ["status", str(tmp_path)])
    assert status.exit_code == 0 and "1 result file(s): 0 done, 1 failed, 0 corrupt" in status.output


# ------------------------------------------------------------------------------------- ImageFolder trees


def image_tree(root: Path, per_class: int = 6, size: int = 8) -> Path:
    """root/{train,test}/{c0,c1}/<i>.png: colour images of one size."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("c0", "c1"):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(autouse=True)
def _fresh_data_cache():
    """load_dataset is cached by name: a tree made at a reused path must be read again."""
    from almabench import data

    data._load_cached.cache_clear()
    yield
    data._load_cached.cache_clear()


def test_a_symlink_loop_in_an_image_folder_stops_the_run(tmp_path):
    tree = image_tree(tmp_path / "tree")
    (tree / "train" / "c0" / "loop").symlink_to("../c0")
    out = kept_folder(tmp_path)
    assert one_line_error(["run", "--datasets", str(tree), "--methods", "dense", *FAST], out) == (
        f"{tree}/train/c0/loop leads back to {tree}/train/c0 (a symlink loop, or two links to one folder): its "
        f"images would be read more than once; remove the link")


def test_a_second_link_to_one_class_folder_stops_the_run(tmp_path):
    tree = image_tree(tmp_path / "tree")
    (tree / "train" / "c2").symlink_to(tree / "train" / "c0")  # c0's images under another label too
    out = kept_folder(tmp_path)
    assert one_line_error(["run", "--datasets", str(tree), "--methods", "dense", *FAST], out) == (
        f"{tree}/train/c2 leads back to {tree}/train/c0 (a symlink loop, or two links to one folder): its "
        f"images would be read more than once; remove the link")


@pytest.mark.parametrize("name", ["new\nline.png", "tab\there.png", "esc\x1b[31m.png", "zero\u200bwidth.png"])
def test_a_file_name_with_characters_that_do_not_print_is_quoted_on_one_line(tmp_path, name):
    tree = image_tree(tmp_path / "tree")
    (tree / "train" / "c1" / name).write_bytes(b"\x89PNG\r\n\x1a\n but truncated")
    out = kept_folder(tmp_path)
    message = one_line_error(["run", "--datasets", str(tree), "--methods", "dense", *FAST], out)
    assert message.startswith(repr(f"{tree}/train/c1/{name}") + ": not a readable image, truncated or corrupt ("), \
        message
    assert message.endswith("); replace it with a readable image or remove it")


def test_a_spec_path_with_a_newline_is_quoted_on_one_line(tmp_path):
    out = kept_folder(tmp_path)
    spec = tmp_path / "two\nlines.toml"
    spec.write_text("[grid]\nmethod = 'dense'\n[config]\nepochs = 'ten'\n")
    assert one_line_error(["run", "--spec", str(spec), *FAST], out) == (
        f"'{tmp_path}/two\\nlines.toml': epochs must be an integer, got 'ten'")


def test_names_that_print_are_shown_as_they_are_and_no_message_keeps_a_line_break():
    from almabench.names import one_line, quoted

    assert quoted(Path("data/café ü.npz")) == "data/café ü.npz"
    assert quoted("a\nb.png") == "'a\\nb.png'" and quoted("tab\t") == "'tab\\t'"
    assert one_line("x: a\nb\r\x1b[0m τ") == "x: a\\nb\\r\\x1b[0m τ"


# ------------------------------------------------------------------------------------ 1×1 pixel images


@pytest.fixture
def one_pixel_npz(tmp_path: Path) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "dots.npz"
    labels = np.arange(40) % 4
    np.savez(path, x_train=(labels * 60 + rng.integers(0, 20, 40)).astype(np.uint8).reshape(40, 1, 1),
             y_train=labels, x_test=(np.arange(12) % 4 * 60).astype(np.uint8).reshape(12, 1, 1),
             y_test=np.arange(12) % 4)
    return path


def test_the_default_crop_padding_fits_1px_images(tmp_path, one_pixel_npz):
    out = tmp_path / "results"
    result = CliRunner().invoke(main, ["run", "--datasets", str(one_pixel_npz), "--methods", "dense", *FAST,
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    (path,) = out.glob("*.json")
    assert json.loads(path.read_text())["config"]["crop_padding"] == 0


def test_a_crop_padding_too_large_for_1px_images_recommends_the_valid_default(tmp_path, one_pixel_npz):
    out = kept_folder(tmp_path)
    assert one_line_error(["run", "--datasets", str(one_pixel_npz), "--methods", "dense", *FAST, "--set",
                           "crop_padding=1"], out) == (
        f"{one_pixel_npz}: crop_padding = 1 px is as large as its 1 px images; use 0..0 (or -1: the dataset's, 0 px)")


# --------------------------------------------------------------------------- report on a read-only folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A results folder with two finished digits cells (dense and osp, T = 2, 1 epoch)."""
    out = tmp_path_factory.mktemp("finished") / "results"
    result = CliRunner().invoke(main, ["run", "--methods", "dense,osp", *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_report_on_a_read_only_folder_names_the_flag_that_writes_elsewhere(finished, tmp_path, monkeypatch):
    import errno
    import shutil

    results = tmp_path / "archive"
    shutil.copytree(finished, results)
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self.is_relative_to(results):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert one_line_error(["report", str(results)], results) == (
        f"cannot write the report into {results}/report/: read-only file system; pass --out FOLDER to write it "
        f"into another folder")
    monkeypatch.undo()
    elsewhere = CliRunner().invoke(main, ["report", str(results), "--out", str(tmp_path / "report")])
    assert elsewhere.exit_code == 0 and (tmp_path / "report" / "report.md").is_file()


# ------------------------------------------------------------------ a resume under another thread count


def test_a_resume_under_another_thread_count_is_refused_and_the_same_count_resumes(tmp_path):
    import torch

    from almabench.cell.checkpoint import OtherThreads
    from almabench.cell.run import run_cell
    from almabench.results.store import checkpoint_path

    out = kept_folder(tmp_path)
    (config,) = resolve_configs([RunConfig(method="dense", megabatches=2, epochs=1)], RunOptions())
    checkpoint = checkpoint_path(out, config)

    def killed(step):
        raise KeyboardInterrupt  # as if killed after megabatch 1

    with pytest.raises(KeyboardInterrupt):
        run_cell(config, RunOptions(threads=1), progress=killed, checkpoint=checkpoint)
    args = ["run", "--methods", "dense", "--megabatches", "2", "--epochs", "1"]
    assert one_line_error([*args, "--threads", "2"], out) == (
        f"{checkpoint} holds megabatch 1 of its cell computed at 1 torch thread(s), and this run uses 2: a resume "
        f"must use the same count; rerun with --threads 1 to resume it, or delete it to start that cell over at 2")
    # a worker that finds it (a cluster's, whose count only it knows) refuses too, and writes no failure record
    with pytest.raises(OtherThreads):
        run_and_store(config, RunOptions(threads=2), out)
    assert not result_path(out, config).exists() and checkpoint.exists()
    torch.set_num_threads(1)
    again = CliRunner().invoke(main, [*args, "--threads", "1", "--out", str(out)])
    assert again.exit_code == 0 and "resumed after step 1" in again.output, again.output
    assert json.loads(result_path(out, config).read_text())["environment"]["torch_threads"] == 1


# ------------------------------------------------------------------------- names that render alike


def test_dataset_names_that_render_alike_are_told_apart_in_status_and_report_titles(tmp_path):
    import unicodedata

    import numpy as np

    from almabench.data import load_dataset
    from almabench.names import columns, pad

    out = tmp_path / "results"
    paths = {}
    for seed, form in enumerate(("NFC", "NFD")):
        path = tmp_path / (unicodedata.normalize(form, "café") + ".npz")
        y = np.arange(40) % 4
        x = (np.random.default_rng(seed).integers(0, 60, (40, 8, 8)) + (y * 40)[:, None, None]).astype(np.uint8)
        np.savez(path, x_train=x, y_train=y, x_test=x[:12], y_test=y[:12])
        paths[form] = path
        ran = CliRunner().invoke(main, ["run", "--datasets", str(path), "--methods", "dense", *FAST,
                                        "--out", str(out)])
        assert ran.exit_code == 0, ran.output
    assert len(list(out.glob("*.json"))) == 2  # two datasets, two cells
    label = {form: f"{path} ({str(path).encode('ascii', 'backslashreplace').decode()}, data "
                   f"{load_dataset(str(path)).fingerprint})" for form, path in paths.items()}
    assert label["NFC"].endswith(f"caf\\xe9.npz, data {load_dataset(str(paths['NFC'])).fingerprint})")
    assert "cafe\\u0301.npz, data " in label["NFD"]
    status = CliRunner().invoke(main, ["status", str(out)]).output.splitlines()
    width = max(columns(text) for text in label.values())
    assert sorted(status[2:4]) == sorted(f"  dense  {pad(text, width)} convnet    2     1      0       0"
                                        for text in label.values()), status
    assert columns(status[2]) == columns(status[3])  # aligned: the combining accent takes no column
    report = CliRunner().invoke(main, ["report", str(out), "--format", "png"])
    assert report.exit_code == 0, report.output
    titles = sorted(line for line in report.output.splitlines() if line.startswith("== "))
    assert titles == sorted(f"== {label[f]} / convnet / T=2 / snip / tau=4.5 ==" for f in ("NFC", "NFD"))


def test_names_that_render_differently_are_shown_as_they_are():
    from almabench.names import labels_apart

    assert labels_apart(["café.npz", "cafe.npz", "data/café.npz"]) == {
        "café.npz": "café.npz", "cafe.npz": "cafe.npz", "data/café.npz": "data/café.npz"}
    assert labels_apart(["a.npz", "a\u200b.npz"], {"a.npz": "f0"}) == {
        "a.npz": "a.npz (a.npz, data f0)", "a\u200b.npz": "a\u200b.npz (a\\u200b.npz)"}


def test_table_columns_count_what_a_terminal_shows():
    from almabench.names import columns, pad

    assert [columns(t) for t in ("café", "cafe\u0301", "数据.npz", "a\u200bb")] == [4, 4, 8, 2]
    assert pad("cafe\u0301", 6) == "cafe\u0301  " and pad("数据", 3) == "数据"


# --------------------------------------------------------------------------- a dry run without the data


def test_a_dry_run_without_the_cifar_data_says_it_is_missing_and_how_to_make_it(tmp_path):
    out, empty = kept_folder(tmp_path), tmp_path / "no-data"
    result = CliRunner().invoke(main, ["run", "--spec", "cpu-short", "--dry-run", "--data-root", str(empty),
                                       "--out", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert lines[-3:] == [
        "0 done, 0 failed, 0 corrupt, 3 missing: 3 cell(s) to run",
        "compute left: unknown until the data of its 3 cell(s) is there (below)",
        f"Error: the run would stop before any cell: cifar10 not found: {empty}/cifar-10-batches-py lacks "
        f"data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch; rerun with --download "
        f"where a network exists, unpack the official cifar-10-python.tar.gz into {empty}, or pass --data-root where "
        f"it is" + (f", or make it offline with python ../shared/data/build-cifar10.py {empty}"
                    if OFFLINE_BUILDER.is_file() else "")]
    assert snapshot(out) == {"keep.json": KEPT} and not empty.exists()


def test_a_dry_run_with_part_of_its_data_counts_what_it_can(tmp_path):
    out, empty = kept_folder(tmp_path), tmp_path / "no-data"
    result = CliRunner().invoke(main, ["run", "--datasets", "digits,cifar10", "--methods", "dense", *FAST,
                                       "--dry-run", "--data-root", str(empty), "--out", str(out)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-3] == ("compute left: 1,938 training image-passes (epochs x sum over steps of |train_t|, the "
                         "replay set), plus 1 cell(s) whose data is not there yet (below)")
    assert lines[-1].startswith("Error: the run would stop before any cell: cifar10 not found: ")
    assert snapshot(out) == {"keep.json": KEPT}


# ----------------------------------------------------------------------------- where a grid comes from


@pytest.mark.parametrize("flags, source", [
    (["--methods", "dense", "--datasets", "digits", "--archs", "convnet", "--megabatches", "2", "--seeds", "0",
      "--epochs", "1"], "1 cell(s) from the command line"),
    (["--methods", "dense", "--datasets", "digits", "--archs", "convnet", "--megabatches", "2", "--seeds", "0"],
     "1 cell(s) from the command line, with epochs = 10 from {quick}"),
    (["--methods", "dense", "--megabatches", "2", "--epochs", "1"], "1 cell(s) from {quick} and the command line"),
    ([], "3 cell(s) from {quick}"),
])
def test_the_first_line_says_where_the_grid_comes_from(tmp_path, flags, source):
    from almabench.grid.specs import spec_path

    result = CliRunner().invoke(main, ["run", *flags, "--dry-run", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        f"{source.format(quick=spec_path('quick'))}, results in {tmp_path}/ (dry run: nothing runs, nothing is "
        f"written)")



# ------------------------------------------------------------------------------------ the CER figure


def test_the_cer_figures_dense_label_sits_beside_its_own_dotted_line(finished):
    from almabench.analysis.curves import cer_figure
    from almabench.analysis.figure_kit import palette, report_style
    from almabench.analysis.load import cells, load_results
    from almabench.analysis.paper import method_order

    rows = cells(load_results(finished, lambda message: None))
    dense = float(rows.loc[rows["method"] == "dense", "cer"].iloc[0])
    block = {"dataset": "digits", "arch": "convnet", "megabatches": 2, "pruner": "snip", "tau": 4.5}
    with report_style():
        fig = cer_figure(rows, block, palette(method_order(rows["method"])))
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    (dotted,) = [line for line in ax.lines if line.get_linestyle() == ":"]
    line_x = ax.transData.transform((dense, 0))[0]  # a vertical line: the CER axis is horizontal
    (label,) = [t for t in ax.texts if t.get_text() == f"{dense:,.0f}"]
    assert label.get_window_extent(renderer).x0 > line_x  # wholly right of the line, not struck through
    for text in ax.texts:  # a label the line crosses hides it: an opaque box, drawn above the line
        box = text.get_bbox_patch()
        assert box.get_facecolor() == (1.0, 1.0, 1.0, 1.0) and text.get_zorder() > dotted.get_zorder()


# ------------------------------------------------------------------------------------ a busy machine


@pytest.mark.parametrize("threads, load, hint", [
    (2, 1.2, "note: the machine's load (a 1-minute average of 1.2 on 2 cores) leaves 1 core(s) free for the 2 "
             "torch threads each cell uses; a thread on a busy core makes the others wait at every operation, so "
             "--threads 1 may run much faster (this run keeps 2)"),
    (2, 0.4, None),  # an idle machine's noise
    (1, 2.0, None),  # one thread is as few as a cell can use
])
def test_a_busy_machine_gets_a_hint_at_start_and_keeps_its_thread_count(tmp_path, monkeypatch, threads, load, hint):
    import os

    import torch

    from almabench.grid import execute as grid_execution

    ran_with = []

    def execute(todo, options, *args, **kwargs):  # record the options the cells would run with; run nothing
        ran_with.append(options.threads)
        return iter(())

    monkeypatch.setattr(os, "getloadavg", lambda: (load, 1.0, 1.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(grid_execution, "_execute", execute)
    result = CliRunner().invoke(main, ["run", "--methods", "dense", "--megabatches", "2", "--epochs", "1",
                                       "--threads", str(threads), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith(": 0 done, 1 to run")
    assert [line for line in lines if line.startswith("note:")] == ([hint] if hint else []), lines
    assert lines[1] == hint if hint else lines[1].startswith("0 ran, 0 already done")
    assert ran_with == [threads] and torch.get_num_threads() == 1  # the hint changes no thread count
