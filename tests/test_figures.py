"""Figures that show the differences the tables find (issue 30), checked on the objects the code builds: the
paired differences one panel per comparison on its own scale, the forest plot's points equal to the report's
deltas, the many-method curves with the baselines greyed, the density, CER and accuracy-vs-density figures, and
the report's words (mixed code, identical computations) on the committed study."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from almabench.analysis.blocks import BLOCK_KEYS, assign_blocks, check_code, scope_in_method, with_varying_splits
from almabench.analysis.cross_block import DODGE, accuracy_density_figure
from almabench.analysis.curves import cer_figure, curve_figure, density_figure
from almabench.analysis.figure_kit import palette
from almabench.analysis.forest import forest_figure
from almabench.analysis.gap_difference import gap_difference_figure, one_seed_block
from almabench.analysis.layer_figure import layer_figure
from almabench.analysis.load import cells, layer_densities, load_results
from almabench.analysis.paired import paired_figure
from almabench.analysis.render import _delta_display
from almabench.analysis.tables import METRICS, delta_table

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results"


def steps(methods: dict[str, list[list[float]]], column: str = "test_accuracy") -> pd.DataFrame:
    """Step rows: methods[m][seed] is the column's value per step."""
    rows = [{"method": m, "seed": s, "step": t, column: v, "config_hash": f"{m}{s}"}
            for m, seeds in methods.items() for s, values in enumerate(seeds) for t, v in enumerate(values, start=1)]
    return pd.DataFrame(rows)


def panels(fig: plt.Figure) -> dict[str, plt.Axes]:
    return {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}


# ------------------------------------------------------------------------------------- paired differences


def test_paired_differences_share_a_scale_per_group_but_a_far_panel_and_one_seed_is_drawn_weaker():
    # app - dense: +1, +2 at step 2 (two seeds); osp - dense +0.5; app-released - dense: -20, -22 at step 2
    frame = steps({"dense": [[50, 60], [50, 60]], "app": [[50, 61], [50, 62]], "app-released": [[50, 40], [50, 38]],
                   "osp": [[50, 60.5], [50, 60.5]], "gmp": [[50, 61], []]})
    fig = paired_figure(frame, "block")
    axes = panels(fig)
    assert sorted(axes) == sorted(["app − osp", "app − app-released\n(own scale)", "app − gmp, 1 seed", "osp − dense",
                                   "app − dense", "app-released − dense\n(own scale)", "gmp − dense, 1 seed"])
    app = axes["app − dense"]
    (mean,) = [line for line in app.get_lines() if line.get_gid() == "mean"]
    assert list(mean.get_ydata()) == pytest.approx([0, 1.5])
    assert sorted(tuple(line.get_ydata()) for line in app.get_lines() if line.get_gid() == "seed") == [(0, 1), (0, 2)]
    (band,) = app.collections
    half = 12.7062047 * math.sqrt(0.5) / math.sqrt(2)  # t(0.975, 1) · sd / √n at step 2 (sd of 1, 2)
    assert band.get_paths()[0].vertices[:, 1].max() == pytest.approx(1.5 + half)  # drawn whole, cut by the panel
    shared = app.get_ylim()
    assert axes["osp − dense"].get_ylim() == shared == axes["gmp − dense, 1 seed"].get_ylim()  # one scale a group
    assert shared[0] < 0 < 1.5 < shared[1] < 1.5 + half  # set by the means: the 2-seed band does not flatten them
    far = axes["app-released − dense\n(own scale)"].get_ylim()
    assert far[0] < -21 - 12.7 and far[1] >= 0  # 14 times the group's median reach: a scale of its own
    one = axes["gmp − dense, 1 seed"]
    (weak,) = [line for line in one.get_lines() if line.get_gid() == "mean"]
    assert weak.get_markerfacecolor() == "white" and weak.get_linewidth() < mean.get_linewidth()
    assert [t.get_text() for t in one.texts] == ["n = 1"] and one.collections[0].get_paths() == []  # no band
    assert mean.get_markerfacecolor() != "white" and [t.get_text() for t in app.texts] == []
    assert any(line.get_ydata()[0] == 0 and line.get_ydata()[-1] == 0 for line in app.get_lines()
               if line.get_gid() not in ("mean", "seed"))  # the zero line
    ticks = app.get_xticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)  # megabatches are whole: no tick at 1.5
    plt.close(fig)


def test_a_block_whose_methods_share_no_seed_has_no_paired_panel_and_no_paired_figure(tmp_path):
    from almabench.analysis.paired import paired_panels
    from almabench.analysis.plots import make_plots

    frame = steps({"dense": [[50, 60], []], "app": [[], [50, 61]]})  # dense ran seed 0, app seed 1
    assert paired_panels(frame) == []
    frame = frame.assign(gap=1.0, density=1.0, target_density=1.0, prunes=frame["method"] == "app", dataset="d",
                         megabatches=2, tau=4.5, cer=10, layer_density=None,
                         **{m.column: 1.0 for m in METRICS if m.column != "cer"})
    plots = make_plots(frame, frame[frame["step"] == 2], ["dataset"], tmp_path, ["png"])
    assert sorted(p.kind for p in plots) == ["accuracy", "cer", "density", "gap"]  # no paired, no forest


