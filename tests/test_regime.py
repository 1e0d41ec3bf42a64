"""The regime map (analysis/regime.py): APP's paired differences per rung against dense's mean gap there.

The cells are hand-made (tests/test_analysis.write_result) so that every number is known: three rungs (1, 2 and
3 epochs) where dense's gap is 5, 10 and 15 on average and APP − dense in final accuracy is −3, −2 and −1, so the
trend is 0.2 points per gap point and meets zero at a dense gap of 20. The expected differences are computed here
from the JSON files themselves, not through the analysis code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.text import Text
from scipy import stats
from test_analysis import write_result

from almabench.analysis.blocks import BLOCK_KEYS, assign_blocks, scope_in_method, with_varying_splits
from almabench.analysis.cli import report
from almabench.analysis.load import cells, load_results
from almabench.analysis.regime import (
    COMPARED,
    REGIME_COLUMNS,
    RUNG_KEYS,
    VERSUS_DENSE,
    drawn_settings,
    regime_figure,
    regime_table,
    regime_trends,
    rung_label,
)
from almabench.analysis.style import line_kwargs
from almabench.analysis.tables import delta_table, summary_table

SEEDS = (0, 1, 2)
DENSE_GAPS = {1: (4.0, 5.0, 6.0), 2: (9.0, 10.0, 11.0), 3: (14.0, 15.0, 16.0)}  # per epochs (rung), per seed
APP_EXTRA_ERRORS = {1: (3, 4, 2), 2: (2, 3, 1), 3: (1, 2, 0)}  # APP's test errors above dense's: −3, −2, −1 points


def write_rung(folder: Path, epochs: int, arch: str = "convnet") -> None:
    """dense, osp and app at three seeds: dense 40-42 final errors (of 100), osp 5 more, app APP_EXTRA_ERRORS
    more; mean gaps: dense DENSE_GAPS, osp 1 lower, app `epochs` lower; final gaps the same but dense's, 7 higher."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed in SEEDS:
        dense_errors, gap = 40 + seed, DENSE_GAPS[epochs][seed]
        dense = write_result(folder, "dense", seed, [dense_errors] * 2, gap, epochs=epochs, arch=arch)
        result = json.loads(dense.read_text())
        dense.write_text(json.dumps({**result, "final_gap": gap + 7.0}))  # the axis is the mean gap, not the final
        write_result(folder, "osp", seed, [dense_errors + 5] * 2, gap - 1, 0.5, epochs=epochs, arch=arch)
        write_result(folder, "app", seed, [dense_errors + APP_EXTRA_ERRORS[epochs][seed]] * 2, gap - epochs, 0.5,
                     epochs=epochs, arch=arch)


@pytest.fixture
def rungs(tmp_path: Path) -> list[Path]:
    """Three rung folders of the conv net, and ResNet-20 at the first rung only (in the first folder)."""
    folders = [tmp_path / "studies" / f"epochs{e}" for e in (1, 2, 3)]
    for epochs, folder in zip((1, 2, 3), folders):
        write_rung(folder, epochs)
    write_rung(folders[0], 1, arch="resnet20")
    return folders


def expected_from_files(folders: list[Path]) -> pd.DataFrame:
    """Per (arch, epochs, baseline, metric): dense's mean of mean_gap, and app − baseline paired by seed with
    its 95 % t-interval, from the JSON files alone."""
    records = []
    for folder in folders:
        for path in folder.glob("*.json"):
            result = json.loads(path.read_text())
            c = result["config"]
            records.append({"arch": c["arch"], "epochs": c["epochs"], "method": c["method"], "seed": c["seed"],
                            "final_test_accuracy": result["final_test_accuracy"], "final_gap": result["final_gap"],
                            "mean_gap": result["mean_gap"]})
    frame = pd.DataFrame(records)
    rows = []
    for (arch, epochs), rung in frame.groupby(["arch", "epochs"]):
        by = rung.set_index(["method", "seed"])
        for baseline in ("dense", "osp"):
            for metric in ("final_test_accuracy", "final_gap"):
                d = [by.loc[("app", s), metric] - by.loc[(baseline, s), metric] for s in SEEDS]
                mean, sd = sum(d) / len(d), pd.Series(d).std(ddof=1)
                half = stats.t.ppf(0.975, len(d) - 1) * sd / math.sqrt(len(d))
                rows.append({"arch": arch, "epochs": epochs, "baseline": baseline, "metric": metric,
                             "dense_gap": by.loc["dense", "mean_gap"].mean(), "delta": mean,
                             "ci_low": mean - half, "ci_high": mean + half})
    return pd.DataFrame(rows)


