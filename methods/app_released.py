"""APP as the released code (landskape-ai/Progressive-Pruning) runs it: explains its published numbers.

It departs from the paper in three ways that change results (SPEC.md, "The released code differs"):
1. its scorer (generate_mask.py) rebuilds the network with the library's masked Conv2d, whose forward uses
   W = weight_mask ⊙ weight, and loads the previous step's checkpoint with strict=False. The trained conv
   weights sit under `weight_orig` there and do not load, so they stay as the masked Conv2d's own fresh
   initialisation (nn.Conv2d's default); the trained batch norm and classifier load, and so does `weight_mask`:
   from step 2 on the scoring forward runs through the previous (compounded) mask on fresh weights. SNIP scores
   the mask, |∂L/∂m| = |∂L/∂W ⊙ w_fresh|, which is non-zero for already-pruned weights too; magnitude scores
   |w_fresh| and random draws noise, both over all weights. At step 1 the random init loads whole: it is scored
   as is, with the dense mask;
2. the new mask is chosen over all weights and multiplied into the old one, so the density compounds far
   below the schedule (0.80, 0.58, 0.39, ... for T = 8);
3. π_t is the first 0.2·|M| examples of the step's cumulative training list, i.e. drawn from M_1 every step.
The smaller departures 4-7 (a fixed validation tail read through augmentation, one optimiser whose momentum
lives through the stream, SNIP in batches of 100, the gap from the running augmented train accuracy) are
about the harness every method runs in, not about APP: run this method with `protocol = "released"`
(almabench.cell.protocol) to have them too, as the released-vs-paper spec does. GraSP and SynFlow, which the
released loop does not run this way, score the masked fresh network with their usual criterion.
"""

import copy
import math

import torch
import torch.nn as nn
from torch import Tensor

from almabench.cell.config import RunConfig
from almabench.cell.models import init_seed
from almabench.cell.sparsity import app_density, loss_gradients, top_k_masks

from .base import Method, StepContext, register


@register
class APPReleased(Method):
    name = "app-released"
    summary = ("APP as the released code runs it (fresh-init scores through the old mask, compounding masks, "
               "pi from M_1)")
    prunes = True
    departs = {"density": "departure 2: each new mask is multiplied into the old one, so the density compounds "
                          "below the schedule it prunes to"}

    def target_density(self, step: int, config: RunConfig) -> float:
        return app_density(step, config.megabatches, config.tau)

    def before_step(self, ctx: StepContext) -> None:
        sample = ctx.step_data.train[: ctx.sample_size]
        scores = ctx.scores(sample) if ctx.step == 1 else released_scores(ctx, sample)
        new = top_k_masks(scores, self.target_density(ctx.step, ctx.config), ctx.config.run_scope)
        ctx.masks.set({name: mask & ctx.masks.masks[name] for name, mask in new.items()})


def released_scores(ctx: StepContext, sample: Tensor) -> dict[str, Tensor]:
    """The released scorer from step 2 on: trained network, fresh conv weights, forward through the old mask."""
    scorer = copy.deepcopy(ctx.model)
    params = dict(scorer.named_parameters())
    params = {name: params[name] for name in ctx.masks.params}
    fresh = fresh_conv_weights(scorer, params, seed=init_seed(ctx.config.seed, ctx.step))
    if ctx.config.pruner == "magnitude":
        ctx.sample_indices = sample  # drawn as for every criterion, though magnitude reads no data
        return {name: w.abs() for name, w in fresh.items()}
    with torch.no_grad():
        for name, w in fresh.items():  # W = weight_mask ⊙ weight, the masked Conv2d's forward
            params[name].copy_(ctx.masks.masks[name] * w)
    if ctx.config.pruner != "snip":
        return ctx.scores(sample, scorer)
    images, labels = ctx.sample_batch(sample)
    grads = loss_gradients(scorer, params, images, labels, ctx.score_batch_size)  # ∂L/∂W
    return {name: (grads[name] * fresh.get(name, params[name].detach())).abs() for name in params}


def fresh_conv_weights(model: nn.Module, params: dict[str, nn.Parameter], seed: int) -> dict[str, Tensor]:
    """A new draw of every prunable conv weight from nn.Conv2d's own initialisation (kaiming-uniform, a = √5),
    as the released library's masked Conv2d layers get when they replace the network's convolutions; prunable
    Linear weights (prune_linear) keep their trained values, as the released library never replaces them."""
    generator = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    fresh = {}
    for name, weight in params.items():
        if isinstance(modules[name.removesuffix(".weight")], nn.Conv2d):
            draw = torch.empty(weight.shape, dtype=weight.dtype)
            nn.init.kaiming_uniform_(draw, a=math.sqrt(5), generator=generator)
            fresh[name] = draw.to(weight.device)
    return fresh
