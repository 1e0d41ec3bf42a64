"""Gradual magnitude pruning (Zhu & Gupta 2017) inside each megabatch, to APP's schedule.

Megabatch t starts at the density its masks keep (1 at t = 1) and ends at APP's 0.8^δ_t, along the cubic
s = s_f + (s_i − s_f)(1 − p)³ of the sparsity s (tensorflow/model-optimization's PolynomialDecay, power 3).
Span and cadence scale RigL's CIFAR setting (prune from 20 % to 75 % of training every 1,000 steps) to a
megabatch of N SGD steps: p runs from iteration b = max(1, ⌊0.2N⌋) to e = max(b, ⌊0.75N⌋), with a global
(per `scope`) magnitude update every Δ = max(1, ⌊(e − b)/10⌋) steps and always at e, so the target is reached.
New masks ⊆ old. Only epochs that end after e may be the megabatch's kept checkpoint (at the target density).
The schedule followed is recorded in each step: its span, Δ, and every update's target and non-zero count.
"""

from typing import Any

from almabench.cell.config import RunConfig
from almabench.cell.sparsity import app_density, top_k_masks
from almabench.cell.train import CellState, SGDStep

from .base import Method, Setting, StepContext, register

START, END = 0.2, 0.75  # of each megabatch's SGD steps: RigL's CIFAR setting for its GMP baseline


def span(total: int, start: float = START, end: float = END) -> tuple[int, int, int]:
    """(first, last, every): the iterations of a megabatch of `total` SGD steps that the cubic runs over."""
    first = max(1, int(start * total))
    last = max(first, int(end * total))
    return first, last, max(1, (last - first) // 10)


@register
class GradualMagnitude(Method):
    name = "gmp"
    summary = "gradual magnitude pruning inside each megabatch to 0.8^delta_t (cubic, 20-75 % of its steps)"
    prunes = True
    shrinks = True
    ignores = ("pruner", "sample_fraction")  # magnitude by definition, no sample
    settings = (
        Setting("prune_start", START, "b as a fraction of each megabatch's SGD steps: where the cubic starts "
                "(RigL's CIFAR GMP setting)", low=0.0, high=1.0),
        Setting("prune_end", END, "e as a fraction of each megabatch's SGD steps: where it reaches the target "
                "(RigL's CIFAR GMP setting)", low=0.0, high=1.0),
    )
    prune_start: float
    prune_end: float

    def __init__(self) -> None:
        self.start = self.final = 1.0  # the densities of this megabatch, from its masks: nothing to checkpoint
        self.updates: list[dict[str, Any]] = []  # this megabatch's schedule, for its record
        self.schedule: dict[str, Any] = {}

    def target_density(self, step: int, config: RunConfig) -> float:
        return app_density(step, config.megabatches, config.tau)

    def before_step(self, ctx: StepContext) -> None:
        self.start = ctx.masks.kept() / ctx.masks.total
        self.final = self.target_density(ctx.step, ctx.config)
        self.updates, self.schedule = [], {}

    def after_sgd_step(self, cell: CellState, sgd: SGDStep) -> None:
        first, last, every = span(sgd.total, self.prune_start, self.prune_end)
        i = sgd.iteration
        if i < first or i > last or ((i - first) % every and i != last):
            return
        p = 1.0 if last == first else (i - first) / (last - first)
        s_i, s_f = 1.0 - self.start, 1.0 - self.final
        density = 1.0 - (s_f + (s_i - s_f) * (1.0 - p) ** 3)
        magnitude = {n: w.detach().abs() for n, w in cell.masks.params.items()}
        cell.masks.set(top_k_masks(magnitude, density, cell.config.run_scope, within=cell.masks.masks))
        self.schedule = {"sgd_steps": sgd.total, "first": first, "last": last, "every": every}
        self.updates.append({"iteration": i, "target_density": density, "nonzero": cell.masks.nonzero()})

    def settled(self, iteration: int, total: int) -> bool:
        return iteration >= span(total, self.prune_start, self.prune_end)[1]

    def step_record(self) -> dict[str, Any]:
        return {"gmp_schedule": self.schedule, "mask_updates": self.updates}