def regime_of(folders: list[Path]) -> tuple[pd.DataFrame, list[str]]:
    """The regime table as the report builds it."""
    frame = load_results(folders)
    keys = with_varying_splits(list(BLOCK_KEYS), frame)
    cell_rows = assign_blocks(cells(scope_in_method(frame)), keys)
    return regime_table(summary_table(cell_rows, keys), delta_table(cell_rows, keys), keys), keys


def test_the_regime_table_holds_each_rungs_paired_differences_at_dense_gap(rungs: list[Path]) -> None:
    table, keys = regime_of(rungs)
    expected = expected_from_files(rungs)
    merged = expected.merge(table, on=["arch", "epochs", "baseline", "metric"], suffixes=("", "_got"))
    assert len(merged) == len(expected) == 4 * 4  # 4 (arch, rung) pairs x 2 baselines x 2 metrics
    for column in ("dense_gap", "delta", "ci_low", "ci_high"):
        assert merged[f"{column}_got"].tolist() == pytest.approx(merged[column].tolist(), abs=1e-9), column
    app_dense = table[(table["arch"] == "convnet") & (table["baseline"] == "dense")
                      & (table["metric"] == "final_test_accuracy")]
    assert app_dense["dense_gap"].tolist() == pytest.approx([5.0, 10.0, 15.0])
    assert app_dense["delta"].tolist() == pytest.approx([-3.0, -2.0, -1.0])


def test_the_trend_meets_zero_where_the_line_through_the_rungs_does(rungs: list[Path]) -> None:
    table, keys = regime_of(rungs)
    trends = regime_trends(table, keys).set_index(["arch", "baseline", "metric"])
    line = trends.loc[("convnet", "dense", "final_test_accuracy")]
    assert (line["rungs"], line["slope"], line["intercept"], line["zero_at"]) == pytest.approx((3, 0.2, -4.0, 20.0))
    assert ("resnet20", "dense", "final_test_accuracy") not in trends.index  # one rung: no line


def test_the_figure_plots_each_comparisons_paired_differences_per_architecture(rungs: list[Path]) -> None:
    table, keys = regime_of(rungs)
    [(setting, rows)] = drawn_settings(table, keys)
    fig = regime_figure(rows, setting, keys, 3.5, 2.5)
    expected = expected_from_files(rungs)
    try:
        axes = fig.axes
        assert [ax.get_title() for ax in axes[:2]] == ["convnet", "resnet20"]  # one column of panels per arch
        assert [ax.get_xlabel().startswith("dense's mean") for ax in axes] == [False, False, True, True]
        for ax, (arch, metric) in zip(axes, [("convnet", "final_test_accuracy"), ("resnet20", "final_test_accuracy"),
                                             ("convnet", "final_gap"), ("resnet20", "final_gap")]):
            zero = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [0, 0]]
            assert len(zero) == 1 and list(zero[0].get_xdata()) == [0, 1]  # the zero line, across the panel
            dodges = set()
            for baseline in ("dense", "osp"):
                [line] = [ln for ln in ax.get_lines() if ln.get_label() == f"app − {baseline}"]
                want = expected[(expected["arch"] == arch) & (expected["baseline"] == baseline)
                                & (expected["metric"] == metric)].sort_values("dense_gap")
                assert list(line.get_ydata()) == pytest.approx(want["delta"].tolist(), abs=1e-9)
                dodged = pd.Series(line.get_xdata()) / want["dense_gap"].to_numpy()
                assert dodged.tolist() == pytest.approx([dodged.iloc[0]] * len(dodged))  # one dodge per line
                assert dodged.iloc[0] == pytest.approx(1.0, abs=0.05)
                dodges.add(round(dodged.iloc[0], 6))
            assert len(dodges) == 2  # the comparisons sit a little apart at each rung, not on one another
            whiskers = [seg for coll in ax.collections for seg in coll.get_segments()]
            ends = sorted((round(seg[0][1], 9), round(seg[1][1], 9)) for seg in whiskers)
            want = expected[(expected["arch"] == arch) & (expected["metric"] == metric)]
            assert ends == sorted((round(lo, 9), round(hi, 9)) for lo, hi in zip(want["ci_low"], want["ci_high"]))
    finally:
        plt.close(fig)