# ----------------------------------------------------------------------------------------------- forest


def cell_rows(values: dict[tuple[str, int], float], block: dict) -> pd.DataFrame:
    """Cell rows of one block: final accuracy = the value, CER = 1000 - 10 x value, the other metrics 0."""
    rows = []
    for (method, seed), acc in values.items():
        row = {**block, "method": method, "seed": seed, **{m.column: 0.0 for m in METRICS}}
        row.update(final_test_accuracy=acc, cer=1000 - 10 * acc)
        rows.append(row)
    return pd.DataFrame(rows)


def test_the_forest_plot_draws_the_report_deltas_block_by_block_with_far_ones_at_the_edge():
    keys = ["dataset", "tau"]
    one = cell_rows({("dense", 0): 70, ("dense", 1): 71, ("dense", 2): 72, ("osp", 0): 69.5, ("osp", 1): 70.8,
                     ("osp", 2): 71.9, ("app", 0): 70.2, ("app", 1): 71.0, ("app", 2): 72.6,
                     ("gmp", 0): 69.0, ("gmp", 1): 70.0, ("gmp", 2): 71.5,
                     ("app-released", 0): 50, ("app-released", 1): 52, ("app-released", 2): 51},
                    {"dataset": "d", "tau": 4.5})
    two = cell_rows({("dense", 0): 70, ("osp", 0): 69, ("app", 0): 69.5}, {"dataset": "d", "tau": 1.0})
    deltas = delta_table(pd.concat([one, two], ignore_index=True), keys)
    blocks = [{"dataset": "d", "tau": 4.5}, {"dataset": "d", "tau": 1.0}]
    fig = forest_figure(deltas, blocks, {"dataset": "d"}, ["tau"])
    axes = np.array(fig.axes).reshape(-1, 2)
    assert axes.shape == (4, 2)  # (app, app-released) x (final accuracy, CER) rows; one column per block
    for j, block in enumerate(blocks):
        for i, metric in enumerate(("final_test_accuracy", "cer")):
            ax = axes[i, j]
            drawn = {c.get_label(): c for c in ax.containers}
            expected = deltas[(deltas["tau"] == block["tau"]) & (deltas["metric"] == metric)
                              & (deltas["method"] == "app")]
            for r in expected.itertuples():
                label = f"app − {r.baseline}"
                if r.baseline == "app-released":  # +20 points: past this panel's scale, written at the edge
                    (text,) = [t for t in ax.texts if t.get_gid() == f"off-scale {label}"]
                    digits = 2 if metric == "final_test_accuracy" else 0
                    numbers = [f"{v:+,.{digits}f}" for v in (r.delta, r.ci_low, r.ci_high)]
                    assert text.get_text() == f"{numbers[0]} [{numbers[1]}, {numbers[2]}]"
                    continue
                container = drawn[label]
                x, _ = container.lines[0].get_data()
                assert x[0] == pytest.approx(r.delta)
                if r.n_pairs > 1:
                    (segment,) = container.lines[2][0].get_segments()
                    assert [p[0] for p in segment] == pytest.approx([r.ci_low, r.ci_high])
                else:
                    assert not container.has_xerr
            low, high = ax.get_xlim()
            if block["tau"] == 4.5 and metric == "final_test_accuracy":
                assert high < 5  # app − app-released (+20) did not set the scale of app − osp (+0.2)
    assert "n = 1" in [t.get_text() for t in axes[0, 1].texts]
    for i in range(2):  # one x-scale per row: the eye compares lengths across blocks, not ticks
        assert axes[i, 0].get_xlim() == axes[i, 1].get_xlim()
    assert axes[0, 0].get_xlim() != axes[1, 0].get_xlim()
    assert [ax.get_visible() for ax in axes[2:].flat] == [True, False, True, False]  # no app-released at τ = 1:
    assert "not in this block" not in [t.get_text() for ax in axes.flat for t in ax.texts]  # no panel, not an empty one
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- curves


def method_panels(fig: plt.Figure) -> dict[str, plt.Axes]:
    """The small multiples' panels by method (the first line of a panel's title)."""
    return {ax.get_title().split("\n")[0]: ax for ax in fig.axes if ax.get_visible()}


