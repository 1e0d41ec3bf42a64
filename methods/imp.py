"""Lottery tickets with rewinding (Frankle et al. 2019-20; open_lth's lottery/runner.py) along the stream.

Before megabatch 1 the initial network is pruned by magnitude to APP's 0.8^δ_1, so that every megabatch runs at
APP's density. The rewind point is the whole network (every parameter and buffer, batch-norm statistics
included: open_lth reloads the full model saved at the rewind step) after the first k SGD iterations of megabatch
1, k = max(1, min(500, ⌊N_1/10⌋)) with N_1 its SGD steps: 500 is where Frankle et al. rewind ResNet-20 on
CIFAR-10 (stable to SGD noise from there), about 11 % of megabatch 1 at the paper's settings (4,400 steps); the
10 % cap keeps it early in short megabatches, where 500 would lie past the end. Before each megabatch t ≥ 2 the
trained network is pruned by global (per `scope`) magnitude to 0.8^δ_t among its surviving weights, then every
weight and buffer is rewound and the masks applied. The rewind point is the method's checkpointed state.
"""

from typing import Any

from torch import Tensor

from almabench.cell.config import RunConfig
from almabench.cell.sparsity import app_density
from almabench.cell.train import CellState, SGDStep

from .base import Method, Setting, StepContext, register

CAP, FRACTION = 500, 0.1


def rewind_iteration(total: int, cap: int = CAP, fraction: float = FRACTION) -> int:
    """k = max(1, min(cap, ⌊fraction · N_1⌋)); int(N·0.1) is N // 10 exactly (0.1's double is just above 0.1)."""
    return max(1, min(cap, int(total * fraction)))


@register
class LotteryRewind(Method):
    name = "imp"
    summary = "lottery tickets: magnitude-prune to 0.8^delta_t, rewind to iteration k of megabatch 1, retrain"
    prunes = True
    shrinks = True
    ignores = ("pruner", "sample_fraction")  # magnitude by definition, no sample
    settings = (
        Setting("rewind_cap", CAP, "the latest SGD iteration of megabatch 1 to rewind to (Frankle et al.'s "
                "ResNet-20 rewind point)", low=1),
        Setting("rewind_fraction", FRACTION, "the rewind point's largest share of megabatch 1's SGD steps",
                low=0.0, high=1.0),
    )
    rewind_cap: int
    rewind_fraction: float

    def __init__(self) -> None:
        self.rewind: dict[str, Tensor] = {}  # empty until megabatch 1 reaches iteration k
        self.k = 0

    def target_density(self, step: int, config: RunConfig) -> float:
        return app_density(step, config.megabatches, config.tau)

    def before_step(self, ctx: StepContext) -> None:
        magnitude = {n: w.detach().abs() for n, w in ctx.masks.params.items()}
        ctx.prune(magnitude, self.target_density(ctx.step, ctx.config), within_current=ctx.step > 1)
        if ctx.step > 1 and self.rewind:  # no rewind point: megabatch 1 made no SGD step, the net is its init
            ctx.model.load_state_dict(self.rewind)
            ctx.masks.apply()

    def after_sgd_step(self, cell: CellState, sgd: SGDStep) -> None:
        if cell.step == 1 and sgd.iteration == rewind_iteration(sgd.total, self.rewind_cap, self.rewind_fraction):
            self.rewind = {k: v.detach().clone() for k, v in cell.model.state_dict().items()}
            self.k = sgd.iteration

    def step_record(self) -> dict[str, Any]:
        return {"rewind_iteration": self.k}

    def state_dict(self) -> dict[str, Any]:
        return {"rewind": self.rewind, "k": self.k}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rewind, self.k = state["rewind"], int(state["k"])