def test_report_over_several_folders_or_their_parent_draws_the_same_map(rungs: list[Path], tmp_path: Path) -> None:
    runner = CliRunner()
    named = runner.invoke(report, [*map(str, rungs), "--out", str(tmp_path / "a"), "--format", "png"])
    assert named.exit_code == 0, named.output
    parent = runner.invoke(report, [str(rungs[0].parent), "--out", str(tmp_path / "b"), "--format", "png"])
    assert parent.exit_code == 0, parent.output
    assert (tmp_path / "a" / "regime.csv").read_text() == (tmp_path / "b" / "regime.csv").read_text()
    assert (tmp_path / "a" / "figures" / "regime_digits_snip_tau4.5.png").is_file()
    tables = (tmp_path / "a" / "tables.md").read_text()
    assert "## Regime map: digits / snip / tau=4.5" in tables
    assert "| convnet | 1 ep | app - dense | 5.00 ± 1.00 (3) | -3.00 | [-5.48, -0.52] |" in tables
    assert "== regime map: digits / snip / tau=4.5 ==" in named.output
    default = runner.invoke(report, [*map(str, rungs), "--format", "png"])  # default: report/ where they meet
    assert default.exit_code == 0, default.output
    assert (rungs[0].parent / "report" / "regime.csv").is_file()


