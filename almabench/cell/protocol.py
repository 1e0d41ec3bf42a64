"""The training protocol around the methods: the paper's, or the one the released APP code runs.

SPEC.md lists seven ways the released code departs from the paper. Departures 1-3 are about how APP prunes
and live in the `app-released` method. Departures 4-7 are about the harness every method runs in, so they
are a config key of their own, `protocol`, which any method can be run under:

  4. validation is a fixed tail of the training set read through the training augmentation, as is π_t;
  5. one SGD optimiser lives through the whole stream: momentum carries over, while the learning rate and
     its milestones restart at every step;
  6. SNIP scores in batches of 100 (train mode). Its scores are normalised to sum 1, which changes no
     ranking, and magnitude pruning reaches its density in 10 rounds, which without training in between
     keeps exactly the weights one round keeps: neither needs code;
  7. the gap is the running (augmented, train-mode) accuracy of an epoch's training batches minus that
     epoch's validation accuracy; almabench records it for the epoch whose checkpoint is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from almabench.registry import Registry


@dataclass(frozen=True)
class Protocol:
    layout: str  # the stream's layout (almabench.cell.stream.LAYOUTS)
    augment_eval: bool  # validation images and π_t pass through the training augmentation
    carry_optimiser: bool  # one SGD optimiser (and its momentum) for the whole stream
    gap: str  # "replay": eval-mode accuracy on the replay set's train part − validation accuracy, after the step
    #          "running": the kept epoch's running training-batch accuracy − its validation accuracy
    score_batch_size: int  # SNIP's batches over π_t (batch-norm statistics are per batch in train mode)


PROTOCOLS: Registry[Protocol] = Registry("protocol")
PROTOCOLS.register("paper")(Protocol(layout="shuffled", augment_eval=False, carry_optimiser=False, gap="replay",
                                     score_batch_size=256))
PROTOCOLS.register("released")(Protocol(layout="dataset-order", augment_eval=True, carry_optimiser=True,
                                        gap="running", score_batch_size=100))
