"""Figures a reader can tell apart: each method one look in every figure, and the paired-difference figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from almabench.analysis.curves import curve_figure
from almabench.analysis.figure_kit import palette
from almabench.analysis.paired import paired_by_step, paired_figure, pairs


def rows(methods: dict[str, list[list[float]]]) -> pd.DataFrame:
    """Step rows: methods[m][seed] is the test accuracy per step."""
    out = []
    for method, seeds in methods.items():
        for seed, values in enumerate(seeds):
            for step, value in enumerate(values, start=1):
                out.append({"method": method, "seed": seed, "step": step, "test_accuracy": value,
                            "config_hash": f"{method}{seed}"})
    return pd.DataFrame(out)


def lines(fig: plt.Figure) -> dict[str, tuple]:
    """Each method's line (one panel each) as (colour, marker, dashes)."""
    return {line.get_label(): (line.get_color(), line.get_marker(), line.get_linestyle()) for ax in fig.axes
            for line in ax.get_lines() if line.get_gid() == "mean"}


def test_a_method_looks_the_same_whatever_else_a_figure_holds_and_baselines_are_dashed():
    small = rows({"dense": [[50, 60]], "app": [[40, 55]]})
    big = rows({"osp": [[1, 2]], "gmp": [[1, 2]], "imp": [[1, 2]], "app": [[40, 55]], "rigl": [[3, 4]]})
    # no reference: dense gets a panel of its own (as the reference it is the black line of every panel)
    a = lines(curve_figure(small, "test_accuracy", "acc", {"dataset": "x"}, palette(small["method"].unique()),
                           reference=""))
    b = lines(curve_figure(big, "test_accuracy", "acc", {"dataset": "x"}, palette(big["method"].unique())))
    plt.close("all")
    assert a["app"] == b["app"]
    looks = {**a, **b}
    assert len({colour for colour, _, _ in looks.values()}) == len(looks)  # six methods, six hues
    assert len({marker for _, marker, _ in looks.values()}) == len(looks)
    assert {m: style == "-" for m, (_, _, style) in looks.items()} == {
        "dense": True, "app": True, "osp": True, "gmp": False, "imp": False, "rigl": False}


def test_paired_differences_per_megabatch_have_the_textbook_t_interval():
    # step 1: app - dense = 1, 2, 4 over seeds 0-2 (mean 7/3, half-width 4.30265 · 1.52753 / √3 = 3.794583);
    # step 2: 0, 0, 0. osp ran seed 0 only: one pair, no interval.
    frame = rows({"dense": [[50, 60], [50, 60], [50, 60]], "app": [[51, 60], [52, 60], [54, 60]], "osp": [[49, 58]]})
    d = paired_by_step(frame, "app", "dense").set_index("step")
    assert d.loc[1, "mean"] == pytest.approx(7 / 3) and d.loc[1, "n"] == 3
    assert d.loc[1, "low"] == pytest.approx(7 / 3 - 3.794583, abs=1e-5)
    assert d.loc[1, "high"] == pytest.approx(7 / 3 + 3.794583, abs=1e-5)
    assert d.loc[2, "mean"] == 0 and d.loc[2, "low"] == d.loc[2, "high"] == 0
    one = paired_by_step(frame, "osp", "dense")
    assert one["n"].tolist() == [1, 1] and one["low"].isna().all() and one["mean"].tolist() == [-1, -2]
    assert pairs(frame["method"]) == ([("osp", "dense"), ("app", "dense")], [("app", "osp")])
    fig = paired_figure(frame, "block")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["app − osp, 1 seed", "osp − dense, 1 seed", "app − dense"]  # app's group first
    app = [ax for ax in fig.axes if ax.get_title() == "app − dense"][0]
    mean_line = [line for line in app.get_lines() if line.get_gid() == "mean"][0]
    assert list(mean_line.get_ydata()) == pytest.approx([7 / 3, 0])
    plt.close(fig)
