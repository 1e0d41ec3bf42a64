import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from almabench.cell.config import RunConfig
from almabench.cell.sparsity import (
    PRUNERS,
    Masks,
    app_density,
    drop_and_grow,
    erk_densities,
    prunable_parameters,
    snip_scores,
    top_k_masks,
)
from almabench.cell.stream import make_stream
from almabench.cell.train import CellState, DeviceData, train_step
from almabench.data import load_dataset
from almabench.errors import AlmabenchError
from almabench.methods.dense import Dense


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.Flatten(), nn.Linear(6 * 4 * 4, 3))


def test_prunable_parameters_are_conv_weights_unless_linear_is_asked_for():
    model = tiny_model()
    assert list(prunable_parameters(model)) == ["0.weight", "2.weight"]
    assert list(prunable_parameters(model, include_linear=True)) == ["0.weight", "2.weight", "4.weight"]


def test_app_schedule_matches_the_paper_for_t8():
    kept = [app_density(t, 8, 4.5) for t in range(1, 9)]
    assert [round(100 * k, 1) for k in kept] == [80.0, 71.6, 64.0, 57.2, 51.2, 45.8, 41.0, 36.6]
    assert kept[-1] == pytest.approx(0.8**4.5)
    assert app_density(1, 1, 4.5) == pytest.approx(0.8)  # linspace(1, τ, 1) = [1]


def test_snip_scores_equal_abs_grad_times_weight_from_autograd():
    model = tiny_model()
    x, y = torch.randn(10, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    params = prunable_parameters(model)
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(params.values()))
    expected = {n: (g * p).abs() for (n, p), g in zip(params.items(), grads)}
    # several batches accumulate to the gradient of the mean loss over the whole sample
    scores = snip_scores(model, params, x, y, torch.Generator(), batch_size=3)
    for name in params:
        torch.testing.assert_close(scores[name], expected[name])
    assert all(p.grad is None for p in model.parameters())


def test_global_top_k_keeps_the_exact_count_and_the_highest_scores():
    scores = {"a": torch.rand(7, 5, generator=torch.Generator().manual_seed(1)),
              "b": torch.rand(13, generator=torch.Generator().manual_seed(2))}
    total = 35 + 13
    for density in (0.1, 0.37, 0.5, 0.9, 1.0):
        masks = top_k_masks(scores, density)
        kept = sum(int(m.sum()) for m in masks.values())
        assert kept == round(density * total)
        kept_scores = torch.cat([scores[n][masks[n]] for n in scores])
        pruned_scores = torch.cat([scores[n][~masks[n]] for n in scores])
        if len(pruned_scores):
            assert kept_scores.min() > pruned_scores.max()


def test_layer_scope_keeps_the_density_in_every_layer():
    scores = {"a": torch.rand(40), "b": torch.rand(10), "c": torch.rand(200)}
    masks = top_k_masks(scores, 0.3, scope="layer")
    assert [int(masks[n].sum()) for n in "abc"] == [12, 3, 60]


def test_restricted_masks_only_shrink_and_hit_the_density_of_all_weights():
    scores = {"a": torch.rand(100), "b": torch.rand(50)}
    old = top_k_masks({"a": torch.rand(100), "b": torch.rand(50)}, 0.6)
    new = top_k_masks(scores, 0.4, within=old)
    assert sum(int(m.sum()) for m in new.values()) == 60  # 0.4 of 150
    assert all(bool((new[n] & ~old[n]).sum() == 0) for n in scores)  # new ⊆ old


def test_restricted_masks_never_keep_a_weight_outside_the_old_mask_even_when_every_score_is_negative():
    """GraSP scores are signed: a weight already pruned must lose to any score, however negative (−inf, not 0)."""
    scores = {"a": torch.tensor([-1.0, -2.0, -3.0, -4.0]), "b": torch.tensor([-0.5, -6.0])}
    old = {"a": torch.tensor([False, True, True, True]), "b": torch.tensor([False, True])}
    new = top_k_masks(scores, 3 / 6, within=old)
    assert new["a"].tolist() == [False, True, True, True] and new["b"].tolist() == [False, False]
    layer = top_k_masks(scores, 1 / 2, scope="layer", within=old)  # 2 of a, 1 of b: b's only survivor at -6
    assert layer["a"].tolist() == [False, True, True, False] and layer["b"].tolist() == [False, True]


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5])
def test_top_k_refuses_a_density_outside_zero_to_one(density):
    with pytest.raises(AlmabenchError, match=r"density must be in \(0, 1\]"):
        top_k_masks({"a": torch.rand(10)}, density)


def test_erk_at_density_one_keeps_every_layer_dense():
    """One 8×8×3×3 layer: ε·ratio lands a rounding error above 1, so the layer is made dense and no sparse layer
    is left to solve ε over (the loop's own exit)."""
    assert erk_densities({"a": (8, 8, 3, 3)}, 1.0) == {"a": 1.0}
    both = erk_densities({"a": (4, 1, 3, 3), "b": (8, 4, 3, 3)}, 1.0)
    assert both == pytest.approx({"a": 1.0, "b": 1.0}, rel=1e-12)


