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

from almabench.cli import main
from almabench.config import RunConfig, RunOptions
from almabench.grid import resolve_configs, run_and_store
from almabench.store import result_path

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