def test_accuracy_is_a_panel_per_method_in_its_own_colour_against_dense_titled_with_its_final_difference():
    frame = steps({"dense": [[1, 4], [3, 6]], **{m: [[1, 2], [2, 3]] for m in ("osp", "app", "gmp", "rigl")},
                   "imp": [[11, 12], [12, 13]]})
    colours = palette(frame["method"].unique())
    fig = curve_figure(frame, "test_accuracy", "acc", {"dataset": "x"}, colours)
    axes = method_panels(fig)
    assert list(axes) == ["osp", "app", "gmp", "imp", "rigl"]  # no panel for dense: it is in every panel
    assert axes["imp"].get_title() == "imp\nfinal 12.5 (+7.5)"
    for method, ax in ((m, ax) for m, ax in axes.items() if m != "imp"):
        (line,) = [line for line in ax.get_lines() if line.get_gid() == "mean"]
        assert line.get_color() == colours[method] and list(line.get_ydata()) == pytest.approx([1.5, 2.5])
        (reference,) = [line for line in ax.get_lines() if line.get_gid() == "reference"]
        assert list(reference.get_ydata()) == pytest.approx([2.0, 5.0])
        assert ax.get_title() == f"{method}\nfinal 2.5 (-2.5)"  # the final mean and its difference to dense
    assert len({axes[m].get_lines()[-1].get_linestyle() for m in ("gmp", "imp", "rigl")}) == 1  # dashed baselines,
    # told apart by their panels (and colours), not by dashes
    assert len({ax.get_ylim() for ax in axes.values()}) == 1 and axes["app"].get_ylim()[1] > 12  # one y-scale
    chosen = curve_figure(frame, "test_accuracy", "acc", {"dataset": "x"}, colours, highlight=["rigl"])
    assert list(method_panels(chosen))[0] == "rigl"  # a highlighted method's panel comes first
    plt.close("all")


def test_density_targets_lie_above_the_lines_a_fall_from_target_is_marked_and_a_decade_gets_a_log_axis():
    frame = steps({"dense": [[1.0, 1.0]], "app": [[0.8, 0.4]], "app-released": [[0.8, 0.02]]}, "density")
    frame["target_density"] = frame["method"].map({"dense": 1.0, "app": 0.6, "app-released": 0.6})
    frame.loc[frame["step"] == 1, "target_density"] = frame["method"].map({"dense": 1.0, "app": 0.8,
                                                                           "app-released": 0.8})
    frame.loc[(frame["step"] == 2) & (frame["method"] != "dense"), "target_density"] = 0.4
    fig = density_figure(frame, {"dataset": "d"}, palette(["dense", "app", "app-released"]))
    ax = fig.axes[0]
    targets = [line for line in ax.get_lines() if line.get_gid() == "target"]
    measured = [line for line in ax.get_lines() if line.get_label() in ("dense", "app", "app-released")]
    assert len(targets) == 2  # app's and app-released's schedule is one: drawn once
    assert min(t.get_zorder() for t in targets) > max(m.get_zorder() for m in measured)  # seen, not hidden
    (marked,) = [line for line in ax.get_lines() if line.get_gid() == "off-target"]
    assert list(marked.get_ydata()) == [0.8, 0.4] and marked.get_marker() == "x"
    assert [t.get_text() for t in ax.texts] == ["app-released: 0.020\n(target 0.400, ×)"]
    assert ax.get_yscale() == "log" and "log scale" in ax.get_ylabel()
    plt.close(fig)


def cer_cells(values: dict[str, list[float]]) -> pd.DataFrame:
    """Cells of one block: values[m] is the CER per seed."""
    frame = pd.DataFrame([{"method": m, "seed": s, "cer": v, "megabatches": 8} for m, vs in values.items()
                          for s, v in enumerate(vs)])
    return frame.assign(config_hash=frame["method"] + frame["seed"].astype(str))


def test_methods_of_equal_density_are_one_line_named_in_one_legend_entry_and_each_entry_has_a_visible_line():
    frame = steps({"dense": [[1.0, 1.0]], "scratch": [[1.0, 1.0]], "osp": [[0.4, 0.4]], "rigl": [[0.4, 0.4]],
                   "app": [[0.8, 0.4]]}, "density")
    frame["target_density"] = frame["density"]
    fig = density_figure(frame, {"dataset": "d"}, palette(frame["method"].unique()))
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["dense, scratch", "osp, rigl", "app", "target\n(schedule)"]
    measured = [line for line in ax.get_lines() if line.get_label() in legend]
    assert [list(line.get_ydata()) for line in measured] == [[1.0, 1.0], [0.4, 0.4], [0.8, 0.4]]  # no two alike
    assert "one line: equal densities" in ax.get_title()
    plt.close(fig)


def test_cer_rows_are_sorted_by_cer_and_one_seed_is_hollow_without_a_whisker_and_says_n_1():
    frame = cer_cells({"dense": [100, 102], "app": [98, 99], "rigl (erk-dense-first)": [103]})
    fig = cer_figure(frame, {"dataset": "d"}, palette(frame["method"].unique()))
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows == ["app", "dense", "rigl (erk-dense-first) (n = 1)"]  # lowest CER on top
    points = {c.lines[0].get_gid(): c for c in ax.containers}
    assert points["cer app"].lines[0].get_xydata().tolist() == [[98.5, 2]]  # the mean, top row
    assert points["cer rigl (erk-dense-first)"].lines[0].get_markerfacecolor() == "white"
    assert not points["cer rigl (erk-dense-first)"].has_xerr and points["cer app"].has_xerr
    plt.close(fig)