def test_drop_and_grow_swaps_one_weight_even_when_grow_scores_are_negative():
    """4 active weights at fraction 0.25: floor(1) = one goes (the lowest drop score among the active) and one
    comes (the highest grow score among the others); a kept weight is never "grown" again, however low the
    inactive weights' grow scores (signed scores, or gradients exactly 0 at dead units)."""
    mask = {"w": torch.tensor([True, True, True, True, False, False])}
    drop = {"w": torch.tensor([0.4, 0.1, 0.3, 0.2, 9.0, 9.0])}
    grow = {"w": torch.tensor([5.0, -9.0, 5.0, 5.0, -2.0, -1.0])}
    assert drop_and_grow(mask, drop, grow, 0.25)["w"].tolist() == [True, False, True, True, False, True]
    assert drop_and_grow(mask, drop, grow, 0.2)["w"].tolist() == mask["w"].tolist()  # floor(0.8) = 0: unchanged
    signed = {"w": torch.tensor([-0.1, -0.4, -0.2, -0.3, 9.0, 9.0])}  # an inactive weight is never "kept"
    assert drop_and_grow(mask, signed, grow, 0.25)["w"].tolist() == [True, False, True, True, False, True]


def test_density_is_measured_for_a_single_weight_and_is_one_without_prunable_weights():
    weight = nn.Parameter(torch.tensor([[[[0.5]]]]))
    masks = Masks({"w": weight})
    assert (masks.density(), masks.kept()) == (1.0, 1)
    masks.set({"w": torch.zeros(1, 1, 1, 1, dtype=torch.bool)})
    assert masks.density() == 0.0 and masks.layer_density() == {"w": 0.0} and masks.kept() == 0
    assert Masks({}).density() == 1.0


def test_masks_zero_weights_and_density_is_measured_from_them():
    model = tiny_model()
    masks = Masks(prunable_parameters(model))
    assert masks.density() == 1.0
    masks.set(top_k_masks({n: p.abs() for n, p in masks.params.items()}, 0.25))
    assert masks.density() == pytest.approx(round(0.25 * masks.total) / masks.total)
    for name, p in masks.params.items():
        assert torch.all(p[~masks.masks[name]] == 0)


def test_masked_weights_stay_zero_through_training():
    dataset = load_dataset("digits")
    config = RunConfig(epochs=2, batch_size=32, weight_decay=1e-3, flip=False, milestones=(2,))
    torch.manual_seed(0)
    from almabench.cell.models import build_model

    model = build_model("convnet", 10, 1, 8)
    masks = Masks(prunable_parameters(model))
    masks.set(top_k_masks(PRUNERS.get("random")(model, masks.params, None, None, torch.Generator()), 0.3))
    before = {n: p.detach().clone() for n, p in masks.params.items()}
    stream = make_stream(dataset.n_train, 2, seed=0)
    data = DeviceData.from_dataset(dataset, torch.device("cpu"))
    train_step(CellState(config, model, masks, data, Dense(), torch.Generator().manual_seed(0), crop_padding=1),
               stream[0].train, stream[0].val)
    for name, p in masks.params.items():
        assert torch.all(p[~masks.masks[name]] == 0)
        assert not torch.equal(p[masks.masks[name]], before[name][masks.masks[name]])  # it did train
    assert masks.density() == pytest.approx(round(0.3 * masks.total) / masks.total)


def test_grasp_scores_equal_weight_times_hessian_gradient_product_from_autograd():
    from torch.autograd.functional import hvp

    from almabench.cell.sparsity import GRASP_TEMPERATURE, grasp_scores

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.Tanh(), torch.nn.Flatten(),
                                torch.nn.Linear(3 * 6 * 6, 3))
    x, y = torch.randn(10, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    params = {"0.weight": model[0].weight, "3.weight": model[3].weight}
    names = list(params)

    def loss(*weights):
        out = torch.func.functional_call(model, dict(zip(names, weights)), (x,))
        return F.cross_entropy(out / GRASP_TEMPERATURE, y)

    weights = tuple(p.detach() for p in params.values())
    g = torch.autograd.grad(loss(*[w.requires_grad_() for w in weights]), weights)
    _, hg = hvp(loss, tuple(w.detach() for w in weights), g)
    assert GRASP_TEMPERATURE == 200.0  # the released library's T (README: grasp, T = 200)
    scores = grasp_scores(model, params, x, y, torch.Generator(), batch_size=3)  # batches add up
    for name, w, h in zip(names, weights, hg):
        torch.testing.assert_close(scores[name].float(), (w * h).float(), rtol=1e-4, atol=1e-9)


def test_synflow_scores_match_the_closed_form_of_a_two_layer_linear_path():
    from almabench.cell.sparsity import synflow_scores

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1, bias=False), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(3, 2, bias=False))
    conv, linear = model[0].weight.detach().abs().flatten(), model[3].weight.detach().abs().clone()  # c_i, L_ki
    params = {"0.weight": model[0].weight, "3.weight": model[3].weight}
    scores = synflow_scores(model, params, torch.randn(5, 1, 1, 1), None, torch.Generator())
    # R = Σ_k Σ_i |L_ki| |c_i| on a one-pixel image of ones: score(c_i) = |c_i| Σ_k |L_ki|, score(L_ki) = |L_ki| |c_i|
    torch.testing.assert_close(scores["0.weight"].flatten(), (conv * linear.sum(0)).double())
    torch.testing.assert_close(scores["3.weight"], (linear * conv).double())
