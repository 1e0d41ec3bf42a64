"""The warm-start controls: scratch and shrink-perturb start each megabatch from the exact weights they promise."""

from __future__ import annotations

import torch
import torch.nn as nn

from almabench.cell.config import RunConfig
from almabench.cell.models import init_seed
from almabench.cell.run import run_cell
from almabench.cell.sparsity import Masks, prunable_parameters
from almabench.cell.stream import Megabatch
from almabench.cell.train import DeviceData
from almabench.methods import METHODS, StepContext


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def context(method: str, step: int, seed: int = 3) -> StepContext:
    """A 'trained' tiny net (its weights moved away from any init, its batch-norm statistics set) at step t."""
    torch.manual_seed(init_seed(seed, 0))
    model = tiny_net()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.5)
        model[1].running_mean.fill_(0.25)
    x = torch.zeros(6, 1, 4, 4, dtype=torch.uint8)
    y = torch.zeros(6, dtype=torch.long)
    data = DeviceData(x, y, x, y, torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1))
    stream = [Megabatch(torch.arange(0, 2), torch.arange(2, 3)), Megabatch(torch.arange(3, 5), torch.arange(5, 6))]
    config = RunConfig(method=method, megabatches=2, epochs=1, seed=seed, milestones=(1,))
    return StepContext(step, config, model, Masks(prunable_parameters(model)), data, stream, stream[step - 1],
                       torch.Generator().manual_seed(0), new_model=tiny_net)


def fresh(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return tiny_net().state_dict()


def test_scratch_starts_megabatch_t_from_a_fresh_init_of_the_recorded_seed():
    ctx = context("scratch", step=2)
    method = METHODS.get("scratch")()
    method.before_step(ctx)
    seed = method.step_record()["start_seed"]
    assert seed == init_seed(3, 2) != init_seed(3, 0)
    expected = fresh(seed)
    state = ctx.model.state_dict()
    assert state.keys() == expected.keys()
    for name, value in expected.items():  # weights, biases and batch-norm statistics: all of the fresh init
        assert torch.equal(state[name], value), name


def test_scratch_leaves_megabatch_1_as_dense_has_it():
    ctx = context("scratch", step=1)
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    method = METHODS.get("scratch")()
    method.before_step(ctx)
    assert all(torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())
    assert method.step_record() == {"start_seed": init_seed(3, 0)}


def test_shrink_perturb_is_exactly_lambda_w_plus_sigma_epsilon_and_keeps_batch_norm_statistics():
    ctx = context("shrink-perturb", step=2)
    method = METHODS.get("shrink-perturb")()
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    method.before_step(ctx)
    record = method.step_record()
    assert (record["shrink"], record["perturb"], record["noise_seed"]) == (0.4, 0.1, init_seed(3, 2))
    epsilon = fresh(init_seed(3, 2))
    after = ctx.model.state_dict()
    params = dict(ctx.model.named_parameters())
    for name in after:
        if name in params:
            assert torch.equal(after[name], before[name] * 0.4 + 0.1 * epsilon[name]), name
        else:  # running statistics are buffers: shrink & perturb acts on parameters
            assert torch.equal(after[name], before[name]), name


def test_shrink_perturb_at_lambda_0_sigma_1_is_scratch_and_at_1_0_changes_nothing(monkeypatch):
    cls = METHODS.get("shrink-perturb")
    scratch = context("scratch", step=2)
    METHODS.get("scratch")().before_step(scratch)
    for (shrink, perturb), same_as in (((0.0, 1.0), scratch.model), ((1.0, 0.0), None)):
        monkeypatch.setattr(cls, "shrink", shrink)
        monkeypatch.setattr(cls, "perturb", perturb)
        ctx = context("shrink-perturb", step=2)
        reference = dict((same_as or context("dense", step=2).model).named_parameters())
        cls().before_step(ctx)
        for name, w in ctx.model.named_parameters():
            assert torch.equal(w, reference[name]), (shrink, perturb, name)


def test_neither_moves_the_global_random_state():
    for name in ("scratch", "shrink-perturb"):
        ctx = context(name, step=2)
        torch.manual_seed(123)
        METHODS.get(name)().before_step(ctx)
        after = torch.rand(3)
        torch.manual_seed(123)
        assert torch.equal(after, torch.rand(3)), name


def test_scratch_cell_pairs_with_dense_at_megabatch_1_and_departs_after():
    config = dict(dataset="digits", arch="convnet", megabatches=2, epochs=1, seed=0, stream_images=300)
    dense = run_cell(RunConfig(method="dense", **config))["steps"]
    for method in ("scratch", "shrink-perturb"):
        steps = run_cell(RunConfig(method=method, **config))["steps"]
        for key in ("test_errors", "train_accuracy", "val_accuracy"):
            assert steps[0][key] == dense[0][key], (method, key)
        assert (steps[1]["test_errors"], steps[1]["train_accuracy"]) != (dense[1]["test_errors"],
                                                                          dense[1]["train_accuracy"]), method
        assert steps[1]["density"] == 1.0
