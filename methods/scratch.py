"""From scratch at every megabatch: the reference of ALMA's own paper (Caccia et al., 2021, "On anytime learning at
macroscale"), the control for everything warm-starting does, good or bad.

Before each megabatch t ≥ 2 the whole network (weights, biases, batch-norm affine parameters and statistics) is
replaced by a fresh initialisation of the same architecture drawn from init_seed(seed, t), then trained on the
replay set as every method is. Megabatch 1 trains the cell's own initial network (init_seed(seed, 0)), so it is
dense's megabatch 1 exactly and the two stay paired. The seed of each megabatch's starting weights is recorded.
"""

from typing import Any

from almabench.cell.models import init_seed

from .base import Method, StepContext, register


@register
class Scratch(Method):
    name = "scratch"
    summary = ("re-initialise the network before each megabatch and train from scratch on the replay set "
               "(ALMA's reference; Caccia et al. 2021)")

    def __init__(self) -> None:
        self.start_seed = 0  # the init seed of the weights the current megabatch started from

    def before_step(self, ctx: StepContext) -> None:
        if ctx.step == 1:
            self.start_seed = init_seed(ctx.config.seed, 0)
            return
        self.start_seed, fresh = ctx.fresh_init(ctx.step)
        ctx.model.load_state_dict(fresh)
        ctx.masks.apply()

    def step_record(self) -> dict[str, Any]:
        return {"start_seed": self.start_seed}
