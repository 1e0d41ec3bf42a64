"""Methods that each break one clause of the contract (almabench.extend.contract), for tests/test_plugins.py: OSP (which
keeps it) with one defect each."""

import random
from typing import Any

import numpy as np
import torch

from almabench.methods import register
from almabench.methods.osp import AnytimeOSP


@register
class WrongDensity(AnytimeOSP):
    name = "defect-density"

    def target_density(self, step, config) -> float:
        return 0.8**config.tau if step == 1 else 0.5  # declares 0.5 from megabatch 2 on; keeps OSP's 0.8^tau


@register
class LeakyMasks(AnytimeOSP):
    name = "defect-masks"

    def after_sgd_step(self, cell, sgd) -> None:
        with torch.no_grad():  # writes into pruned weights after the harness applied the masks
            for w in cell.masks.params.values():
                w.add_(1e-3)


@register
class Reinitialises(AnytimeOSP):
    name = "defect-pairing"

    def before_step(self, ctx) -> None:
        if ctx.step == 1:
            torch.manual_seed(1234)
            for module in ctx.model.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.reset_parameters()
        super().before_step(ctx)


@register
class ForgetsOnResume(AnytimeOSP):
    name = "defect-resume"

    def __init__(self) -> None:
        self.seen = 0  # carried between megabatches but not through state_dict

    def before_step(self, ctx) -> None:
        self.seen += 1
        super().before_step(ctx)

    def step_record(self) -> dict[str, Any]:
        return {"megabatches_seen": self.seen}


@register
class ShadowsDensity(AnytimeOSP):
    name = "defect-record"

    def step_record(self) -> dict[str, Any]:
        return {"test_accuracy": 100.0}


@register
class Random(AnytimeOSP):
    name = "defect-determinism"

    def step_record(self) -> dict[str, Any]:
        return {"noise": random.Random().random()}  # seeded from the clock


class _Noise(AnytimeOSP):
    """OSP plus noise of scale 0.001 on every surviving weight before megabatches 2 on: drawn by `draw`."""

    scale = 0.001

    def draw(self, ctx, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def before_step(self, ctx) -> None:
        super().before_step(ctx)
        if ctx.step > 1:
            with torch.no_grad():
                for w in ctx.masks.params.values():
                    w.add_(self.scale * self.draw(ctx, w))
            ctx.masks.apply()


@register
class UnseededNumpyNoise(_Noise):
    name = "defect-numpy-noise"

    def draw(self, ctx, w: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.random.default_rng().standard_normal(tuple(w.shape))).to(w.dtype)


@register
class GlobalTorchNoise(_Noise):
    name = "defect-torch-noise"

    def draw(self, ctx, w: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(w)


@register
class SeededNoise(_Noise):
    """Keeps the contract: its noise comes from the cell's generator."""

    name = "seeded-noise"

    def draw(self, ctx, w: torch.Tensor) -> torch.Tensor:
        return torch.randn(w.shape, generator=ctx.generator).to(w.dtype)
