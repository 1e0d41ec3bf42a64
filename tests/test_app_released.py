"""app-released scores as the released code's generate_mask.py does (SPEC.md, departure 1), on a hand-made net."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from almabench.cell.config import RunConfig
from almabench.cell.models import init_seed
from almabench.cell.sparsity import Masks, prunable_parameters
from almabench.cell.stream import Megabatch
from almabench.cell.train import DeviceData
from almabench.methods import StepContext
from almabench.methods.app_released import fresh_conv_weights, released_scores


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def context(pruner: str, step: int = 2) -> StepContext:
    """A 'trained' net whose first conv lost half its weights at step t − 1, and a 24-image sample."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (30, 1, 6, 6), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 3, (30,), generator=g)
    data = DeviceData(x, y, x[:4], y[:4], torch.full((1, 1, 1, 1), 120.0), torch.full((1, 1, 1, 1), 70.0))
    model = tiny_net()
    masks = Masks(prunable_parameters(model))
    old = {name: torch.ones_like(p, dtype=torch.bool) for name, p in masks.params.items()}
    old["0.weight"] = torch.rand(old["0.weight"].shape, generator=g) < 0.5
    masks.set(old)
    config = RunConfig(method="app-released", pruner=pruner, megabatches=2, epochs=1, seed=3, flip=False,
                       crop_padding=0, milestones=(1,))
    stream = [Megabatch(torch.arange(0, 12), torch.arange(12, 15)),
              Megabatch(torch.arange(15, 27), torch.arange(27, 30))]
    step_data = Megabatch(torch.cat([m.train for m in stream]), torch.cat([m.val for m in stream]))
    return StepContext(step, config, model, masks, data, stream, step_data, torch.Generator().manual_seed(0))


def mask_gradient(ctx: StepContext, sample: torch.Tensor) -> dict[str, torch.Tensor]:
    """|∂L/∂m| by autograd through an explicit mask: the library's masked Conv2d, W = weight_mask ⊙ weight."""
    scorer = copy.deepcopy(ctx.model).train()
    params = {name: p for name, p in scorer.named_parameters() if name in ctx.masks.params}
    fresh = fresh_conv_weights(scorer, params, seed=init_seed(ctx.config.seed, ctx.step))
    m = {name: ctx.masks.masks[name].float().requires_grad_() for name in params}
    weights = {name: m[name] * fresh[name] for name in params}
    images, labels = ctx.data.normalise(ctx.data.x_train[sample]), ctx.data.y_train[sample]
    F.cross_entropy(functional_call(scorer, weights, (images,)), labels).backward()
    return {name: m[name].grad.abs() for name in params}


def test_snip_scores_the_old_mask_on_fresh_weights_and_pruned_weights_score_non_zero():
    ctx = context("snip")
    sample = ctx.step_data.train[: ctx.sample_size]
    scores = released_scores(ctx, sample)
    expected = mask_gradient(ctx, sample)
    for name in scores:
        torch.testing.assert_close(scores[name], expected[name], rtol=1e-5, atol=1e-9)
    pruned = ~ctx.masks.masks["0.weight"]
    assert pruned.sum() > 0 and (scores["0.weight"][pruned] > 0).all()  # |∂L/∂W · w| ≠ 0 where m = 0
    # the forward ran through the old mask: a dense fresh network scores otherwise
    dense = context("snip")
    dense.masks.set({name: torch.ones_like(m) for name, m in dense.masks.masks.items()})
    dense.model.load_state_dict(ctx.model.state_dict())
    assert not torch.allclose(released_scores(dense, sample)["3.weight"], scores["3.weight"])


def test_the_trained_model_is_left_untouched_by_scoring():
    ctx = context("snip")
    before = copy.deepcopy(ctx.model.state_dict())
    released_scores(ctx, ctx.step_data.train[: ctx.sample_size])
    assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())


def test_magnitude_scores_every_fresh_weight_pruned_or_not():
    ctx = context("magnitude")
    scores = released_scores(ctx, ctx.step_data.train[: ctx.sample_size])
    params = dict(copy.deepcopy(ctx.model).named_parameters())
    fresh = fresh_conv_weights(ctx.model, {n: params[n] for n in ctx.masks.params}, seed=3 * 1_000_003 + 2)
    assert all(torch.equal(scores[n], fresh[n].abs()) for n in scores)
    assert (scores["0.weight"][~ctx.masks.masks["0.weight"]] > 0).all()
    trained = ctx.model[0].weight.detach().abs()
    assert not torch.allclose(scores["0.weight"], trained)  # not the trained weights


def test_fresh_weights_follow_nn_conv2ds_own_initialisation():
    model = nn.Sequential(nn.Conv2d(16, 64, 3))
    fresh = fresh_conv_weights(model, {"0.weight": model[0].weight}, seed=0)["0.weight"]
    bound = 1 / (16 * 9) ** 0.5  # kaiming-uniform with a = √5: U(−1/√fan_in, 1/√fan_in)
    assert fresh.abs().max() <= bound and fresh.abs().max() > 0.95 * bound
    assert fresh.std().item() == pytest.approx(bound / 3**0.5, rel=0.05)
