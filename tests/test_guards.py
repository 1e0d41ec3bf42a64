"""Tests for mutants an independent mutation pass found alive (issue 32 §4): each names the mutant it kills."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from almabench.analysis.paired import paired_by_step
from almabench.cell.config import RunConfig
from almabench.cell.run import run_cell
from almabench.cell.sparsity import Masks, erk_densities
from almabench.cell.train import augment
from almabench.methods import StepContext

TINY = dict(dataset="digits", arch="convnet", megabatches=3, epochs=1, milestones=(1,), flip=False,
            stream_images=300, pruner="random")


@pytest.fixture
def mask_sets(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """Every mask a run sets, in order."""
    sets: list[dict[str, torch.Tensor]] = []
    real = Masks.set

    def recording(self, masks):
        sets.append({name: mask.clone() for name, mask in masks.items()})
        real(self, masks)

    monkeypatch.setattr(Masks, "set", recording)
    return sets


def test_app_chooses_each_new_mask_inside_the_old_one_even_where_scores_do_not_vanish_on_pruned_weights(mask_sets):
    """Kills within_current=True -> False in methods/app.py: random scores are not zero on pruned weights (SNIP's
    and magnitude's are), so only the restriction keeps a pruned weight from coming back."""
    run_cell(RunConfig(method="app", **TINY))
    assert len(mask_sets) == 3
    for old, new in zip(mask_sets, mask_sets[1:]):
        for name in new:
            assert not (new[name] & ~old[name]).any(), name  # new ⊆ old
    assert sum(int(m.sum()) for m in mask_sets[2].values()) < sum(int(m.sum()) for m in mask_sets[0].values())


def test_osp_prunes_once_at_megabatch_1_to_its_final_density_on_a_sample_of_m1(mask_sets, monkeypatch):
    """Kills `step == 1` -> `>= 1` in methods/osp.py (one mask, set before megabatch 1, never drawn again), and a
    sample drawn from another megabatch than M_1 or a density other than 0.8^τ."""
    pools = []
    real = StepContext.random_sample

    def recording(self, pool):
        pools.append(torch.equal(pool, self.stream[0].train))
        return real(self, pool)

    monkeypatch.setattr(StepContext, "random_sample", recording)
    result = run_cell(RunConfig(method="osp", **TINY))
    assert len(mask_sets) == 1 and pools == [True]
    kept = round(0.8**4.5 * result["prunable_total"])
    assert {s["density"] for s in result["steps"]} == {kept / result["prunable_total"]}
    assert {s["target_density"] for s in result["steps"]} == {0.8**4.5}


def test_the_paired_figure_pairs_by_seed_not_by_position():
    """Kills pairing by position: app ran seeds 1 and 2, dense 0, 1 and 2; d_s = A_s − B_s over seeds 1 and 2."""
    rows = pd.DataFrame([{"method": "app", "seed": 1, "step": 1, "test_accuracy": 10.0},
                         {"method": "app", "seed": 2, "step": 1, "test_accuracy": 20.0},
                         {"method": "dense", "seed": 0, "step": 1, "test_accuracy": 100.0},
                         {"method": "dense", "seed": 1, "step": 1, "test_accuracy": 1.0},
                         {"method": "dense", "seed": 2, "step": 1, "test_accuracy": 2.0}])
    d = paired_by_step(rows, "app", "dense")
    assert d[["step", "mean", "n"]].to_dict("records") == [{"step": 1, "mean": 13.5, "n": 2}]  # (9 + 18) / 2


def test_erk_with_a_dense_layer_that_takes_exactly_the_whole_budget_leaves_the_others_empty():
    """Kills `forced > budget` -> `>=` in erk_densities: a budget exactly the dense layer's size is allowed."""
    assert erk_densities({"stem": (10,), "rest": (10,)}, 0.5, dense=["stem"]) == {"stem": 1.0, "rest": 0.0}


def test_an_exact_half_draw_does_not_flip(monkeypatch):
    """Kills `< 0.5` -> `<= 0.5` in augment: an image flips when its draw is below 0.5, and 0.5 is not (exact
    0.5 draws come about once in 2^25 images, a few times in a paper-scale cell)."""
    draws = torch.tensor([0.5, 0.25, 0.75])
    monkeypatch.setattr(torch, "rand", lambda n, generator=None, device=None: draws[:n])
    x = torch.arange(3 * 1 * 2 * 3, dtype=torch.uint8).reshape(3, 1, 2, 3)
    out = augment(x, padding=0, flip=True, generator=torch.Generator())
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], x[1].flip(2)) and torch.equal(out[2], x[2])


def test_the_paired_difference_of_a_method_the_block_lacks_is_empty():
    """Kills `a not in wide or b not in wide` -> `and` (and its return dropped): one method absent, nothing drawn."""
    rows = pd.DataFrame([{"method": "app", "seed": 0, "step": 1, "test_accuracy": 10.0}])
    for a, b in (("app", "dense"), ("dense", "app")):
        d = paired_by_step(rows, a, b)
        assert d.empty and list(d.columns) == ["step", "mean", "low", "high", "n"]


def test_the_paired_figure_draws_each_line_in_its_methods_colour_and_names_uneven_seed_counts():
    """Kills a panel's style swapped (app's where the other method's belongs), the seed count taken from the fewest
    pairs instead of the most, the figure's seed count mislabelled, and pairs() reading app's comparisons past
    the first."""
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    from almabench.analysis.paired import paired_figure, pairs
    from almabench.analysis.style import line_kwargs

    assert pairs(pd.Series(["app", "app-released"])) == ([], [("app", "app-released")])
    rows = pd.DataFrame([{"method": m, "seed": s, "step": t, "test_accuracy": 50.0 + s + t + len(m)}
                         for m, seeds in (("dense", (0, 1, 2)), ("app", (0, 1, 2)), ("osp", (0, 1)))
                         for s in seeds for t in (1, 2) if (m, s, t) != ("app", 2, 2)])  # app − dense: 3 pairs, then 2
    fig = paired_figure(rows, "block")
    panels = {ax.get_title(): mcolors.to_hex(line.get_color()) for sub in fig.subfigs for ax in sub.axes
              if ax.get_visible() for line in ax.lines if line.get_gid() == "mean"}
    assert panels == {"app − osp, 2 seeds": mcolors.to_hex(line_kwargs("osp")["color"]),
                      "osp − dense, 2 seeds": mcolors.to_hex(line_kwargs("osp")["color"]),
                      "app − dense": mcolors.to_hex(line_kwargs("app")["color"])}
    assert fig._suptitle.get_text().startswith("block\npaired differences by seed (3 seeds):")
    plt.close(fig)
    fig = paired_figure(rows[rows["seed"] < 2], "block")
    assert fig._suptitle.get_text().startswith("block\npaired differences by seed (2 seeds):")
    plt.close(fig)


def test_a_paired_panel_always_shows_zero_even_where_every_difference_is_far_above_it():
    from almabench.analysis.paired import paired_panels

    rows = pd.DataFrame([{"method": m, "seed": s, "step": t, "test_accuracy": (60.0 if m == "app" else 50.0) + s}
                         for m in ("app", "dense") for s in (0, 1) for t in (1, 2)])
    [(_, [panel])] = paired_panels(rows)
    low, high = panel.ylim()
    assert low < 0.0 < high and high > 10.0  # the differences are +10 at every seed and step
