"""APP, Anytime Progressive Pruning, as the paper defines it (SPEC.md).

Before each megabatch t the current (trained) network is pruned to 0.8^δ_t of its prunable weights,
δ = linspace(1, τ, T), scored on π_t (0.2·|M_t| examples drawn from the step's replay set); the new mask is
chosen among the surviving weights only, so masks only shrink and the density follows the schedule exactly.
"""

from almabench.cell.config import RunConfig
from almabench.cell.sparsity import app_density

from .base import Method, StepContext, register


@register
class APP(Method):
    name = "app"
    summary = "prune the trained net to 0.8^delta_t before each megabatch (paper version)"
    prunes = True
    shrinks = True

    def target_density(self, step: int, config: RunConfig) -> float:
        return app_density(step, config.megabatches, config.tau)

    def before_step(self, ctx: StepContext) -> None:
        sample = ctx.random_sample(ctx.step_data.train)
        ctx.prune(ctx.scores(sample), self.target_density(ctx.step, ctx.config), within_current=True)
