"""Robustness round 5 (issue 38), names in what almabench prints and writes: a name with a newline or an escape
sequence is shown escaped (it cannot forge a `warning:` line or retitle the terminal), a name a spreadsheet would
run as a formula is quoted in tables.csv, a name of 100 CJK characters still fits a file name, and a misnamed copy
of a result never hides the file named by its hash."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from click.testing import CliRunner
from test_robustness_round5 import cli

from almabench.analysis.load import load_results
from almabench.cell.config import RunConfig
from almabench.cli import main
from almabench.names import cut_bytes

MID = Path(__file__).parents[1] / "docs" / "results" / "cifar10-t8-mid"
DENSE, SHRINK = "ef536895ee06b6b1", "80dcf8ac1363b320"  # committed cells of seed 0: dense and shrink-perturb
FAKE = "app\nwarning: FAKE\x1b]0;title\x07"


def folder_with(tmp_path: Path, method: str) -> Path:
    """A results folder of dense at seed 0 and the shrink-perturb cell renamed `method`, its hash recomputed."""
    folder = tmp_path / "R"
    folder.mkdir()
    shutil.copy(MID / f"{DENSE}.json", folder)
    doc = json.loads((MID / f"{SHRINK}.json").read_text())
    doc["config"]["method"] = method
    doc["config_hash"] = RunConfig.from_dict(doc["config"]).hash()
    (folder / f"{doc['config_hash']}.json").write_text(json.dumps(doc))
    return folder


def forged(text: str) -> list[str]:
    """Lines of text that a name forged: one starting 'warning: FAKE', or any terminal escape."""
    return [line for line in text.splitlines() if line.startswith("warning: FAKE") or "\x1b" in line or "\x07" in line]


def test_a_misnamed_copy_never_hides_the_file_named_by_its_hash(tmp_path):
    folder = tmp_path / "R"
    folder.mkdir()
    shutil.copy(MID / f"{DENSE}.json", folder)
    for copy in ("0000000000000000.json", "ffffffffffffffff.json"):  # sorting before the real file and after it
        shutil.copy(MID / f"{DENSE}.json", folder / copy)
    warnings: list[str] = []
    frame = load_results(folder, warnings.append)
    assert set(frame["path"]) == {str(folder / f"{DENSE}.json")}
    assert sorted(warnings) == [f"skipped {folder / copy}: same cell (config {DENSE}) as {folder / DENSE}.json"
                                for copy in ("0000000000000000.json", "ffffffffffffffff.json")]


def test_status_shows_a_method_and_a_file_name_with_a_newline_escaped(tmp_path):
    folder = folder_with(tmp_path, FAKE)
    shutil.copy(MID / f"{DENSE}.json", folder / "a\nb.json")
    result = CliRunner().invoke(main, ["status", str(folder)])
    assert result.exit_code == 0, result.output
    assert forged(result.output) == []
    lines = result.output.splitlines()
    assert any(line.startswith("  'app\\nwarning: FAKE\\x1b]0;title\\x07' cifar10") for line in lines), result.output
    assert f"  corrupt 'a\\nb.json': its config_hash '{DENSE}' does not match its file name" in lines


def test_the_report_prints_and_writes_a_method_with_a_newline_escaped(tmp_path):
    folder = folder_with(tmp_path, FAKE)
    shutil.copy(MID / f"{DENSE}.json", folder / "c\nd.json")
    result = cli(["report", str(folder), "--out", str(tmp_path / "r"), "--format", "png"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert forged(result.stdout) == [] and forged(result.stderr) == []
    assert f"warning: skipped {folder}/c\\nd.json: same cell (config {DENSE}) as {folder}/{DENSE}.json" in (
        result.stderr.splitlines())
    tables = (tmp_path / "r" / "tables.md").read_text()
    assert forged(tables) == [] and "'app\\nwarning: FAKE\\x1b]0;title\\x07'" in tables
    assert all(p.name.isprintable() for p in (tmp_path / "r").rglob("*"))


def test_a_method_named_like_a_formula_is_quoted_in_tables_csv_and_numbers_stay_numbers(tmp_path):
    method = '=HYPERLINK("http://example.invalid","x")'
    folder = folder_with(tmp_path, method)
    result = cli(["report", str(folder), "--out", str(tmp_path / "r"), "--format", "png"], tmp_path)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "r" / "tables.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["method"] for r in rows} == {"dense", "'" + method}
    assert not [cell for r in rows for cell in r.values() if cell.startswith(("=", "@", "+"))]
    assert all(float(r["mean"]) >= 0 for r in rows)  # the numbers are left as numbers, never quoted
    assert method in (tmp_path / "r" / "tables.md").read_text()  # Markdown is not a spreadsheet: as written


def test_a_method_of_100_cjk_characters_fits_every_file_name_of_the_report_and_the_tensorboard_export(tmp_path):
    method = "剪" * 100  # 300 bytes in UTF-8; a file name holds 255
    folder = folder_with(tmp_path, method)
    result = cli(["report", str(folder), "--out", str(tmp_path / "r"), "--format", "png"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert method in (tmp_path / "r" / "tables.md").read_text()
    figures = list((tmp_path / "r" / "figures").rglob("*.png"))
    assert figures and max(len(p.name.encode()) for p in figures) <= 255
    result = cli(["export", str(folder), "--to", "tensorboard", "--dest", str(tmp_path / "tb")], tmp_path, 300)
    assert result.returncode == 0, result.stderr
    runs = [p for p in (tmp_path / "tb").rglob("*") if p.is_dir() and "剪" in p.name]
    assert runs and max(len(p.name.encode()) for p in runs) <= 255


def test_cut_bytes_keeps_whole_characters_and_tells_two_long_names_apart():
    assert cut_bytes("abc", 3) == "abc"
    first, second = cut_bytes("剪" * 100, 100), cut_bytes("剪" * 99 + "枝", 100)
    assert len(first.encode()) <= 100 and first.startswith("剪" * 31) and first != second
    assert first == "剪" * 31 + "-" + first[-6:] and len(first[-6:]) == 6


def test_spreadsheet_safe_quotes_text_that_starts_a_formula_and_leaves_numbers_alone():
    import pandas as pd

    from almabench.analysis.tables import spreadsheet_safe

    frame = pd.DataFrame({"method": ["=1+1", "-x", "app", "@SUM(A1)"], "mean": [-1.5, 2.0, -0.25, 0.0]})
    safe = spreadsheet_safe(frame)
    assert list(safe["method"]) == ["'=1+1", "'-x", "app", "'@SUM(A1)"]
    assert list(safe["mean"]) == [-1.5, 2.0, -0.25, 0.0]


def test_a_block_of_a_dataset_named_in_100_cjk_characters_slugs_within_a_file_name():
    from almabench.analysis.blocks import MAX_SLUG_BYTES, block_slug

    long, other = {"dataset": "剪" * 100, "arch": "convnet"}, {"dataset": "剪" * 99 + "枝", "arch": "convnet"}
    assert len(block_slug(long).encode()) <= MAX_SLUG_BYTES < 255 - len("accuracy_vs_density_-99.png")
    assert block_slug(long) != block_slug(other) and block_slug(long).startswith("剪" * 40)
    assert block_slug({"dataset": "cifar10", "megabatches": 8}) == "cifar10_T8"  # short names as they were


def test_a_name_too_long_for_the_file_system_is_not_advised_away_with_another_folder(tmp_path, monkeypatch):
    import errno
    import importlib

    report_module = importlib.import_module("almabench.analysis.report")  # the package's `report` is the command

    def too_long(*args, **kwargs):
        raise OSError(errno.ENAMETOOLONG, "File name too long", str(tmp_path / ("x" * 300 + ".png")))

    monkeypatch.setattr(report_module, "build_report", too_long)
    folder = folder_with(tmp_path, "shrink-perturb")
    result = CliRunner().invoke(main, ["report", str(folder), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "too long for this file system" in result.output and "--out FOLDER" not in result.output
