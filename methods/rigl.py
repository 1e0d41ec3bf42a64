"""RigL, rigging the lottery (Evci et al. 2020): a fixed budget, connections moved by gradient while training.

Before megabatch 1 a random mask (the run's seeded generator) at the final density 0.8^τ, spread by `scope`:
unset, RigL's own CIFAR setting, erk-dense-first (ERK layer densities with the first layer dense; the other layers
share the rest of the budget, so the whole keeps 0.8^τ); global, layer or erk where set. In every megabatch of N
SGD steps, every Δ steps while i < e = ⌊0.75N⌋, each layer drops the floor(f·a) of its a active weights of
smallest |w| and grows as many of largest |∂L/∂w| (the dense gradient of that step's minibatch: masks zero
weights, not gradients) among the rest, so every layer keeps its count exactly. f = 0.3 · ½(1 + cos(π i / e)),
restarted at each megabatch as the learning rate is.
Δ = 100 (RigL's CIFAR setting), or ⌊e/10⌋ (at least 1) where a megabatch is too short for ten
updates. Grown weights start at zero with a zero momentum buffer. The updates made are recorded in each step.
Only epochs that end at or after e may be the megabatch's kept (best-validation) checkpoint (`settled`): its
masks are final there and every weight grown has had at least one SGD step since, so the measured density is the
budget. A megabatch too short for an earlier epoch to end settled (at most 3 epochs of 4 batches or more each) keeps
its last epoch, whatever its validation accuracy, as gmp does: the last epoch always competes (train_step).
(The measured density counts non-zero weights: a weight that never gets a gradient, e.g. a kernel tap that only
sees padding, is still zero and not counted.)
"""

import math
from typing import Any

import torch
from torch import Tensor

from almabench.cell.config import RunConfig
from almabench.cell.sparsity import PRUNERS, drop_and_grow
from almabench.cell.train import CellState, SGDStep

from .base import Method, Setting, StepContext, register

DROP_FRACTION = 0.3
END = 0.75  # of each megabatch's SGD steps
EVERY = 100


def window_end(total: int, end: float = END) -> int:
    """e = ⌊0.75N⌋: the drop/grow updates run at iterations below it, so the masks are final from it on."""
    return int(end * total)


@register
class RigL(Method):
    name = "rigl"
    summary = "RigL: 0.8^tau from step 1, drop smallest |w| and grow largest |grad| every 100 steps"
    prunes = True
    ignores = ("pruner", "sample_fraction")  # the start mask is random, the updates use |w| and |grad|
    default_scope = "erk-dense-first"  # RigL's CIFAR setting
    settings = (
        Setting("drop_fraction", DROP_FRACTION, "f at the first update, decayed by a cosine to 0 at e (RigL's "
                "CIFAR setting)", low=0.0, high=1.0),
        Setting("update_every", EVERY, "Δ, SGD steps between drop/grow updates (RigL's CIFAR setting; fewer where "
                "a megabatch has under ten updates' room)", low=1),
        Setting("update_end", END, "e as a fraction of each megabatch's SGD steps: no update from there on (RigL's "
                "setting)", low=0.0, high=1.0),
    )
    drop_fraction: float
    update_every: int
    update_end: float

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []  # this megabatch's, for its record

    def target_density(self, step: int, config: RunConfig) -> float:
        return 0.8**config.tau

    def before_step(self, ctx: StepContext) -> None:
        self.updates = []
        if ctx.step == 1:
            no_sample = torch.empty(0)  # the random criterion reads neither images nor labels
            random = PRUNERS.get("random")(ctx.model, ctx.masks.params, no_sample, no_sample.long(), ctx.generator,
                                           ctx.score_batch_size)
            ctx.prune(random, self.target_density(1, ctx.config), within_current=False)

    def grow_scores(self, cell: CellState) -> dict[str, Tensor]:
        return {n: p.grad.abs() if p.grad is not None else torch.zeros_like(p) for n, p in cell.masks.params.items()}

    def after_sgd_step(self, cell: CellState, sgd: SGDStep) -> None:
        end = window_end(sgd.total, self.update_end)
        every = min(self.update_every, max(1, end // 10))
        if sgd.iteration % every or sgd.iteration >= end:
            return
        fraction = self.drop_fraction * 0.5 * (1.0 + math.cos(math.pi * sgd.iteration / end))
        old = cell.masks.masks
        drop = {n: p.detach().abs() for n, p in cell.masks.params.items()}
        new = drop_and_grow(old, drop, self.grow_scores(cell), fraction)
        cell.masks.set(new)
        born = {n: new[n] & ~old[n] for n in new}  # their weights are zero already: they were masked
        for name, p in cell.masks.params.items():
            buffer = sgd.optimiser.state.get(p, {}).get("momentum_buffer")
            if buffer is not None:
                buffer[born[name]] = 0.0
        grown = sum(int(b.sum()) for b in born.values())
        self.updates.append({"iteration": sgd.iteration, "every": every, "drop_fraction": fraction, "grown": grown})

    def settled(self, iteration: int, total: int) -> bool:
        return iteration >= window_end(total, self.update_end)

    def step_record(self) -> dict[str, Any]:
        return {"mask_updates": self.updates}
