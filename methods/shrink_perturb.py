"""Shrink & perturb (Ash & Adams, "On Warm-Starting Neural Network Training", NeurIPS 2020): the warm-starting
literature's cheap remedy for the generalisation gap that warm-starting opens.

Before each megabatch t ≥ 2 every parameter becomes λ·w + σ·ε, where ε is the same parameter of a fresh
initialisation of the architecture drawn from init_seed(seed, t) (the draw `scratch` starts megabatch t from, so
λ = 0, σ = 1 is `scratch`'s start exactly, and λ = 1, σ = 0 is dense). Batch-norm statistics (buffers) are kept.

Where the defaults come from: the authors' released code (github JordanAsh/warm_start, run.py) shrinks by
λ = 0.4 and perturbs with σ = 0.1 by default, the values of the experiment its README gives, and draws the noise as
σ times a freshly initialised copy of the network ("a randomly-initialized model as a noise source respects how
different kinds of parameters are often initialized differently"), every parameter included. The paper writes the
noise as p ~ N(0, σ²); its text could not be read in full offline, so the form and both numbers follow the code.
Megabatch 1 is dense's exactly (nothing to shrink yet).
"""

from typing import Any

import torch

from almabench.cell.models import init_seed

from .base import Method, Setting, StepContext, register


@register
class ShrinkPerturb(Method):
    name = "shrink-perturb"
    summary = ("before each megabatch, w <- shrink * w + perturb * (a fresh init): Ash & Adams 2020's warm-start "
               "remedy")
    settings = (Setting("shrink", 0.4, "λ, the factor every weight is multiplied by (the authors' code's default)",
                        low=0.0, high=1.0),
                Setting("perturb", 0.1, "σ, the scale of the fresh initialisation added (the authors' code's default)",
                        low=0.0))
    shrink: float
    perturb: float

    def __init__(self) -> None:
        self.noise_seed = 0  # the init seed of the current megabatch's ε (the cell's own init at megabatch 1)

    def before_step(self, ctx: StepContext) -> None:
        if ctx.step == 1:
            self.noise_seed = init_seed(ctx.config.seed, 0)
            return
        self.noise_seed, fresh = ctx.fresh_init(ctx.step)
        with torch.no_grad():
            for name, w in ctx.model.named_parameters():
                w.copy_(self.shrink * w + self.perturb * fresh[name].to(w.device))
        ctx.masks.apply()

    def step_record(self) -> dict[str, Any]:
        return {"shrink": self.shrink, "perturb": self.perturb, "noise_seed": self.noise_seed}
