"""`almabench report --reference METHOD`: the delta tables, forest and paired figures take another method than APP
as the left side of every difference (issues 36 and 42), with the same paired-by-seed numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from almabench.cli import main
from analysis.paper import comparisons

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_references_replace_app_as_the_left_side_and_a_pair_of_references_comes_once():
    methods = ["dense", "osp", "app", "shrink-perturb", "scratch", "shrink-perturb (shrink=0.2)"]
    assert comparisons(methods)[:3] == [("app", "dense"), ("app", "osp"), ("app", "scratch")]
    assert comparisons(methods, ["scratch"]) == [("scratch", m) for m in ("dense", "osp", "app", "shrink-perturb",
                                                                         "shrink-perturb (shrink=0.2)")]
    pairs = comparisons(methods, ["shrink-perturb", "dense"])  # a registered name stands for each of its labels
    assert [a for a, _ in pairs] == ["shrink-perturb"] * 5 + ["shrink-perturb (shrink=0.2)"] * 4 + ["dense"] * 3
    assert ("dense", "shrink-perturb") not in pairs and ("shrink-perturb", "dense") in pairs
    assert ("shrink-perturb (shrink=0.2)", "shrink-perturb") not in pairs


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "results"
    args = ["run", "--methods", "dense,app,shrink-perturb", "--seeds", "0,1", "--megabatches", "2", "--epochs", "3",
            "--set", "stream_images=600", "--out", str(out), "--threads", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out


def final_accuracy(out: Path, method: str) -> dict[int, float]:
    docs = [json.loads(p.read_text()) for p in out.glob("*.json")]
    return {d["config"]["seed"]: d["final_test_accuracy"] for d in docs if d["config"]["method"] == method}


def test_report_reference_gives_shrink_perturb_minus_dense_rows_with_the_paired_mean(folder, tmp_path):
    result = CliRunner().invoke(main, ["report", str(folder), "--out", str(tmp_path / "r"), "--format", "png",
                                       "--reference", "shrink-perturb"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "r" / "tables.csv")
    deltas = rows[rows["kind"] == "delta"]
    assert set(zip(deltas["method"], deltas["baseline"])) == {("shrink-perturb", "dense"), ("shrink-perturb", "app")}
    sp, dense = final_accuracy(folder, "shrink-perturb"), final_accuracy(folder, "dense")
    acc = deltas[(deltas["baseline"] == "dense") & (deltas["metric"] == "final_test_accuracy")]
    assert acc["mean"].item() == pytest.approx(sum(sp[s] - dense[s] for s in (0, 1)) / 2, abs=1e-9)
    assert acc["n_pairs"].item() == 2
    assert "shrink-perturb − dense" in result.output or "shrink-perturb - dense" in result.output


def test_report_without_reference_keeps_apps_rows(folder, tmp_path):
    result = CliRunner().invoke(main, ["report", str(folder), "--out", str(tmp_path / "r"), "--format", "png"])
    assert result.exit_code == 0, result.output
    deltas = pd.read_csv(tmp_path / "r" / "tables.csv").query("kind == 'delta'")
    assert set(zip(deltas["method"], deltas["baseline"])) == {("app", "dense"), ("app", "shrink-perturb")}


def test_an_unknown_reference_is_one_line(folder, tmp_path):
    result = CliRunner().invoke(main, ["report", str(folder), "--out", str(tmp_path / "r"), "--reference", "nope"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: --reference names method(s) not in the report: nope (its methods: app, dense, shrink-perturb)"]
    assert not (tmp_path / "r").exists()
