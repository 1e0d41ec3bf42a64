"""`almabench report`: hand-made result files with known numbers must give known table entries.

No training here: every result file is written by `write_result` below with numbers chosen so that means,
stds, CER sums and deltas can be worked out by hand.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from click.testing import CliRunner

from almabench.analysis.blocks import BLOCK_KEYS, assign_blocks, block_slug, parse_group_by, with_varying_splits
from almabench.analysis.cli import report
from almabench.analysis.cross_block import DODGE, accuracy_density_figure
from almabench.analysis.curves import cer_figure, curve_figure, density_figure
from almabench.analysis.figure_files import FigureWriter
from almabench.analysis.figure_kit import palette
from almabench.analysis.layer_figure import layer_figure, layer_labels
from almabench.analysis.load import cells, filter_results, load_results
from almabench.analysis.paper import comparisons
from almabench.analysis.report import results_root
from almabench.analysis.stats import (
    bootstrap_ci,
    mean_interval,
    paired_differences,
    t_interval,
    t_quantile,
)
from almabench.analysis.style import style
from almabench.analysis.tables import delta_table, summary_table
from almabench.cell.config import RunConfig
from almabench.errors import AlmabenchError

TEST_SIZE = 100
PARAMS_TOTAL, PRUNABLE, FLOPS = 1000, 900, 10_000
HEADLINE = {"dataset": "cifar100", "arch": "resnet50", "megabatches": 8, "pruner": "snip", "tau": 4.5}


def write_result(folder: Path, method: str, seed: int, errors: list[int], gap: float, density: float = 1.0,
                 env: dict | None = None, **config) -> Path:
    """A finished result file: step t has errors[t-1] test errors, the same gap and density at every step;
    env is merged into its `environment`."""
    config.setdefault("megabatches", len(errors))
    cfg = RunConfig(method=method, seed=seed, **config).resolve(flip=True, crop_padding=4, scope="global")  # as run
    steps = []
    for t, e in enumerate(errors, start=1):
        steps.append({
            "step": t, "test_accuracy": 100.0 * (TEST_SIZE - e) / TEST_SIZE, "test_errors": e,
            "train_accuracy": 90.0, "val_accuracy": 90.0 - gap, "gap": gap, "density": density,
            "target_density": density, "layer_density": {"conv1.weight": min(1.0, density + 0.1),
                                                         "fc.weight": density},
            "params_remaining": PARAMS_TOTAL - PRUNABLE + round(density * PRUNABLE),
            "flops_remaining": round(FLOPS * density), "train_size": 90 * t, "val_size": 10 * t,
            "sample_size": 0, "best_epoch": 1, "prune_seconds": 0.0, "train_seconds": 0.1, "seconds": 0.1,
            "images_per_second": 100.0,
        })
    result = {
        "schema_version": 1, "status": "ok", "config_hash": cfg.hash(), "config": cfg.to_dict(), "steps": steps,
        "final_test_accuracy": steps[-1]["test_accuracy"], "cer": sum(errors), "final_density": density,
        "final_gap": gap, "mean_gap": gap, "test_size": TEST_SIZE, "params_total": PARAMS_TOTAL,
        "prunable_total": PRUNABLE, "flops_dense": FLOPS,
        "data": {"name": cfg.dataset, "source": "hand-made", "fingerprint": "feedc0ffee", "n_train": 800,
                 "n_test": TEST_SIZE, "num_classes": 100, "channels": 3, "image_size": [32, 32],
                 "mean": [0.5], "std": [0.25], "checksum_ok": True, "notes": []},
        "environment": {"almabench": "0.1.0", "git_commit": "abc", "device": "cpu", **(env or {})},
        "started_at": "2024-01-01T00:00:00+00:00", "finished_at": "2024-01-01T00:00:01+00:00", "seconds": 1.0,
    }
    path = folder / f"{cfg.hash()}.json"
    path.write_text(json.dumps(result))
    return path


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    """The paper's headline setting, 2 seeds x {dense, osp, app}, in a nested folder.

    final acc: dense 50, 60 | osp 70, 80 | app 80, 90;  CER: dense 400, 320 | osp 240, 230 | app 160, 80;
    final gap: dense 10, 12 | osp 6, 6 | app 2, 4.
    """
    root = tmp_path / "results"
    sub = root / "cifar100" / "nested"
    sub.mkdir(parents=True)
    write_result(root, "dense", 0, [50] * 8, 10.0, **HEADLINE)
    write_result(sub, "dense", 1, [40] * 8, 12.0, **HEADLINE)
    write_result(root, "osp", 0, [30] * 8, 6.0, 0.366, **HEADLINE)
    write_result(sub, "osp", 1, [30] * 7 + [20], 6.0, 0.366, **HEADLINE)
    write_result(root, "app", 0, [20] * 8, 2.0, 0.366, **HEADLINE)
    write_result(sub, "app", 1, [10] * 8, 4.0, 0.366, **HEADLINE)
    return root


def summary_value(summary: pd.DataFrame, method: str, metric: str, column: str = "mean") -> float:
    row = summary[(summary["method"] == method) & (summary["metric"] == metric)]
    assert len(row) == 1, row
    return float(row[column].iloc[0])


def test_loader_gives_one_row_per_cell_and_step_with_config_columns(grid: Path) -> None:
    frame = load_results(grid, warn=pytest.fail)
    assert len(frame) == 6 * 8
    assert frame.groupby("config_hash")["step"].apply(list).map(lambda s: s == list(range(1, 9))).all()
    for key in ("method", "seed", "pruner", "tau", "epochs", "milestones", "config_hash", "cer",
                "data_fingerprint", "path", "test_errors", "gap", "density"):
        assert key in frame.columns
    assert frame["milestones"].iloc[0] == (20, 40)  # lists become tuples, so they can be grouped on
    one = cells(frame)
    assert len(one) == 6 and (one["step"] == 8).all()
    assert one.set_index(["method", "seed"]).loc[("osp", 1), "cer"] == 230
    assert one["params_kept"].round(2).tolist().count(100.0) == 2  # the two dense cells keep everything


def test_summary_means_stds_and_cer_sums(grid: Path) -> None:
    cell_rows = cells(load_results(grid))
    summary = summary_table(cell_rows, BLOCK_KEYS)
    assert summary_value(summary, "dense", "final_test_accuracy") == pytest.approx(55.0)
    assert summary_value(summary, "dense", "final_test_accuracy", "std") == pytest.approx(math.sqrt(50))
    assert summary_value(summary, "osp", "final_test_accuracy") == pytest.approx(75.0)
    assert summary_value(summary, "app", "final_test_accuracy") == pytest.approx(85.0)
    assert summary_value(summary, "dense", "cer") == pytest.approx(360.0)
    assert summary_value(summary, "dense", "cer", "std") == pytest.approx(math.sqrt(2 * 40**2))
    assert summary_value(summary, "osp", "cer") == pytest.approx(235.0)
    assert summary_value(summary, "app", "cer") == pytest.approx(120.0)
    assert summary_value(summary, "app", "final_gap") == pytest.approx(3.0)
    assert summary_value(summary, "osp", "final_gap", "std") == pytest.approx(0.0)
    assert summary_value(summary, "app", "final_density") == pytest.approx(0.366)
    assert summary_value(summary, "app", "params_kept") == pytest.approx(100 * (100 + 329) / 1000)
    assert (summary["n"] == 2).all()
    # t-interval over 2 seeds (400, 320): 360 ± t(0.975, 1) · 56.569 / √2 = 360 ± 12.7062 · 40
    assert summary_value(summary, "dense", "cer", "ci_low") == pytest.approx(360 - 508.248, abs=1e-3)
    assert summary_value(summary, "dense", "cer", "ci_high") == pytest.approx(360 + 508.248, abs=1e-3)
    assert (summary["interval"] == "t").all()
    assert summary["method"].drop_duplicates().tolist() == ["dense", "osp", "app"]


def test_deltas_and_paper_figures_in_headline_setting(grid: Path) -> None:
    deltas = delta_table(cells(load_results(grid)), BLOCK_KEYS).set_index(["baseline", "metric"])
    assert deltas.loc[("dense", "final_test_accuracy"), "delta"] == pytest.approx(30.0)
    assert deltas.loc[("osp", "final_test_accuracy"), "delta"] == pytest.approx(10.0)
    assert deltas.loc[("dense", "cer"), "delta"] == pytest.approx(-240.0)
    assert deltas.loc[("osp", "cer"), "delta"] == pytest.approx(-115.0)
    assert deltas.loc[("dense", "final_gap"), "delta"] == pytest.approx(-8.0)
    assert deltas.loc[("osp", "final_gap"), "delta"] == pytest.approx(-3.0)
    assert deltas.loc[("dense", "final_test_accuracy"), "paper"] == pytest.approx(17.97)
    assert deltas.loc[("osp", "cer"), "paper"] == pytest.approx(-5533)
    assert deltas.loc[("osp", "final_gap"), "paper"] == pytest.approx(-14.79)
    assert deltas.loc[("dense", "mean_gap"), "delta"] == pytest.approx(-8.0)
    assert (deltas["method"] == "app").all() and len(deltas) == 8


def test_paper_figures_absent_outside_headline_setting(tmp_path: Path) -> None:
    setting = {**HEADLINE, "dataset": "cifar10"}
    write_result(tmp_path, "dense", 0, [50] * 8, 10.0, **setting)
    write_result(tmp_path, "app", 0, [20] * 8, 2.0, 0.366, **setting)
    deltas = delta_table(cells(load_results(tmp_path)), BLOCK_KEYS)
    assert len(deltas) == 4 and deltas["paper"].isna().all()
    assert deltas.set_index("metric").loc["cer", "delta"] == pytest.approx(160 - 400)


def test_dense_cell_joins_every_pruner_block(tmp_path: Path) -> None:
    base = {"dataset": "cifar10", "arch": "resnet18", "megabatches": 2}
    write_result(tmp_path, "dense", 0, [5, 4], 1.0, **base)  # pruner stays the default, snip
    write_result(tmp_path, "app", 0, [3, 2], 0.5, 0.5, pruner="snip", **base)
    write_result(tmp_path, "app", 0, [4, 3], 0.5, 0.5, pruner="magnitude", **base)
    cell_rows = assign_blocks(cells(load_results(tmp_path)), BLOCK_KEYS)
    assert sorted(map(tuple, cell_rows[["pruner", "method"]].values)) == [
        ("magnitude", "app"), ("magnitude", "dense"), ("snip", "app"), ("snip", "dense")]
    deltas = delta_table(cell_rows, BLOCK_KEYS).set_index(["pruner", "metric"])
    assert deltas.loc[("magnitude", "cer"), "delta"] == pytest.approx(7 - 9)
    assert deltas.loc[("snip", "cer"), "delta"] == pytest.approx(5 - 9)


def test_bootstrap_is_deterministic_and_sane() -> None:
    values = [1.0, 2.0, 4.0, 8.0]
    assert bootstrap_ci(values) == bootstrap_ci(values)
    low, high = bootstrap_ci(values)
    assert min(values) <= low < sum(values) / 4 < high <= max(values)
    assert all(math.isnan(v) for v in bootstrap_ci([3.0]))  # one seed: no interval, not a point
    assert bootstrap_ci([1.0, 3.0]) == (1.0, 3.0)  # two values: means 1, 2, 3; the tails hold 1 and 3
    assert bootstrap_ci([float(v) for v in range(20)]) == (6.9, 11.9)  # pinned: BOOT_SEED 0, the 2.5 and 97.5 %
    uneven = [3.7, 0.233, 1.409, 2.4, 3.273, 4.063, 4.789, 0.465, 1.1, 1.7, 2.272, 2.817, 3.341, 3.844, 4.33, 4.8,
              0.255, 0.698, 1.128, 1.547]  # pinned too: N_BOOT = 2000 resamples (2001 moves the ends by 2e-5)
    assert bootstrap_ci(uneven) == pytest.approx((1.7493275, 3.06971125), abs=1e-9)


def test_corrupt_empty_partial_and_failed_files_are_skipped_with_one_warning_each(grid: Path) -> None:
    partial = json.loads(sorted(grid.glob("*.json"))[0].read_text())  # a good result, before the bad files land
    (grid / "empty.json").write_text("")
    (grid / "corrupt.json").write_text('{"schema_version": 1, "status": "ok", "steps": [')
    (grid / "manifest.json").write_text('{"cells": []}')
    (grid / "failed.json").write_text(json.dumps({"schema_version": 1, "status": "failed", "config_hash": "x",
                                                  "error": "CUDA out of memory"}))
    partial["steps"] = partial["steps"][:3]
    partial["cer"] = sum(s["test_errors"] for s in partial["steps"])
    (grid / "partial.json").write_text(json.dumps(partial))
    warnings: list[str] = []
    frame = load_results(grid, warn=warnings.append)
    assert frame["config_hash"].nunique() == 6
    assert len(warnings) == 5
    for name, reason in [("empty.json", "empty"), ("corrupt.json", "not valid JSON"),
                         ("manifest.json", "not an almabench result"),
                         ("failed.json", "status 'failed': CUDA out of memory"), ("partial.json", "3 of 8 steps")]:
        assert any(name in w and reason in w for w in warnings), (name, warnings)

    result = CliRunner().invoke(report, [str(grid), "--format", "png"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning: skipped") == 5


def test_report_writes_tables_plots_and_report_md(grid: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    result = CliRunner().invoke(report, [str(grid), "--out", str(out), "--format", "png", "--figures", "all"])
    assert result.exit_code == 0, result.output
    assert "85.00 ± 7.07" in result.stdout  # app's final accuracy in the terminal table
    assert "+17.97" in result.stdout
    for name in ("tables.md", "tables.csv", "tables.tex", "report.md"):
        assert (out / name).stat().st_size > 0
    csv = pd.read_csv(out / "tables.csv")
    row = csv[(csv["kind"] == "delta") & (csv["baseline"] == "osp") & (csv["metric"] == "cer")]
    assert row["mean"].item() == pytest.approx(-115.0) and row["paper"].item() == pytest.approx(-5533)
    md = (out / "tables.md").read_text()
    assert "| app | 2 | 85.00 ± 7.07 | 120 ± 57 |" in md
    assert r"85.00 $\pm$ 7.07" in (out / "tables.tex").read_text()
    pngs = sorted((out / "figures").glob("*.png"))
    kinds = {p.name.split("_")[0] for p in pngs}
    assert {"accuracy", "gap", "cer", "density", "layers"} <= kinds and len(pngs) >= 5
    assert not list((out / "figures").glob("*.pdf"))
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    report_md = (out / "report.md").read_text()
    assert "feedc0ffee" in report_md
    for path in grid.rglob("*.json"):
        assert path.stem in report_md  # every cell is named by its config hash
        # and by its file, relative to the results folder (not to the report's, ../results/...)
        assert f" | {path.relative_to(grid).as_posix()} |" in report_md
    assert "../" not in report_md and "cifar100/nested/" in report_md
    assert "](figures/" in report_md
    paths = [str(grid / "a.json"), str(grid / "cifar100" / "nested" / "b.json")]
    assert results_root(paths, grid) == results_root(paths, f"{grid}, {tmp_path}") == grid  # several: the shared
    assert results_root(paths, None) == grid


def test_a_highlight_naming_no_method_of_the_report_is_one_line(grid: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(report, [str(grid), "--out", str(tmp_path / "rep"), "--highlight", "app,apx"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        "Error: --highlight names method(s) not in the report: apx (its methods: app, dense, osp)"]
    assert not (tmp_path / "rep").exists()


def test_filters_and_group_by(grid: Path, tmp_path: Path) -> None:
    frame = load_results(grid)
    assert set(filter_results(frame, methods=["app", "dense"])["method"]) == {"app", "dense"}
    assert filter_results(frame, dataset="cifar10").empty
    assert parse_group_by("+replay", frame.columns) == [*BLOCK_KEYS, "replay"]
    assert with_varying_splits(list(BLOCK_KEYS), frame) == list(BLOCK_KEYS)  # one protocol: no split
    mixed = frame.assign(protocol=["released" if i % 2 else "paper" for i in range(len(frame))])
    assert with_varying_splits(list(BLOCK_KEYS), mixed) == [*BLOCK_KEYS, "protocol"]
    with pytest.raises(AlmabenchError, match="unknown --group-by"):
        parse_group_by("dataset,colour", frame.columns)
    result = CliRunner().invoke(report, [str(grid), "--out", str(tmp_path / "r"), "--format", "png",
                                         "--methods", "app,dense"])
    assert result.exit_code == 0, result.output
    assert "osp" not in result.stdout
    result = CliRunner().invoke(report, [str(grid), "--group-by", "dataset,colour"])
    assert result.exit_code != 0 and "unknown --group-by key(s) colour" in result.output


def test_cells_differing_beyond_the_seed_get_their_own_rows(tmp_path: Path) -> None:
    """Two epoch budgets of a scale ladder are two rows, never one average."""
    write_result(tmp_path, "app", 0, [5, 4], 1.0, 0.5, megabatches=2, epochs=3)
    write_result(tmp_path, "app", 1, [6, 2], 1.0, 0.5, megabatches=2, epochs=5)
    result = CliRunner().invoke(report, [str(tmp_path), "--format", "png"])
    assert result.exit_code == 0, result.output
    assert "differ beyond the seed" not in result.stderr
    assert "/ epochs=3 / milestones=(1, 2) ==\nmethod" in result.stdout
    assert "/ epochs=5 / milestones=(2, 4) ==\nmethod" in result.stdout
    cers = [line.split()[3] for line in result.stdout.splitlines() if line.startswith("app ")]
    assert cers == ["9", "8"]


@pytest.mark.parametrize("setup", ["empty", "missing", "only-corrupt", "filtered-out"])
def test_no_results_exits_nonzero_with_one_clear_line(tmp_path: Path, setup: str) -> None:
    folder = tmp_path / "results"
    args = [str(folder)]
    if setup != "missing":
        folder.mkdir()
    if setup == "only-corrupt":
        (folder / "a.json").write_text("not json")
    if setup == "filtered-out":
        write_result(folder, "dense", 0, [5, 4], 1.0, megabatches=2)
        args += ["--methods", "osp"]
    result = CliRunner().invoke(report, args)
    assert result.exit_code != 0
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and ("no finished results" in error_lines[0] or "does not exist" in
                                      error_lines[0] or "match the filters" in error_lines[0])
    assert "Traceback" not in result.output
    assert not (folder / "report").exists()


@pytest.mark.parametrize(("df", "expected"), [(1, 12.7062047), (2, 4.3026527), (3, 3.1824463), (4, 2.7764451),
                                              (9, 2.2621572), (29, 2.0452296), (30, 2.0422725)])
def test_t_quantile_matches_the_textbook_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-6)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-6)  # symmetric


def test_t_quantile_other_levels_and_the_normal_limit() -> None:
    assert t_quantile(0.995, 1) == pytest.approx(63.656741, abs=1e-5)
    assert t_quantile(0.95, 10) == pytest.approx(1.8124611, abs=1e-6)
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-12)
    assert t_quantile(0.975, 1000) == pytest.approx(1.9623391, abs=1e-6)  # last df summed exactly
    assert t_quantile(0.975, 1001) == pytest.approx(1.9623367, abs=1e-6)  # first df of the expansion
    assert t_quantile(0.975, 10**7) == pytest.approx(1.9599641, abs=1e-6)  # the normal limit
    with pytest.raises(ValueError):
        t_quantile(0.975, 0)
    for p in (0.0, 1.0):
        with pytest.raises(ValueError, match=f"needs 0 < p < 1 and a positive integer df, got p={p}, df=5"):
            t_quantile(p, 5)


@pytest.mark.parametrize(("p", "df", "expected", "tolerance"), [  # scipy.stats.t.ppf (scipy 1.17.1)
    (0.9, 1001, 1.2823978745810514, 1e-12), (0.975, 1001, 1.9623367052808798, 3e-12),
    (0.995, 1500, 2.579110932109593, 5e-12)])
def test_t_quantile_past_the_exact_sum_is_the_expansion_to_twelve_digits(p, df, expected, tolerance) -> None:
    """Every term of A&S 26.7.5 counts here: the 1/df³ term alone is 3e-12 to 3e-9 at df = 1001."""
    assert t_quantile(p, df) == pytest.approx(expected, abs=tolerance)


def test_t_interval_is_the_textbook_one() -> None:
    # differences 1, 2, 4: mean 2.3333, sd 1.5275, half-width 4.30265 · 1.52753 / √3 = 3.79458
    interval = t_interval([1.0, 2.0, 4.0])
    assert (interval.n, interval.kind) == (3, "t")
    assert interval.low == pytest.approx(7 / 3 - 3.794583, abs=1e-5)
    assert interval.high == pytest.approx(7 / 3 + 3.794583, abs=1e-5)
    one = t_interval([3.0, float("nan")])  # nan is no value: one left, no interval
    assert one.n == 1 and one.kind == "" and math.isnan(one.low) and math.isnan(one.high)


def test_bootstrap_only_from_twenty_values_on() -> None:
    few = [float(v) for v in range(19)]
    assert mean_interval(few).kind == "t" and mean_interval(few) == t_interval(few)
    many = [float(v) for v in range(20)]  # README: a bootstrap from 20 seeds on
    interval = mean_interval(many)
    assert interval.kind == "bootstrap" and (interval.low, interval.high) == bootstrap_ci(many)
    assert interval.low < 9.5 < interval.high


def test_paired_differences_leave_out_seeds_of_one_method() -> None:
    a = pd.Series({0: 5.0, 1: 6.0, 2: 8.0})
    b = pd.Series({0: 4.0, 1: 4.0, 3: 100.0, 2: float("nan")})
    assert paired_differences(a, b).to_dict() == {0: 1.0, 1: 2.0}


@pytest.fixture
def unpaired(tmp_path: Path) -> Path:
    """T = 2, outside the headline setting. final gap: app 1, 2, 4 (seeds 0-2), dense 0 (seeds 0-3),
    osp 10 (seed 0 only), gmp 0 (seed 7 only). CER: app 21, 22, 24; dense 20, 20, 20, 99 (seed 3 unpaired);
    osp 30. The differences app - dense over seeds 0-2 are 1, 2, 4 for both CER and the gap."""
    base = {"dataset": "digits", "arch": "convnet", "megabatches": 2}
    for seed, errors, gap in [(0, [10, 11], 1.0), (1, [11, 11], 2.0), (2, [12, 12], 4.0)]:
        write_result(tmp_path, "app", seed, errors, gap, 0.5, **base)
    for seed, errors in [(0, [10, 10]), (1, [10, 10]), (2, [10, 10]), (3, [49, 50])]:
        write_result(tmp_path, "dense", seed, errors, 0.0, **base)
    write_result(tmp_path, "osp", 0, [15, 15], 10.0, 0.5, **base)
    write_result(tmp_path, "gmp", 7, [15, 15], 0.0, 0.5, **base)
    return tmp_path


def test_deltas_are_paired_by_seed_with_a_t_interval(unpaired: Path) -> None:
    deltas = delta_table(cells(load_results(unpaired)), BLOCK_KEYS)
    assert list(dict.fromkeys(zip(deltas["method"], deltas["baseline"]))) == [
        ("app", "dense"), ("app", "osp"), ("app", "gmp")]  # every other method, added baselines too
    rows = deltas.set_index(["baseline", "metric"])
    gap = rows.loc[("dense", "final_gap")]
    assert gap["delta"] == pytest.approx(7 / 3)  # seed 3 of dense is left out of the pair
    assert (gap["ci_low"], gap["ci_high"]) == (pytest.approx(7 / 3 - 3.794583, abs=1e-5),
                                               pytest.approx(7 / 3 + 3.794583, abs=1e-5))
    assert (gap["n_pairs"], gap["n"], gap["n_baseline"], gap["interval"]) == (3, 3, 4, "t")
    assert rows.loc[("dense", "cer"), "delta"] == pytest.approx(7 / 3)  # 21-20, 22-20, 24-20
    assert rows.loc[("dense", "final_test_accuracy"), "delta"] == pytest.approx(-4 / 3)  # 89-90, 89-90, 88-90
    osp = rows.loc[("osp", "final_gap")]
    assert osp["delta"] == pytest.approx(1 - 10) and osp["n_pairs"] == 1 and math.isnan(osp["ci_low"])
    gmp = rows.loc[("gmp", "cer")]
    assert gmp["n_pairs"] == 0 and math.isnan(gmp["delta"]) and gmp["paper"] is None


def test_delta_rendering_states_the_pairs(unpaired: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(report, [str(unpaired), "--out", str(tmp_path / "rep"), "--format", "png"])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "rep" / "tables.md").read_text()
    assert "| app - dense | final gap | +2.33 | [-1.46, +6.13] | 3 paired seeds (of 3 vs 4) |" in md
    assert "| app - osp | final gap | -9.00 | n/a (1 seed) | 1 paired seed (of 3 vs 1) |" in md
    assert "| app - gmp | CER | - | n/a (no common seed) | 0 paired seeds (of 3 vs 1) |" in md
    assert "paired by seed" in md and "t(0.975, n-1)" in md
    csv = pd.read_csv(tmp_path / "rep" / "tables.csv")
    row = csv[(csv["kind"] == "delta") & (csv["baseline"] == "dense") & (csv["metric"] == "final_gap")]
    assert row["n_pairs"].item() == 3 and row["interval"].item() == "t"


def test_each_app_variant_against_every_other_method_once() -> None:
    methods = ["rigl", "app-released", "dense", "gmp", "app", "osp"]
    assert comparisons(methods) == [
        ("app", "dense"), ("app", "osp"), ("app", "gmp"), ("app", "rigl"), ("app", "app-released"),
        ("app-released", "dense"), ("app-released", "osp"), ("app-released", "gmp"), ("app-released", "rigl")]
    assert comparisons(["dense", "osp"]) == []


def test_slugs_keep_letters_of_any_script_and_hash_what_they_replace() -> None:
    block = {"megabatches": 8, "pruner": "snip"}
    chinese, japanese = block_slug({"dataset": "数据.npz", **block}), block_slug({"dataset": "データ.npz", **block})
    assert (chinese, japanese) == ("数据.npz_T8_snip", "データ.npz_T8_snip")
    path, spaced = block_slug({"dataset": "data/x.npz", **block}), block_slug({"dataset": "data x.npz", **block})
    assert path.startswith("data-x.npz_T8_snip-") and spaced.startswith("data-x.npz_T8_snip-") and path != spaced
    assert block_slug({"dataset": "cifar10", "arch": "resnet18", "megabatches": 8, "tau": 4.5}) == \
        "cifar10_resnet18_T8_tau4.5"


def test_figure_writer_never_gives_two_figures_one_name(tmp_path: Path) -> None:
    writer = FigureWriter(tmp_path, ["png"])
    assert [writer.unique(n) for n in ("cer_a", "cer_b", "CER_a", "cer_a")] == ["cer_a", "cer_b", "CER_a-2",
                                                                               "cer_a-3"]


def test_datasets_whose_names_differ_only_in_non_ascii_letters_get_their_own_figures(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    for dataset in ("数据.npz", "データ.npz"):
        write_result(tmp_path / "results", "dense", 0, [5, 4], 1.0, dataset=dataset, megabatches=2)
        write_result(tmp_path / "results", "app", 0, [3, 2], 1.0, 0.5, dataset=dataset, megabatches=2)
    out = tmp_path / "rep"
    result = CliRunner().invoke(report, [str(tmp_path / "results"), "--out", str(out), "--format", "png",
                                         "--figures", "all"])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    # 6 per block (paired differences, and the gap's difference from dense of a block of one seed, included), one
    # per-layer figure and one forest plot each
    assert "16 figures" in result.stdout and len(pngs) == 16
    assert "forest_数据.npz_convnet_T2.png" in pngs
    assert "cer_数据.npz_convnet_T2_snip_tau4.5.png" in pngs and "cer_データ.npz_convnet_T2_snip_tau4.5.png" in pngs
    assert "layers_数据.npz_convnet_T2_tau4.5.png" in pngs
    report_md = (out / "report.md").read_text()
    assert all(f"](figures/{name})" in report_md for name in pngs)


def test_rows_averaging_other_threads_devices_or_precisions_are_warned_about(tmp_path: Path) -> None:
    base = {"megabatches": 2}
    write_result(tmp_path, "app", 0, [5, 4], 1.0, 0.5, env={"torch_threads": 1, "device": "cuda:0"}, **base)
    write_result(tmp_path, "app", 1, [5, 4], 1.0, 0.5, env={"torch_threads": 4, "device": "cuda:1"}, **base)
    write_result(tmp_path, "dense", 0, [5, 4], 1.0, env={"torch_threads": 2, "precision": "fp32"}, **base)
    write_result(tmp_path, "dense", 1, [5, 4], 1.0, env={"torch_threads": 2, "precision": "bf16",
                                                         "device": "cuda:0"}, **base)
    write_result(tmp_path, "osp", 0, [5, 4], 1.0, 0.5, env={"torch_threads": 2}, **base)
    write_result(tmp_path, "osp", 1, [5, 4], 1.0, 0.5, **base)  # threads unrecorded: no clash
    out = tmp_path / "rep"
    result = CliRunner().invoke(report, [str(tmp_path), "--out", str(out), "--format", "png"])
    assert result.exit_code == 0, result.output
    tail = ("floating-point reductions differ with those, so results are only bit-repeatable at the same thread "
            "count, device and precision")
    app = (f"digits / convnet / T=2 / snip / tau=4.5, app: averages cells run with different torch threads in "
           f"[1, 4]; {tail}")  # cuda:0 and cuda:1 are one device type
    dense = (f"digits / convnet / T=2 / snip / tau=4.5, dense: averages cells run with different device type in "
             f"[cpu, cuda]; precision in [bf16, fp32]; {tail}")
    lines = [line for line in result.stderr.splitlines() if "bit-repeatable" in line]
    assert lines == [f"warning: {app}", f"warning: {dense}"]
    report_md = (out / "report.md").read_text()
    assert f"- {app}\n" in report_md and f"- {dense}\n" in report_md


def _steps(rows: list[tuple[str, int, int, float]], column: str) -> pd.DataFrame:
    """Step rows (method, seed, step, value) as the plots read them."""
    frame = pd.DataFrame(rows, columns=["method", "seed", "step", column])
    return frame.assign(config_hash=frame["method"] + frame["seed"].astype(str), megabatches=2)


def test_accuracy_band_is_clipped_to_100() -> None:
    # step 2: 100, 100, 94 -> mean 98, std 3.4641: the band would reach 101.46
    rows = _steps([("app", s, t, v) for s, (a, b) in enumerate([(90, 100), (90, 100), (92, 94)])
                   for t, v in ((1, a), (2, b))], "test_accuracy")
    fig = curve_figure(rows, "test_accuracy", "acc", {"dataset": "d"}, palette(["app"]), bounds=(0.0, 100.0))
    band = fig.axes[0].collections[0].get_paths()[0].vertices
    assert sorted(set(band[band[:, 0] == 2, 1])) == [pytest.approx(98 - math.sqrt(12), abs=1e-9), 100.0]
    assert "clipped to [0, 100]" in fig._suptitle.get_text()
    plt.close(fig)


def test_density_target_is_drawn_above_the_measured_lines_and_named_in_the_legend() -> None:
    rows = _steps([(m, 0, t, d) for m, ds in (("app", (0.8, 0.5)), ("dense", (1.0, 1.0))) for t, d in
                   zip((1, 2), ds)], "density")
    rows["target_density"] = rows["density"]  # measured exactly on schedule: the target used to vanish
    fig = density_figure(rows, {"dataset": "d"}, palette(["dense", "app"]))
    ax = fig.axes[0]
    targets = [line for line in ax.get_lines() if line.get_gid() == "target"]
    measured = [line for line in ax.get_lines() if line.get_gid() != "target"]
    assert len(targets) == 2 and len(measured) == 2
    assert min(t.get_zorder() for t in targets) > max(m.get_zorder() for m in measured)  # not hidden by a line
    assert all(t.get_color() == "black" and t.get_linestyle() == "--" for t in targets)
    assert ax.get_yscale() == "linear"  # 0.5 to 1: no decade
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["dense", "app", "target\n(schedule)"]
    plt.close(fig)


def test_cer_plot_shows_the_differences_on_an_axis_not_from_zero() -> None:
    cells_ = pd.DataFrame({"method": ["dense", "osp", "app"] * 2, "seed": [0, 0, 0, 1, 1, 1],
                           "cer": [164, 162, 159, 166, 164, 161], "megabatches": 8})
    cells_["config_hash"] = cells_["method"] + cells_["seed"].astype(str)
    fig = cer_figure(cells_, {"dataset": "d"}, palette(["dense", "osp", "app"]))
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert 150 < low < 159 and 166 < high < 175  # 160 / 163 / 165 are told apart
    assert [t.get_text() for t in ax.texts] == ["160 (-5)", "163 (-2)", "165"]
    assert [c.lines[0].get_xdata()[0] for c in ax.containers] == [160, 163, 165]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["app", "osp", "dense"]  # lowest CER on top
    assert "lowest except dense: app 160 (dense 165)" in ax.get_title()
    plt.close(fig)


def test_layer_rows_are_weight_names_and_each_panel_names_its_method_pruner_and_seeds(tmp_path: Path) -> None:
    assert layer_labels(["0.weight", "4.weight", "module.layer1.0.conv1.weight", "fc.weight"]) == [
        "0.weight (layer 1)", "4.weight (layer 2)", "layer1.0.conv1", "fc"]
    rows = pd.DataFrame([{"method": m, "pruner": p, "step": t, "layer": n, "layer_density": 0.5,
                          "config_hash": f"{m}{p}{s}"}
                         for m, p, seeds in (("app", "magnitude", 2), ("app", "snip", 3), ("rigl", "snip", 3))
                         for s in range(seeds) for t in (1, 2) for n in ("0.weight", "4.weight", "8.weight")])
    fig = layer_figure(rows, {"dataset": "d"})
    snip, magnitude, rigl = (ax for ax in fig.axes if ax.get_images())
    assert [t.get_text() for t in snip.get_yticklabels()] == ["0.weight (layer 1)", "4.weight (layer 2)",
                                                              "8.weight (layer 3)"]
    assert [ax.get_title() for ax in (snip, magnitude, rigl)] == ["app · snip\nn = 3", "app · magnitude\nn = 2",
                                                                  "rigl\nn = 3"]  # rigl ignores the pruner
    assert fig._suptitle.get_text().startswith("per-layer density: d\n")
    plt.close(fig)


def test_one_layer_figure_per_block_holds_every_pruning_method(grid: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(report, [str(grid), "--out", str(tmp_path / "rep"), "--format", "png", "--figures",
                                         "layers"])
    assert result.exit_code == 0, result.output
    layers = sorted(p.name for p in (tmp_path / "rep" / "figures").glob("layers_*.png"))
    assert layers == ["layers_cifar100_resnet50_T8_tau4.5.png"]


def test_the_mean_gap_delta_is_paired_by_seed_from_each_cells_mean_gap_not_its_final_gap(tmp_path: Path) -> None:
    for method, seed, final_gap, mean_gap in (("dense", 0, 30.0, 20.0), ("dense", 1, 30.0, 24.0),
                                               ("app", 0, 30.0, 15.0), ("app", 1, 30.0, 17.0)):
        path = write_result(tmp_path, method, seed, [50] * 8, final_gap, 1.0 if method == "dense" else 0.366)
        result = json.loads(path.read_text())
        path.write_text(json.dumps({**result, "mean_gap": mean_gap}))
    deltas = delta_table(cells(load_results(tmp_path)), BLOCK_KEYS).set_index(["baseline", "metric"])
    assert deltas.loc[("dense", "mean_gap"), "delta"] == pytest.approx(-6.0)  # paired: (-5 + -7) / 2
    assert deltas.loc[("dense", "mean_gap"), "n_pairs"] == 2
    assert deltas.loc[("dense", "final_gap"), "delta"] == pytest.approx(0.0)


def test_a_method_at_another_scope_is_its_own_row_in_the_block_of_app_at_global_scope(tmp_path: Path) -> None:
    for seed in (0, 1):
        write_result(tmp_path, "dense", seed, [50] * 8, 10.0)
        write_result(tmp_path, "app", seed, [30] * 8, 4.0, 0.366)
        write_result(tmp_path, "rigl", seed, [40] * 8, 6.0, 0.366)
        write_result(tmp_path, "rigl", seed, [35 + seed] * 8, 5.0, 0.366, scope="erk-dense-first")
    out = tmp_path / "report"
    result = CliRunner().invoke(report, [str(tmp_path), "--out", str(out), "--format", "png"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "tables.csv")
    summary = table[table["kind"] == "summary"]
    assert summary["method"].drop_duplicates().tolist() == ["dense", "app", "rigl", "rigl (erk-dense-first)"]
    assert summary[["dataset", "tau"]].drop_duplicates().shape[0] == 1  # one block: scope did not split it
    acc = table[(table["kind"] == "delta") & (table["metric"] == "final_test_accuracy")].set_index("baseline")
    assert acc.loc["rigl", "mean"] == pytest.approx(10.0)  # 40 vs 30 errors of 100 at the last step
    assert acc.loc["rigl (erk-dense-first)", "mean"] == pytest.approx(5.5)  # 35 and 36 vs 30
    assert "app - rigl (erk-dense-first)" in result.output


def test_accuracy_against_density_draws_each_method_through_its_tau_values_and_dense_once(tmp_path: Path) -> None:
    for seed in (0, 1):
        write_result(tmp_path, "dense", seed, [20 + 10 * seed] * 8, 10.0)  # accuracies 80 and 70: std 7.07
        for tau, density, app_errors, osp_errors in ((4.5, 0.366, 30, 40), (1.0, 0.8, 25, 35)):
            write_result(tmp_path, "app", seed, [app_errors] * 8, 4.0, density, tau=tau)
            write_result(tmp_path, "osp", seed, [osp_errors] * 8, 4.0, density, tau=tau)
    rows = assign_blocks(cells(load_results(tmp_path)), BLOCK_KEYS)
    assert (rows["method"] == "dense").sum() == 4  # the two dense cells, one copy in each τ's block
    colours = palette(["dense", "osp", "app"])
    fig = accuracy_density_figure(rows, {"dataset": "digits"}, colours)
    accuracy = fig.axes[0]
    lines = {m: [tuple(xy) for xy in line.get_xydata()] for m in ("dense", "osp", "app")
             for line in accuracy.lines if line.get_color() == colours[m] and line.get_marker() == style(m).marker}
    shift = 10 ** (DODGE / 2)  # osp and app share each density: dodged apart around it
    assert lines["app"] == [pytest.approx((0.366 * shift, 70.0)), pytest.approx((0.8 * shift, 75.0))]
    assert lines["osp"] == [pytest.approx((0.366 / shift, 60.0)), pytest.approx((0.8 / shift, 65.0))]
    assert lines["dense"] == [(1.0, 75.0)]
    (whisker,) = [c for c in accuracy.collections if tuple(c.get_colors()[0][:3]) == tuple(colours["dense"])]
    (segment,) = whisker.get_segments()  # mean ± std of the two dense cells, each counted once
    assert [y for _, y in segment] == pytest.approx([75.0 - math.sqrt(50), 75.0 + math.sqrt(50)])
    assert "std over 2 seeds; points at one density dodged sideways" in fig._suptitle.get_text()  # a point's
    # seeds, not a method's cells (4)
    plt.close(fig)
    result = CliRunner().invoke(report, [str(tmp_path), "--out", str(tmp_path / "r"), "--format", "png"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "r" / "figures").glob("accuracy_vs_density_*")] == [
        "accuracy_vs_density_digits_convnet_T8_snip.png"]
