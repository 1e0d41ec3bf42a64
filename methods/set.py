"""SET, sparse evolutionary training (Mocanu et al. 2018): RigL's schedule, budget and drop by |w| (methods/rigl.py),
but the weights grown are drawn at random (uniform scores from the run's seeded method generator, whose state
the cell's checkpoint carries: the regrowth is reproducible, across a resume too). Grown weights start at zero,
as in RigL's SET baseline."""

import torch
from torch import Tensor

from almabench.cell.train import CellState

from .base import register
from .rigl import RigL


@register
class SET(RigL):
    name = "set"
    summary = "SET: as rigl, but the weights grown are drawn at random (seeded)"

    def grow_scores(self, cell: CellState) -> dict[str, Tensor]:
        return {n: torch.rand(p.shape, generator=cell.method_generator).to(p.device)
                for n, p in cell.masks.params.items()}
