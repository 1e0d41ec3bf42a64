"""Anytime one-shot pruning (OSP): one mask at the final density 0.8^τ, scored on the random init with a
sample of M_1 at step 1, then held fixed for the whole stream."""

from almabench.cell.config import RunConfig

from .base import Method, StepContext, register


@register
class AnytimeOSP(Method):
    name = "osp"
    summary = "prune once at step 1 to 0.8^tau, scored on the init with a sample of M_1"
    prunes = True

    def target_density(self, step: int, config: RunConfig) -> float:
        return 0.8**config.tau

    def before_step(self, ctx: StepContext) -> None:
        if ctx.step == 1:
            sample = ctx.random_sample(ctx.stream[0].train)
            ctx.prune(ctx.scores(sample), self.target_density(1, ctx.config), within_current=False)