def test_one_rung_is_no_map(rungs: list[Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(report, [str(rungs[1]), "--out", str(tmp_path / "one"), "--format", "png"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "one" / "regime.csv").exists()
    assert not list((tmp_path / "one" / "figures").glob("regime_*")) and "regime map" not in result.output


def test_a_missing_folder_among_several_is_one_line(rungs: list[Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(report, [str(rungs[0]), str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: results folder {tmp_path / 'nowhere'} does not exist"]
    assert not (tmp_path / "r").exists()


def test_a_setting_with_one_rung_gets_no_figure_of_its_own(rungs: list[Path]) -> None:
    for seed in SEEDS:  # APP with another pruner at the first rung only: dense joins its block, one rung
        write_result(rungs[0], "app", seed, [45] * 2, 3.0, 0.5, epochs=1, pruner="magnitude")
    table, keys = regime_of(rungs)
    assert set(table["pruner"]) == {"snip", "magnitude"}
    assert [setting["pruner"] for setting, _ in drawn_settings(table, keys)] == ["snip"]


def test_two_rungs_make_a_map_and_its_csv_holds_exactly_the_documented_columns(rungs: list[Path],
                                                                               tmp_path: Path) -> None:
    table, keys = regime_of(rungs[:2])
    [(setting, rows)] = drawn_settings(table, keys)  # two rungs are enough for a map
    fig = regime_figure(rows, setting, keys, 3.5, 2.5)
    try:
        low, high = fig.axes[0].get_xlim()
        assert low < rows["dense_gap"].min() and high > rows["dense_gap"].max()  # every rung inside the axis
    finally:
        plt.close(fig)
    result = CliRunner().invoke(report, [*map(str, rungs[:2]), "--out", str(tmp_path / "two"), "--format", "png"])
    assert result.exit_code == 0, result.output
    header = (tmp_path / "two" / "regime.csv").read_text().splitlines()[0]
    assert header == ",".join([*keys, *REGIME_COLUMNS])


def test_a_rung_is_named_by_what_tells_it_apart_and_t_only_where_it_is_not_8() -> None:
    row = pd.Series({"stream_images": float("nan"), "epochs": 1, "megabatches": 32})
    assert rung_label(row, ["stream_images", "epochs", "megabatches"]) == "all, 1 ep, T=32"
    assert rung_label(row.replace(32, 8), ["stream_images", "epochs", "megabatches"]) == "all, 1 ep"
    assert rung_label(pd.Series({"stream_images": 5000.0, "epochs": 32, "megabatches": 9}),
                      ["stream_images", "megabatches"]) == "5k img, T=9"


def hand_rows(spans: list[tuple[float, float, float, int]]) -> tuple[pd.DataFrame, list[str]]:
    """A regime table of one comparison (app − dense, final accuracy) at rungs of 1, 2, 3 ... epochs, each
    (dense gap, delta, interval half-width, pairs), and its final gap at 0 with a unit interval."""
    keys = ["dataset", "arch", "epochs"]
    rows = []
    for epochs, (gap, delta, half, pairs) in enumerate(spans, start=1):
        for metric, d, h in (("final_test_accuracy", delta, half), ("final_gap", 0.0, 1.0)):
            rows.append({"dataset": "d", "arch": "convnet", "epochs": epochs, "dense_gap": gap, "dense_gap_std": 0.1,
                         "dense_n": 3, "method": "app", "baseline": "dense", "metric": metric, "delta": d,
                         "ci_low": d - h, "ci_high": d + h, "n_pairs": pairs})
    return pd.DataFrame(rows), keys


@contextmanager
def hand_figure(spans: list[tuple[float, float, float, int]]) -> Iterator[plt.Figure]:
    """The regime figure of hand_rows(spans), closed afterwards."""
    rows, keys = hand_rows(spans)
    fig = regime_figure(rows, {"dataset": "d"}, keys, 3.5, 2.5)
    try:
        yield fig
    finally:
        plt.close(fig)


def test_two_paired_seeds_are_a_filled_point_with_whiskers_and_one_is_hollow() -> None:
    with hand_figure([(2.0, -1.0, 0.5, 2), (4.0, -0.5, 0.5, 1), (8.0, 0.0, 0.5, 3)]) as fig:
        ax = fig.axes[0]
        filled = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and ln.get_markerfacecolor() != "white"]
        hollow = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and ln.get_markerfacecolor() == "white"]
        assert [list(ln.get_ydata()) for ln in filled] == [[-1.0, 0.0]]
        assert [list(ln.get_ydata()) for ln in hollow] == [[-0.5]]
        assert len([seg for coll in ax.collections for seg in coll.get_segments()]) == 2  # whiskers: 2 rungs
        assert "arrow" not in fig._suptitle.get_text()  # nothing was cut


def test_a_whisker_far_wider_than_the_others_is_cut_at_the_axis_with_arrows() -> None:
    with hand_figure([(2.0, -1.0, 20.0, 3), (4.0, -0.5, 0.5, 3), (8.0, 0.0, 0.5, 3)]) as fig:
        ax = fig.axes[0]
        low, high = ax.get_ylim()
        assert -3.0 < low and high < 3.0  # the axis follows the narrow whiskers, not ±20
        arrows = {ln.get_marker(): list(ln.get_ydata()) for ln in ax.get_lines() if ln.get_marker() in ("v", "^")}
        assert arrows == {"v": [low], "^": [high]}
        assert fig._suptitle.get_text().endswith("arrow = whisker cut at the axis")


def test_zero_stays_in_view_where_every_difference_lies_above_it() -> None:
    with hand_figure([(2.0, 3.0, 0.5, 3), (4.0, 4.0, 0.5, 3), (8.0, 5.0, 0.5, 3)]) as fig:
        low, high = fig.axes[0].get_ylim()
        assert low < 0.0 and high > 5.5  # zero, every mean and every whisker end is in view
        assert low > -0.1 * (5.5 - 0.0) - 1e-9  # and the axis starts at zero (plus its pad), not further down


def test_rungs_without_dense_have_no_place_on_the_axis_and_draw_no_map(rungs: list[Path], tmp_path: Path) -> None:
    for folder in rungs:
        for path in folder.glob("*.json"):
            if json.loads(path.read_text())["config"]["method"] == "dense":
                path.unlink()
    table, keys = regime_of(rungs)
    assert table.empty and drawn_settings(table, keys) == []
    result = CliRunner().invoke(report, [*map(str, rungs), "--out", str(tmp_path / "r"), "--format", "png"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "r" / "regime.csv").exists() and "regime map" not in result.output


def test_blocks_that_differ_in_no_rung_key_are_no_map(rungs: list[Path]) -> None:
    frame = load_results([rungs[1]])
    keys = [k for k in with_varying_splits(list(BLOCK_KEYS), frame) if k not in RUNG_KEYS]
    cell_rows = assign_blocks(cells(scope_in_method(frame)), keys)
    summary, deltas = summary_table(cell_rows, keys), delta_table(cell_rows, keys)
    assert not summary.empty and not deltas.empty
    assert regime_table(summary, deltas, keys).empty


def test_a_wide_whisker_that_ends_just_past_the_others_is_drawn_whole() -> None:
    # whiskers of 0.5, 0.5 and 2.2: the last is over WIDE times the median, but its ends (-2.2, +2.2) lie within
    # REACH (a quarter of the others' range, -2 to 1.5: 0.875) of it on both sides, so the axis takes them in
    with hand_figure([(2.0, -1.5, 0.5, 3), (4.0, 1.0, 0.5, 3), (8.0, 0.0, 2.2, 3)]) as fig:
        ax = fig.axes[0]
        low, high = ax.get_ylim()
        assert (low, high) == pytest.approx((-2.2 - 0.08 * 4.4, 2.2 + 0.08 * 4.4))
        assert not [ln for ln in ax.get_lines() if ln.get_marker() in ("v", "^")]  # nothing cut
        assert "arrow" not in fig._suptitle.get_text()


def test_a_panel_where_every_difference_is_zero_still_has_a_range() -> None:
    with hand_figure([(2.0, 0.0, 0.0, 3), (4.0, 0.0, 0.0, 3)]) as fig:
        assert fig.axes[0].get_ylim() == pytest.approx((-0.08, 0.08))  # the pad of a unit range around zero


@pytest.mark.parametrize(("spans", "limits"), [
    ([(2.0, -1.5, 0.5, 3), (4.0, 1.0, 0.5, 3), (8.0, 0.0, 3.0, 3)], (-2.0 - 0.08 * 3.5, 1.5 + 0.08 * 3.5)),
    ([(2.0, 0.0, 0.0, 3), (4.0, 0.0, 0.0, 3), (8.0, 0.0, 0.4, 3)], (-0.08, 0.08)),  # the rest have no range
], ids=["past-a-quarter-of-the-range", "past-a-quarter-of-a-unit"])
def test_a_wide_whisker_reaching_past_reach_is_cut_at_both_ends(spans, limits) -> None:
    with hand_figure(spans) as fig:
        ax = fig.axes[0]
        low, high = ax.get_ylim()
        assert (low, high) == pytest.approx(limits)
        arrows = {ln.get_marker(): list(ln.get_ydata()) for ln in ax.get_lines() if ln.get_marker() in ("v", "^")}
        assert arrows == {"v": [low], "^": [high]}


def test_the_legend_names_a_comparison_that_only_one_architecture_has(rungs: list[Path]) -> None:
    table, keys = regime_of(rungs)
    table = table[(table["arch"] == "convnet") | (table["baseline"] == "dense")]  # osp on the conv net only
    [(setting, rows)] = drawn_settings(table, keys)
    fig = regime_figure(rows, setting, keys, 3.5, 2.5)
    try:
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["app − dense", "app − osp"]
    finally:
        plt.close(fig)


SCRATCH_EXTRA, SP_EXTRA = (6, 7, 8), (1, 0, 2)  # their test errors above dense's at each seed (of 100)


def test_the_warm_start_controls_join_the_map_and_each_method_against_dense_has_a_map_of_its_own(
        rungs: list[Path], tmp_path: Path) -> None:
    """scratch and shrink-perturb beside app: app − each in the regime map, and X − dense in the second map, with
    the paired means of the files' own numbers, drawn in each method's look."""
    for epochs, folder in zip((1, 2, 3), rungs):
        for seed in SEEDS:
            dense_errors, gap = 40 + seed, DENSE_GAPS[epochs][seed]
            write_result(folder, "scratch", seed, [dense_errors + SCRATCH_EXTRA[seed]] * 2, gap - 4, epochs=epochs)
            write_result(folder, "shrink-perturb", seed, [dense_errors + SP_EXTRA[seed]] * 2, gap - 2, epochs=epochs)
    table, _ = regime_of(rungs)
    acc = table[(table["arch"] == "convnet") & (table["metric"] == "final_test_accuracy")]
    by = acc.set_index(["epochs", "baseline"])["delta"]
    for epochs in (1, 2, 3):  # app − X = (X's errors − app's errors) points, averaged over seeds
        app = APP_EXTRA_ERRORS[epochs]
        assert by[(epochs, "scratch")] == pytest.approx(sum(s - a for s, a in zip(SCRATCH_EXTRA, app)) / 3)
        assert by[(epochs, "shrink-perturb")] == pytest.approx(sum(s - a for s, a in zip(SP_EXTRA, app)) / 3)
    out = tmp_path / "report"
    result = CliRunner().invoke(report, [*map(str, rungs), "--out", str(out), "--format", "png"])
    assert result.exit_code == 0, result.output
    versus = pd.read_csv(out / "regime-vs-dense.csv")
    acc = versus[(versus["arch"] == "convnet") & (versus["metric"] == "final_test_accuracy")]
    assert set(acc["method"]) == {"app", "osp", "scratch", "shrink-perturb"} and set(acc["baseline"]) == {"dense"}
    got = acc.set_index(["epochs", "method"])["delta"]
    for epochs in (1, 2, 3):
        assert got[(epochs, "scratch")] == pytest.approx(-sum(SCRATCH_EXTRA) / 3)
        assert got[(epochs, "shrink-perturb")] == pytest.approx(-sum(SP_EXTRA) / 3)
        assert got[(epochs, "app")] == pytest.approx(-sum(APP_EXTRA_ERRORS[epochs]) / 3)
    gap = versus[(versus["arch"] == "convnet") & (versus["metric"] == "final_gap")].set_index(["epochs", "method"])
    assert gap.loc[(2, "scratch"), "delta"] == pytest.approx(-4.0 - 7.0)  # dense's final gap is 7 above its mean
    fig = regime_figure(versus, {}, ["dataset", "arch", "epochs"], 3.5, 2.5, versus_dense=True)
    try:
        drawn = {line.get_label(): line.get_color() for line in fig.axes[0].get_lines()
                 if not line.get_label().startswith("_")}
    finally:
        plt.close(fig)
    assert drawn.keys() == {"app − dense", "osp − dense", "scratch − dense", "shrink-perturb − dense"}
    assert drawn["scratch − dense"] == line_kwargs("scratch")["color"] != drawn["shrink-perturb − dense"]
    assert sorted(p.name for p in (out / "figures").glob("regime*.png")) == [
        "regime-vs-dense_digits_snip_tau4.5.png", "regime_digits_snip_tau4.5.png"]


DOCS = Path(__file__).resolve().parents[1] / "docs" / "results"


def assert_readable(fig: plt.Figure) -> None:
    """After drawing: no two rung labels overprint, no leader line runs through a label below it, the panels'
    titles sit above the strip, the legend below every panel, and the y labels are one short line, on the first
    column only."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    labels = [t for ax in fig.axes for t in ax.texts if t.get_gid() == "rung"]
    boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the words alone, not the leader line
    assert labels and not [(a.get_text(), b.get_text()) for (a, p), (b, q) in
                           combinations(zip(labels, boxes), 2) if p.overlaps(q)]
    for label, box in zip(labels, boxes):
        x, top = label.axes.get_xaxis_transform().transform((label.xy[0], 1.0))  # where its leader ends
        assert box.y0 > top  # above the panel
        crossed = [t.get_text() for t, b in zip(labels, boxes) if b.y1 < box.y0 and b.x0 <= x <= b.x1]
        assert not crossed, f"the leader of {label.get_text()!r} crosses {crossed}"
    strip = max(b.y1 for b in boxes)
    assert all(ax.title.get_window_extent(renderer).y0 > strip for ax in fig.axes if ax.get_title())
    legend = fig.legends[0].get_window_extent(renderer)
    assert all(legend.y1 < ax.get_tightbbox(renderer).y0 + 1 for ax in fig.axes)
    ylabels = [ax.get_ylabel() for ax in fig.axes]
    ybox = [ax.yaxis.label.get_window_extent(renderer) for ax in fig.axes if ax.get_ylabel()]
    assert not [pair for pair in combinations(ybox, 2) if pair[0].overlaps(pair[1])]
    first_column = [ax.get_subplotspec().colspan.start == 0 for ax in fig.axes]
    assert [bool(y) for y in ylabels] == first_column and all("\n" not in y and len(y) <= 16 for y in ylabels)


@pytest.mark.parametrize("versus_dense", [False, True])
def test_the_committed_maps_rung_labels_never_collide_and_a_row_of_panels_shares_its_scale(versus_dense) -> None:
    frame = load_results([DOCS / s for s in ("cifar10-t8", "cifar10-t8-mid", "cifar10-t8-overfit",
                                             "cifar10-t8-overfit-resnet20", "cifar10-t32")])
    keys = with_varying_splits(list(BLOCK_KEYS), frame)
    cell_rows = assign_blocks(cells(scope_in_method(frame)), keys)
    compared = VERSUS_DENSE if versus_dense else COMPARED
    references = [m for m, _ in VERSUS_DENSE] if versus_dense else ()
    table = regime_table(summary_table(cell_rows, keys), delta_table(cell_rows, keys, references), keys, compared)
    [(setting, rows)] = drawn_settings(table, keys)
    fig = regime_figure(rows, setting, keys, 3.5 * 1.3, 2.5, versus_dense)
    try:
        assert [ax.get_title() for ax in fig.axes[:2]] == ["convnet", "resnet20"]
        texts = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "rung"]
        assert {"all, 2 ep", "all, 1 ep, T=32", "all, 4 ep"} <= set(texts)  # dense gaps 2.5 to 3: the cluster
        assert fig.axes[0].get_ylim() == fig.axes[1].get_ylim() and fig.axes[2].get_ylim() == fig.axes[3].get_ylim()
        assert_readable(fig)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("gaps", [
    (2.0, 2.5, 2.52, 2.55, 2.6, 2.7, 3.0, 20.0),  # a tight cluster: one row each
    tuple(2.0 * 10 ** (k / 60) for k in range(12)) + (20.0,),  # a dozen a few points apart: leaders to cross
])
def test_rungs_a_few_pixels_apart_are_stacked_without_overprinting_or_crossed_leaders(gaps) -> None:
    with hand_figure([(gap, -1.0, 0.5, 3) for gap in gaps]) as fig:
        assert_readable(fig)
