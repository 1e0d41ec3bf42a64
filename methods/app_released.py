"""APP as the released code (landskape-ai/Progressive-Pruning) runs it: explains its published numbers.

It departs from the paper in three ways that change results (SPEC.md, "The released code differs"):
1. from step 2 on, scores are computed on freshly initialised conv weights (its checkpoint loads with
   strict=False while the trained weights sit under weight_orig), with the trained BatchNorm and classifier;
2. the new mask is chosen over all weights and multiplied into the old one, so the density compounds far
   below the schedule (0.80, 0.58, 0.39, ... for T = 8);
3. π_t is the first 0.2·|M| examples of the step's cumulative training list, i.e. drawn from M_1 every step.
The smaller departures 4-7 (a fixed validation tail read through augmentation, one optimiser whose momentum
lives through the stream, SNIP in batches of 100, the gap from the running augmented train accuracy) are
about the harness every method runs in, not about APP: run this method with `protocol = "released"`
(almabench.protocol) to have them too, as the released-vs-paper spec does.
"""

from almabench.config import RunConfig
from almabench.sparsity import app_density, top_k_masks
from .base import Method, StepContext, register


@register
class APPReleased(Method):
    name = "app-released"
    summary = "APP as the released code runs it (fresh-init scores, compounding masks, pi from M_1)"
    prunes = True

    def target_density(self, step: int, config: RunConfig) -> float:
        return app_density(step, config.megabatches, config.tau)

    def before_step(self, ctx: StepContext) -> None:
        sample = ctx.step_data.train[: ctx.sample_size]
        scoring_model = ctx.model
        if ctx.step > 1:
            scoring_model = ctx.fresh_model(ctx.step)
            trained = ctx.model.state_dict()
            keep = {k: v for k, v in trained.items() if k not in ctx.masks.params}
            scoring_model.load_state_dict(keep, strict=False)
        scores = ctx.scores(sample, scoring_model)
        new = top_k_masks(scores, self.target_density(ctx.step, ctx.config), ctx.config.scope)
        ctx.masks.set({name: mask & ctx.masks.masks[name] for name, mask in new.items()})
