"""The wiring of a run, checked against hand counts: where APP draws π_t, the fractions that size a step, and the
FLOPs and parameters a step record says remain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from almabench.cell.config import RunConfig
from almabench.cell.models import ARCHS, init_seed
from almabench.cell.run import run_cell
from almabench.cell.stream import make_stream
from almabench.methods import METHODS, Method, StepContext
from conftest import make_images


def test_app_draws_pi_from_the_replay_sets_training_part_sized_by_the_run_s_fractions(monkeypatch):
    """digits (1,437 training images), T = 3: megabatches of 479, val_fraction 0.25 validates
    ⌊0.25 · 479 + 0.5⌋ = 120 and trains 359; sample_fraction 0.05 draws round(0.05 · 479) = 24 images;
    replay=previous trains step t on M_{t-1} ∪ M_t."""
    drawn: list[torch.Tensor] = []
    sample_batch = StepContext.sample_batch

    def recording(ctx: StepContext, indices: torch.Tensor):
        drawn.append(indices.clone())
        return sample_batch(ctx, indices)

    monkeypatch.setattr(StepContext, "sample_batch", recording)
    config = RunConfig(method="app", pruner="magnitude", dataset="digits", megabatches=3, epochs=1, milestones=(1,),
                       flip=False, replay="previous", val_fraction=0.25, sample_fraction=0.05)
    result = run_cell(config)
    steps = result["steps"]
    assert [(s["train_size"], s["val_size"], s["sample_size"]) for s in steps] == [
        (359, 120, 24), (718, 240, 24), (718, 240, 24)]
    stream = make_stream(1437, 3, seed=0, val_fraction=0.25)
    assert [(len(m.train), len(m.val)) for m in stream] == [(359, 120)] * 3
    pools = [stream[0].train, torch.cat([stream[0].train, stream[1].train]),
             torch.cat([stream[1].train, stream[2].train])]
    generator = torch.Generator().manual_seed(0 + 1)  # the method's generator: seed + 1; magnitude draws nothing
    expected = [pool[torch.randperm(len(pool), generator=generator)[:24]] for pool in pools]
    assert len(drawn) == 3 and all(torch.equal(d, e) for d, e in zip(drawn, expected))
    total = result["prunable_total"]
    assert [s["density"] for s in steps] == [round(0.8**d * total) / total for d in (1.0, 2.75, 4.5)]  # δ by hand


class TwoConvsAndALinear(nn.Sequential):
    """6×6 grey images: conv 1→4 (3×3, pad 1): 4·6·6 = 144 outputs × 9 MACs; grouped conv 4→4 (3×2 kernel,
    2 groups, no pad): 4·4·5 = 80 outputs × 2·3·2 = 12 MACs; linear 80→3."""

    def __init__(self, num_classes: int, channels: int, size: int) -> None:
        super().__init__(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, (3, 2), groups=2),
                         nn.Flatten(), nn.Linear(4 * (size - 2) * (size - 1), num_classes))


class KeepsTheFirstWeights(Method):
    """Known masks: the first 12 of conv 0's 36 weights, 36 of conv 2's 48 and 120 of the linear's 240. Keeps
    the model's state as step 1 finds it (the initialisation)."""

    name = "keeps-first"
    prunes = True
    KEEP = {"0.weight": 12, "2.weight": 36, "4.weight": 120}
    init: dict[str, torch.Tensor] = {}

    def before_step(self, ctx: StepContext) -> None:
        if ctx.step == 1:
            KeepsTheFirstWeights.init = {k: v.clone() for k, v in ctx.model.state_dict().items()}
        ctx.masks.set({n: (torch.arange(p.numel()) < self.KEEP[n]).view_as(p) for n, p in ctx.masks.params.items()})


@pytest.mark.parametrize("prune_linear, prunable, params_remaining, flops_remaining", [
    # FLOPs = 2 × MACs: conv 0 2·144·9 = 2,592, conv 2 2·80·12 = 1,920, linear 2·80·3 = 480 (4,992 dense);
    # parameters: 36 + 4 + 48 + 4 + 240 + 3 = 335
    (False, 36 + 48, 335 - 24 - 12, 2592 // 3 + 1920 * 3 // 4 + 480),
    (True, 36 + 48 + 240, 335 - 24 - 12 - 120, 2592 // 3 + 1920 * 3 // 4 + 480 // 2),
])
def test_flops_and_params_remaining_against_a_hand_count(tmp_path, prune_linear, prunable, params_remaining,
                                                         flops_remaining):
    x_train, y_train = make_images(40, 6, None, seed=0)
    x_test, y_test = make_images(10, 6, None, seed=1)
    path = tmp_path / "six.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    ARCHS._entries["two-convs"], METHODS._entries["keeps-first"] = TwoConvsAndALinear, KeepsTheFirstWeights
    try:
        result = run_cell(RunConfig(method="keeps-first", dataset=str(path), arch="two-convs", megabatches=2,
                                    epochs=0, prune_linear=prune_linear, seed=2))
    finally:
        del ARCHS._entries["two-convs"], METHODS._entries["keeps-first"]
    assert (result["params_total"], result["prunable_total"], result["flops_dense"]) == (335, prunable, 4992)
    for step in result["steps"]:
        assert (step["params_remaining"], step["flops_remaining"]) == (params_remaining, flops_remaining)
        linear = {"4.weight": 1 / 2} if prune_linear else {}
        assert step["layer_density"] == {"0.weight": 1 / 3, "2.weight": 3 / 4, **linear}
    torch.manual_seed(init_seed(2, 0))  # the cell's initialisation: offset 0 of its seed (2 · 1,000,003)
    expected = TwoConvsAndALinear(3, 1, 6).state_dict()
    assert expected.keys() == KeepsTheFirstWeights.init.keys()
    assert all(torch.equal(v, KeepsTheFirstWeights.init[k]) for k, v in expected.items())