def test_a_cer_past_the_bulk_s_scale_is_an_arrow_at_the_edge_with_its_value():
    # dense 100; the bulk within ±4 of it; app-released 60 above: OFF_SCALE · median reach (3 · 3) is far below
    frame = cer_cells({"dense": [100, 100], "app": [102, 104], "osp": [103, 105], "gmp": [96, 98],
                       "app-released": [160]})
    fig = cer_figure(frame, {"dataset": "d"}, palette(frame["method"].unique()))
    ax = fig.axes[0]
    off = [t for t in ax.texts if t.get_gid() == "off-scale app-released"]
    assert [t.get_text() for t in off] == ["160 (+60), n = 1"]
    (arrow,) = [line for line in ax.get_lines() if line.get_gid() == "off-scale app-released"]
    assert arrow.get_xdata()[0] == ax.get_xlim()[1] and arrow.get_marker() == ">"
    assert ax.get_xlim()[1] < 130  # the bulk sets the scale, not the outlier
    assert max(ax.get_xticks()) <= 105  # no tick out where the arrow and labels are (osp reaches 104 + 1.4)
    assert "cer app-released" not in {c.lines[0].get_gid() for c in ax.containers}
    plt.close(fig)


def test_accuracy_against_density_dodges_points_at_one_density_and_labels_tau():
    rows = []
    for method, tau, density, acc in (("dense", 4.5, 1.0, 70), ("osp", 4.5, 0.366, 68), ("app", 4.5, 0.366, 69),
                                      ("osp", 1.0, 0.8, 69.5), ("app", 1.0, 0.8, 69.5)):
        rows.append({"method": method, "tau": tau, "final_density": density, "final_test_accuracy": acc,
                     "mean_gap": 1.0, "config_hash": f"{method}{tau}", "prunes": method != "dense", "seed": 0})
    frame = pd.DataFrame(rows)
    colours = palette(["dense", "osp", "app"])
    fig = accuracy_density_figure(frame, {"dataset": "d"}, colours)
    ax = fig.axes[0]
    xs = {c.get_label(): list(c.lines[0].get_xdata()) for c in ax.containers}
    shift = 10 ** (DODGE / 2)
    assert xs["osp"] == pytest.approx([0.366 / shift, 0.8 / shift])  # osp left, app right of the true density
    assert xs["app"] == pytest.approx([0.366 * shift, 0.8 * shift])
    assert xs["dense"] == pytest.approx([1.0])
    assert [c.lines[0].get_marker() for c in ax.containers] == ["s", "^", "o"]  # the markers of style.STYLES
    assert sorted(t.get_text() for t in ax.texts) == ["τ=1", "τ=4.5"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.366", "0.8", ""]  # 1 would run into 0.8
    plt.close(fig)


def test_a_collapsed_point_is_an_arrow_at_the_edge_with_its_value_and_a_point_of_one_seed_is_hollow():
    rows = []
    for method, tau, density, accs in (("dense", 4.5, 1.0, (70, 70.4)), ("osp", 4.5, 0.366, (68, 68.4)),
                                       ("app", 4.5, 0.366, (69, 69.4)), ("osp", 1.0, 0.8, (69.5, 69.9)),
                                       ("app", 1.0, 0.8, (69.6, 70.0)), ("gmp", 4.5, 0.37, (67,)),
                                       ("app-released", 4.5, 0.015, (57,))):
        rows += [{"method": method, "tau": tau, "final_density": density, "final_test_accuracy": acc,
                  "mean_gap": 1.0 + s, "config_hash": f"{method}{tau}{s}", "prunes": method != "dense", "seed": s}
                 for s, acc in enumerate(accs)]
    fig = accuracy_density_figure(pd.DataFrame(rows), {"dataset": "d"}, palette(["dense", "osp", "app", "gmp",
                                                                                "app-released"]))
    ax = fig.axes[0]
    (text,) = [t for t in ax.texts if t.get_gid() == "off-scale app-released"]
    assert text.get_text() == "app-released: 57.0, n = 1"
    (arrow,) = [line for line in ax.get_lines() if line.get_gid() == "off-scale app-released"]
    assert arrow.get_ydata()[0] == ax.get_ylim()[0] and arrow.get_marker() == "v"  # at the bottom edge
    assert ax.get_ylim()[0] > 60  # 57 does not set the scale
    (hollow,) = [line for line in ax.get_lines() if line.get_gid() == "n = 1 gmp"]
    assert list(hollow.get_ydata()) == [67] and hollow.get_markerfacecolor() == "white"
    assert not [line for line in ax.get_lines() if line.get_gid() == "n = 1 app" and len(line.get_xdata())]
    assert "off-scale app-released" not in {t.get_gid() for t in fig.axes[1].texts}  # its gap is no outlier
    plt.close(fig)


def _layer_rows(block: dict) -> pd.DataFrame:
    """The per-layer rows of one committed block, as the report plans them (blocks keyed without the pruner)."""
    frame = scope_in_method(load_results(DOCS / "cifar10-t8"))
    for key, value in block.items():
        frame = frame[frame[key] == value]
    return layer_densities(frame[frame["prunes"]])


def _from_files(block: dict) -> dict[tuple[str, str], np.ndarray]:
    """(method label, pruner) -> layer × megabatch mean density over seeds, read from the JSON files themselves."""
    per_cell: dict[tuple[str, str], list[np.ndarray]] = {}
    for path in sorted((DOCS / "cifar10-t8").glob("*.json")):
        result = json.loads(path.read_text())
        config = result["config"]
        if any(config.get(k) != v for k, v in block.items()) or not result["steps"][-1].get("layer_density"):
            continue
        scope = config.get("scope", "global")
        label = config["method"] if scope == "global" else f"{config['method']} ({scope})"
        if label in ("dense", "scratch", "shrink-perturb"):
            continue
        pruner = config["pruner"] if label.split(" (")[0] in ("app", "app-released", "osp") else ""
        per_cell.setdefault((label, pruner), []).append(
            np.array([list(s["layer_density"].values()) for s in result["steps"]]).T)
    return {key: np.mean(grids, axis=0) for key, grids in per_cell.items()}


def test_the_layer_figure_draws_every_method_of_a_block_on_one_scale_with_the_files_densities():
    block = {"epochs": 2}
    fig = layer_figure(_layer_rows(block), {"dataset": "cifar10", "epochs": 2})
    images = {tuple(im.get_gid().split("|")): im for ax in fig.axes for im in ax.get_images()}
    expected = _from_files(block)
    assert len(expected) >= 10 and sorted(images) == sorted(expected)  # one panel per method (and pruner)
    for key, image in images.items():
        np.testing.assert_allclose(image.get_array(), expected[key], atol=1e-12)
        assert image.get_clim() == (0, 1) and image.get_cmap().name == "viridis"  # one colour scale
        finals = [float(t.get_text()) for t in image.axes.texts if t.get_gid() == "final"]
        assert finals == pytest.approx(expected[key][:, -1], abs=0.005)  # the numbers: the final megabatch
    assert len([ax for ax in fig.axes if not ax.get_images()]) == 1  # the colour bar: no empty panel
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert titles[:3] == ["osp · snip\nn = 3", "app · snip\nn = 3", "app · magnitude\nn = 3"]
    assert "rigl\nn = 3" in titles and "set (erk-dense-first)\nn = 3" in titles  # they ignore the pruner: none named
    plt.close(fig)


def test_a_layer_panel_of_one_seed_is_drawn_weaker_and_says_n_1():
    rows = pd.DataFrame([{"method": m, "pruner": "snip", "step": t, "layer": n, "layer_density": 0.5,
                          "config_hash": f"{m}{s}"} for m, seeds in (("app", 3), ("osp", 1)) for s in range(seeds)
                         for t in (1, 2) for n in ("0.weight", "4.weight")])
    fig = layer_figure(rows, {"dataset": "d"})
    osp, app = (ax for ax in fig.axes if ax.get_images())
    assert (osp.get_title(), app.get_title()) == ("osp · snip\nn = 1", "app · snip\nn = 3")
    assert osp.title.get_color() != app.title.get_color()
    assert osp.spines["left"].get_linestyle() == "--" and app.spines["left"].get_linestyle() == "solid"
    assert [t.get_text() for t in osp.get_yticklabels()] == ["0.weight (layer 1)", "4.weight (layer 2)"]
    plt.close(fig)


def test_a_one_seed_blocks_gap_is_drawn_as_each_methods_difference_from_dense_with_the_files_numbers():
    files = [json.loads(p.read_text()) for p in sorted((DOCS / "cifar10-t32").glob("*.json"))]
    gaps = {r["config"]["method"]: {s["step"]: s["gap"] for s in r["steps"]} for r in files}
    assert sorted(gaps) == ["app", "dense", "osp"]  # one seed each
    rows = load_results(DOCS / "cifar10-t32")
    assert one_seed_block(rows)
    fig = gap_difference_figure(rows, {"dataset": "cifar10"}, palette(["dense", "osp", "app"]))
    try:
        assert [ax.get_title().split(":")[0] for ax in fig.axes] == ["osp − dense", "app − dense"]  # no dense panel
        assert len({ax.get_ylim() for ax in fig.axes}) == 1  # one y-scale
        for ax, method in zip(fig.axes, ("osp", "app")):
            want = [gaps[method][t] - gaps["dense"][t] for t in range(1, 33)]
            (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == "difference"]
            assert list(line.get_xdata()) == list(range(1, 33))
            assert list(line.get_ydata()) == pytest.approx(want, abs=1e-9)
            assert line.get_markerfacecolor() == "white"  # one seed: hollow
            late = want[16:]  # t = 17-32
            mean, sd = float(np.mean(late)), float(np.std(late, ddof=1))
            (segment,) = [ln for ln in ax.get_lines() if ln.get_gid() == "late mean"]
            assert list(segment.get_xdata()) == [17, 32] and list(segment.get_ydata()) == pytest.approx([mean] * 2)
            assert ax.get_title() == (f"{method} − dense: {mean:+.2f} over t = 17-32\n"
                                      f"(sd over megabatches {sd:.2f}; n = 1: no interval)")
            assert not ax.collections  # no band
    finally:
        plt.close(fig)


def test_the_gap_difference_is_planned_only_where_every_method_has_one_seed():
    one = steps({"dense": [[5, 4]], "app": [[3, 2]]}, "gap")
    assert one_seed_block(one)
    assert not one_seed_block(steps({"dense": [[5, 4]], "app": [[3, 2], [3, 1]]}, "gap"))  # app has two seeds
    assert not one_seed_block(steps({"app": [[3, 2]], "osp": [[3, 1]]}, "gap"))  # nothing to subtract
    assert not one_seed_block(steps({"dense": [[5, 4]]}, "gap"))  # dense alone
    assert not one_seed_block(steps({"dense": [[5, 4], []], "app": [[], [3, 2]]}, "gap"))  # seeds 0 and 1: unpaired
    five = steps({m: [[3, 2]] for m in ("dense", "app", "osp", "gmp", "imp", "rigl")}, "gap").assign(megabatches=2)
    fig = gap_difference_figure(five, {"dataset": "d"}, palette(["dense", "app", "osp", "gmp", "imp", "rigl"]))
    assert len(fig.axes) == 5 and all(ax.get_lines() for ax in fig.axes)  # two rows of four: no empty panel
    plt.close(fig)


# ------------------------------------------------------------------------------------ the report's words


def test_the_committed_two_epoch_block_warns_that_it_mixes_code():
    # The warm-start controls (issue 36) land in this folder seed by seed: leave them out so that the words pinned
    # here are those of the cells that ran before them.
    loaded = load_results(DOCS / "cifar10-t8")
    frame = scope_in_method(loaded[~loaded["method"].isin(["scratch", "shrink-perturb"])])
    keys = with_varying_splits(list(BLOCK_KEYS), frame)
    warnings: list[str] = []
    check_code(assign_blocks(cells(frame), keys), keys, warnings.append)
    block = "cifar10 / convnet / T=8 / snip / tau=4.5 / epochs=2 / milestones=(1, 2)"
    old, new, erk = ("d774b8dfcec84ec2 (commit 682ace6)", "93893f4021378319 (commit f614c42)",
                     "e8c705cffb730cea (commit c1db7ca)")
    rows = [f"{block}, {m}: averages cells computed by different code (environment.code): seed 0 at {old}; "
            f"seeds 1, 2 at {new}" for m in ("dense", "osp", "app-released")]
    assert [w for w in warnings if w.startswith(block + ",")] == rows
    (pairs,) = [w for w in warnings if w.startswith(block + ":")]
    assert pairs == (
        f"{block}: paired deltas compare cells computed by different code (environment.code): app - dense, "
        "app - osp, app - app-released, app-released - gmp, app-released - imp, app-released - rigl, "
        "app-released - set at seed 0; app - rigl (erk-dense-first), app - set (erk-dense-first), "
        "app-released - rigl (erk-dense-first), app-released - set (erk-dense-first) at seeds 0, 1, 2 "
        f"(cells: dense, osp, app-released seed 0 at {old}; rigl (erk-dense-first), set (erk-dense-first) "
        f"seeds 0, 1, 2 at {erk}; every other cell at {new})")
    assert not [w for w in warnings if "epochs=4" in w or "epochs=1" in w]  # those rungs ran at one commit


def test_two_methods_that_computed_the_same_thing_are_said_to_beside_their_zero_delta():
    frame = scope_in_method(load_results(DOCS / "cifar10-t8-overfit"))
    keys = with_varying_splits(list(BLOCK_KEYS), frame)
    deltas = delta_table(assign_blocks(cells(frame), keys), keys)
    same = deltas[deltas["identical"]]
    assert set(zip(same["tau"], same["method"], same["baseline"])) == {(1.0, "app", "osp")}
    assert (same["delta"] == 0).all() and (same["n_pairs"] == 3).all()
    shown = _delta_display(same)
    assert set(shown["n"]) == {"3 paired seeds; same computation (identical results at every seed)"}


def test_figure_names_write_block_values_as_their_titles_do_never_nan_or_a_float_s_dot_zero(tmp_path):
    import re

    from click.testing import CliRunner

    from almabench.analysis.blocks import block_slug
    from almabench.cli import main

    assert block_slug({"dataset": "cifar10", "stream_images": float("nan")}) == "cifar10_stream_imagesall"
    assert block_slug({"dataset": "cifar10", "stream_images": 5000.0}) == "cifar10_stream_images5000"
    assert block_slug({"dataset": "cifar10", "tau": 4.5}) == "cifar10_tau4.5"  # a real fraction stays
    result = CliRunner().invoke(main, ["report", str(DOCS / "cifar10-t8"), str(DOCS / "cifar10-t8-mid"), "--methods",
                                       "dense", "--format", "png", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    names = [p.name for p in (tmp_path / "r").rglob("*.png")]
    assert any("stream_imagesall" in n for n in names) and any("stream_images10000" in n for n in names)
    assert [n for n in names if "nan" in n or re.search(r"\d\.0(?=[_.-])", n)] == []


def test_a_report_over_two_studies_puts_each_study_s_figures_in_its_folder_with_an_index(tmp_path):
    import shutil

    from click.testing import CliRunner

    from almabench.cli import main

    for study, names in (("mid", ("aa809349810c69a0", "ef536895ee06b6b1")),  # app and dense, 10,000 images
                         ("overfit", ("2a3945ae366cc54e", "9724e5960ce6b024"))):  # 5,000 images
        (tmp_path / "R" / study).mkdir(parents=True)
        source = DOCS / ("cifar10-t8-mid" if study == "mid" else "cifar10-t8-overfit")
        for name in names:
            shutil.copy(source / f"{name}.json", tmp_path / "R" / study)
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["report", str(tmp_path / "R"), "--figures", "accuracy,gap,forest",
                                       "--format", "png", "--out", str(out)])
    assert result.exit_code == 0, result.output
    figures = out / "figures"
    pngs = sorted(p.relative_to(figures).as_posix() for p in figures.rglob("*.png"))
    assert {p.split("/")[0] for p in pngs} == {"mid", "overfit"}  # no figure of one study outside its folder
    assert sum(p.startswith("mid/") for p in pngs) == sum(p.startswith("overfit/") for p in pngs) == 3
    index = (figures / "README.md").read_text()
    listed = [line.split("](")[1].split(")")[0] for line in index.splitlines() if line.startswith("- [")]
    assert sorted(listed) == pngs  # every figure once, by its path
    assert "## mid" in index and "## overfit" in index
    assert "- [gap_" in index and "generalisation gap (train − validation accuracy)" in index  # captions
    single = CliRunner().invoke(main, ["report", str(tmp_path / "R" / "mid"), "--figures", "accuracy", "--format",
                                       "png", "--out", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    assert [p.parent.name for p in (tmp_path / "one" / "figures").rglob("*.png")] == ["figures"]  # one study: flat
    one = (tmp_path / "one" / "figures" / "README.md").read_text()
    assert "## " not in one and "study folders" not in one and "- [accuracy_" in one  # flat: one list, no sections


def test_the_gap_figure_is_a_panel_per_method_against_dense_on_one_scale_and_one_seed_drawn_weaker():
    from almabench.analysis.curves import gap_figure

    frame = steps({"dense": [[2.0, 4.0], [4.0, 6.0]], "app": [[1.0, 2.0], [3.0, 2.0]], "osp": [[9.0, 9.0]]},
                  column="gap")
    fig = gap_figure(frame, {"dataset": "d"}, palette(["dense", "osp", "app"]))
    axes = method_panels(fig)
    assert sorted(axes) == ["app", "osp"]  # a panel per method but the reference
    for ax in axes.values():
        (reference,) = [line for line in ax.get_lines() if line.get_gid() == "reference"]
        assert list(reference.get_ydata()) == pytest.approx([3.0, 5.0])  # dense's mean over its two seeds
    (app,) = [line for line in axes["app"].get_lines() if line.get_gid() == "mean"]
    assert list(app.get_ydata()) == pytest.approx([2.0, 2.0])
    assert axes["app"].get_ylim() == axes["osp"].get_ylim() and axes["osp"].get_ylim()[1] > 9  # one y-scale
    (osp,) = [line for line in axes["osp"].get_lines() if line.get_gid() == "mean"]
    assert osp.get_markerfacecolor() == "white" and [t.get_text() for t in axes["osp"].texts] == ["n = 1"]
    assert app.get_markerfacecolor() != "white" and list(axes["app"].texts) == []
    plt.close(fig)


def test_gap_over_t_is_points_without_a_line_between_stream_lengths_and_one_seed_hollow():
    from almabench.analysis.cross_block import gap_vs_T_figure

    cells = pd.DataFrame([{"method": m, "megabatches": t, "seed": s, "final_gap": g, "mean_gap": g / 2,
                           "config_hash": f"{m}{t}{s}"}
                          for m, t, s, g in (("dense", 8, 0, 2.0), ("dense", 8, 1, 4.0), ("dense", 32, 0, 6.0),
                                             ("app", 8, 0, 1.0), ("app", 8, 1, 1.0), ("app", 32, 0, 5.0))])
    fig = gap_vs_T_figure(cells, {"dataset": "d"}, palette(["dense", "app"]))
    ax = fig.axes[0]
    points = {c.lines[0].get_gid(): c for c in ax.containers}
    assert sorted(points) == ["app T=32", "app T=8", "dense T=32", "dense T=8"]
    assert points["dense T=8"].lines[0].get_ydata()[0] == pytest.approx(3.0)
    assert points["dense T=8"].has_yerr and not points["dense T=32"].has_yerr  # one seed: no whisker
    assert points["dense T=32"].lines[0].get_markerfacecolor() == "white"
    assert all(len(line.get_xdata()) <= 1 for line in ax.get_lines())  # no line joins T = 8 and T = 32
    assert [t.get_text() for t in ax.get_xticklabels()] == ["T = 8", "T = 32"]
    plt.close(fig)


def overfit_jobs(kinds: set[str], tmp_path: Path) -> list:
    """The committed overfit study's figure jobs of kinds, planned as the report plans them (its delta table)."""
    from almabench.analysis.plots import plan_figures

    frame = scope_in_method(load_results(DOCS / "cifar10-t8-overfit"))
    keys = with_varying_splits(list(BLOCK_KEYS), frame)
    cell_rows = assign_blocks(cells(frame), keys)
    return plan_figures(assign_blocks(frame, keys), cell_rows, keys, tmp_path, ["png"],
                        delta_table(cell_rows, keys), kinds=frozenset(kinds))


def figure_words(fig: plt.Figure) -> str:
    """Every title, tick label, legend entry and text of a figure, one string."""
    words = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        words += [ax.get_title(), *(t.get_text() for t in ax.texts), *(t.get_text() for t in ax.get_yticklabels())]
        if ax.get_legend():
            words += [t.get_text() for t in ax.get_legend().get_texts()]
    return "\n".join(words)


@pytest.mark.parametrize("kind", ["cer", "accuracy", "gap", "density"])
def test_app_and_osp_are_one_line_said_to_be_one_computation_exactly_where_the_delta_table_marks_it(kind, tmp_path):
    jobs = overfit_jobs({kind}, tmp_path)
    assert len(jobs) == 3  # τ = 1, 4.5, 10.3; only τ = 1 has app and osp identical (the delta table's test above)
    for job in jobs:
        fig = job.draw(*job.args)
        words = figure_words(fig)
        if "tau=1.0" in job.title:
            assert "app = osp: same computation (identical results at every seed)" in words
            assert "app = osp" in words.replace("app = osp: same", "")  # the line or row itself is named so
        else:
            assert "same computation" not in words and "app = osp" not in words
        plt.close(fig)


def test_each_column_of_small_multiples_has_its_x_axis_under_its_lowest_panel():
    """Seven methods but dense make two rows of five (the gap), five make two rows of four (the gap's difference
    from dense): the columns without a panel in the short last row carry their tick labels and 'megabatch t'
    under the first row's panel, not nowhere, and no other panel carries them."""
    from almabench.analysis.curves import gap_figure
    from almabench.analysis.gap_difference import gap_difference_figure

    seven = ["dense", "osp", "app", "gmp", "imp", "rigl", "set", "app-released"]
    five = seven[:6]
    figures = [(gap_figure(steps({m: [[1.0, 2.0]] for m in seven}, column="gap"), {"dataset": "d"},
                           palette(seven)), (2, 5), 7),
               (gap_difference_figure(steps({m: [[1.0, 2.0]] for m in five}, column="gap").assign(megabatches=2),
                                      {"dataset": "d"}, palette(five)), (2, 4), 5)]
    for fig, shape, drawn in figures:
        grid = fig.axes[0].get_subplotspec().get_gridspec()
        assert (grid.nrows, grid.ncols) == shape and len(fig.axes) == drawn  # no empty panel
        for ax in fig.axes:
            row, col = ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start
            lowest = row * shape[1] + col + shape[1] >= drawn  # nothing drawn below it
            labels = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
            assert bool(labels) == lowest and (ax.get_xlabel() == "megabatch t") == lowest
        plt.close(fig)


def test_a_corner_note_goes_to_the_first_corner_no_point_is_near():
    from almabench.analysis.figure_kit import corner_note

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [10, 0, 0], marker="o")  # points at the top left, bottom middle and bottom right
    ax.set_xlim(-0.1, 2.1)
    ax.set_ylim(-0.5, 10.5)
    corner_note(ax, "n = 1")
    (text,) = ax.texts
    assert (text.get_position(), text.get_ha(), text.get_va()) == ((0.96, 0.93), "right", "top")
    ax.plot([2], [10], marker="o")  # now every top corner is taken: the bottom left is free
    corner_note(ax, "n = 1")
    assert (ax.texts[1].get_position(), ax.texts[1].get_ha(), ax.texts[1].get_va()) == ((0.04, 0.07), "left",
                                                                                        "bottom")
    plt.close(fig)
