"""Methods that each break one clause of the contract (almabench.contract), for tests/test_plugins.py."""

import random
from typing import Any

import torch

from almabench.methods import Method, register


class _Half(Method):
    """Magnitude-prune to half the weights before megabatch 1: keeps the contract; the defects below break it."""

    prunes = True
    shrinks = True

    def target_density(self, step, config) -> float:
        return 0.5

    def before_step(self, ctx) -> None:
        if ctx.step == 1:
            ctx.prune({n: w.detach().abs() for n, w in ctx.masks.params.items()}, 0.5, within_current=True)


@register
class WrongDensity(_Half):
    name = "defect-density"

    def target_density(self, step, config) -> float:
        return 0.4  # declares 0.4, prunes to 0.5


@register
class LeakyMasks(_Half):
    name = "defect-masks"

    def after_sgd_step(self, cell, sgd) -> None:
        with torch.no_grad():  # writes into pruned weights after the harness applied the masks
            for w in cell.masks.params.values():
                w.add_(1e-3)


@register
class Reinitialises(_Half):
    name = "defect-pairing"

    def before_step(self, ctx) -> None:
        if ctx.step == 1:
            torch.manual_seed(1234)
            for module in ctx.model.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.reset_parameters()
        super().before_step(ctx)


@register
class ForgetsOnResume(_Half):
    name = "defect-resume"

    def __init__(self) -> None:
        self.seen = 0  # carried between megabatches but not through state_dict

    def before_step(self, ctx) -> None:
        self.seen += 1
        super().before_step(ctx)

    def step_record(self) -> dict[str, Any]:
        return {"megabatches_seen": self.seen}


@register
class ShadowsDensity(_Half):
    name = "defect-record"

    def step_record(self) -> dict[str, Any]:
        return {"test_accuracy": 100.0}


@register
class Random(_Half):
    name = "defect-determinism"

    def step_record(self) -> dict[str, Any]:
        return {"noise": random.Random().random()}  # seeded from the clock
