"""One masking mechanism for every method: prunable weights by name, criteria that score them, top-k masks.

Prunable weights are every Conv2d weight (stem and 1×1 shortcuts included) as in the released APP code, and
optionally Linear weights; BatchNorm parameters and biases are never pruned. Masks are keyed by parameter name
so they can be saved and checked, and the density reported is counted from the weights themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from almabench.errors import AlmabenchError
from almabench.registry import Registry, callable_entry


def prunable_parameters(model: nn.Module, include_linear: bool = False) -> dict[str, nn.Parameter]:
    """name -> weight of every Conv2d (and, if asked, Linear) layer, in module order."""
    kinds = (nn.Conv2d, nn.Linear) if include_linear else (nn.Conv2d,)
    # torch's stubs declare Conv2d.weight and Linear.weight as Tensor; they are the layers' Parameters
    return {f"{name}.weight": cast(nn.Parameter, m.weight) for name, m in model.named_modules() if isinstance(m, kinds)}


def app_density(step: int, megabatches: int, tau: float) -> float:
    """APP's kept fraction at 1-based step t: 0.8^δ_t with δ = linspace(1, τ, T)."""
    deltas = torch.linspace(1.0, tau, megabatches, dtype=torch.float64)
    return float(0.8 ** deltas[step - 1])


class Masks:
    """Owns the 0/1 masks of a model's prunable weights and keeps masked weights at exactly zero."""

    def __init__(self, params: dict[str, nn.Parameter]) -> None:
        self.params = params
        self.masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in params.items()}
        self._float_masks: list[Tensor] | None = None

    @property
    def total(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def set(self, masks: dict[str, Tensor]) -> None:
        """Replace the masks (bool tensors, same names and shapes) and zero the newly masked weights."""
        if masks.keys() != self.masks.keys():
            raise ValueError("masks must name exactly the prunable parameters")
        self.masks = {name: m.to(dtype=torch.bool, device=self.params[name].device) for name, m in masks.items()}
        self._float_masks = None
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every masked weight in one foreach multiply; called after every optimiser step."""
        if self._float_masks is None:
            self._float_masks = [m.to(self.params[n].dtype) for n, m in self.masks.items()]
        torch._foreach_mul_(list(self.params.values()), self._float_masks)

    def kept(self) -> int:
        """Number of weights the masks keep (the density the masks say, as a count)."""
        return sum(int(m.sum()) for m in self.masks.values())

    @torch.no_grad()
    def nonzero(self) -> int:
        """Number of prunable weights that are non-zero, counted from the weights."""
        return sum(int(torch.count_nonzero(p)) for p in self.params.values())

    def density(self) -> float:
        """Fraction of prunable weights that are non-zero, measured from the weights (1.0 if none)."""
        return 1.0 if self.total == 0 else self.nonzero() / self.total

    @torch.no_grad()
    def layer_density(self) -> dict[str, float]:
        return {name: int(torch.count_nonzero(p)) / p.numel() for name, p in self.params.items()}


def erk_densities(shapes: dict[str, tuple[int, ...]], density: float, dense: Iterable[str] = ()) -> dict[str, float]:
    """Erdős–Rényi-kernel layer densities (Evci et al. 2020, RigL's get_sparsities_erdos_renyi).

    Layer l keeps d_l = ε·(Σ dims)/(Π dims) of its n_l weights, ε chosen so that Σ_l d_l n_l = density·Σ_l n_l:
    small layers and few-channel convolutions stay denser. A layer whose d_l would exceed 1 is made dense and ε is
    solved again over the others (largest ratio first, one at a time, as RigL does). The layers named in `dense`
    are dense from the start (RigL's dense first layer): the others share what is left of the budget, so the
    overall density is still exactly `density`.
    """
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    ratio = {name: sum(shape) / sizes[name] for name, shape in shapes.items()}
    full = set(dense)
    budget, forced = density * sum(sizes.values()), sum(sizes[n] for n in full)
    if forced > budget:
        raise AlmabenchError(f"density {density:.4g} keeps {budget:,.0f} of {sum(sizes.values()):,} weights, fewer "
                             f"than the {forced:,} of the layer(s) kept dense ({', '.join(sorted(full))}); use "
                             f"scope erk, or a smaller tau")
    while len(full) < len(shapes):
        sparse = [name for name in shapes if name not in full]
        eps = (budget - sum(sizes[n] for n in full)) / sum(ratio[n] * sizes[n] for n in sparse)
        over = [name for name in sparse if eps * ratio[name] > 1.0]
        if not over:
            return {name: 1.0 if name in full else eps * ratio[name] for name in shapes}
        full.add(max(over, key=ratio.__getitem__))
    return {name: 1.0 for name in shapes}


# How a density is shared among layers: a scope maps the layers' shapes (in module order) and the overall density
# to groups (layer names, kept fraction of the group); top_k_masks keeps the top of each group on its own.
Groups = list[tuple[list[str], float]]
Scope = Callable[[dict[str, tuple[int, ...]], float], Groups]
SCOPES: Registry[Scope] = Registry("pruning scope")


@SCOPES.register("global")
def global_scope(shapes: dict[str, tuple[int, ...]], density: float) -> Groups:
    """One top-k over every layer at once."""
    return [(list(shapes), density)]


@SCOPES.register("layer")
def layer_scope(shapes: dict[str, tuple[int, ...]], density: float) -> Groups:
    """The same density in every layer."""
    return [([name], density) for name in shapes]


@SCOPES.register("erk")
def erk_scope(shapes: dict[str, tuple[int, ...]], density: float) -> Groups:
    """RigL's Erdős–Rényi-kernel densities, layer by layer (erk_densities)."""
    layer = erk_densities(shapes, density)
    return [([name], layer[name]) for name in shapes]


@SCOPES.register("erk-dense-first")
def erk_dense_first_scope(shapes: dict[str, tuple[int, ...]], density: float) -> Groups:
    """ERK with the first prunable layer (the stem: prunable weights are in module order) kept dense, RigL's CIFAR
    setting; the other layers share the rest of the budget."""
    layer = erk_densities(shapes, density, dense=list(shapes)[:1])
    return [([name], layer[name]) for name in shapes]


def top_k_masks(
    scores: dict[str, Tensor],
    density: float,
    scope: str = "global",
    within: dict[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Keep the highest-scoring weights: round(density·n) over all layers at once (global), round(density·n_l)
    in each layer (layer), or round(d_l·n_l) in each layer with d_l the ERK densities (erk; erk-dense-first: the
    first layer dense, ERK over the others). See SCOPES.

    `within` restricts the choice to the weights these masks still keep (so the new mask ⊆ the old one); the
    density is always relative to all prunable weights.
    """
    if not 0.0 < density <= 1.0:
        raise AlmabenchError(f"density must be in (0, 1], got {density}")
    names = list(scores)
    flat = {n: scores[n].detach().flatten().double() for n in names}
    if within is not None:
        flat = {n: torch.where(within[n].flatten(), s, torch.full_like(s, -torch.inf)) for n, s in flat.items()}
    groups = SCOPES.get(scope)({n: tuple(scores[n].shape) for n in names}, density)

    masks = {}
    for group, kept_fraction in groups:
        joined = torch.cat([flat[n] for n in group])
        keep = round(kept_fraction * joined.numel())
        if within is not None and keep > int(torch.isfinite(joined).sum()):
            raise AlmabenchError(f"cannot keep {keep} weights: only {int(torch.isfinite(joined).sum())} survive")
        chosen = torch.zeros_like(joined, dtype=torch.bool)
        chosen[torch.topk(joined, keep, sorted=False).indices] = True
        for n, part in zip(group, chosen.split([flat[n].numel() for n in group])):
            masks[n] = part.view_as(scores[n])
    return masks


def drop_and_grow(masks: dict[str, Tensor], drop_scores: dict[str, Tensor], grow_scores: dict[str, Tensor],
                  fraction: float) -> dict[str, Tensor]:
    """RigL's and SET's mask update, layer by layer, so that every layer keeps exactly its count.

    In a layer with a active weights, the floor(fraction·a) active ones of lowest drop score go; as many of the
    highest grow score come among all the others (the inactive and the just dropped, as in RigL's code: a dropped
    weight that is grown again simply stays).
    """
    new = {}
    for name, mask in masks.items():
        flat = mask.flatten()
        active = int(flat.sum())
        n = int(fraction * active)
        if n == 0:
            new[name] = mask.clone()
            continue
        drop = torch.where(flat, drop_scores[name].flatten().double(), torch.full(flat.shape, -torch.inf,
                           dtype=torch.float64, device=flat.device))
        kept = torch.zeros_like(flat)
        kept[torch.topk(drop, active - n, sorted=False).indices] = True
        grow = torch.where(kept, torch.full(flat.shape, -torch.inf, dtype=torch.float64, device=flat.device),
                           grow_scores[name].flatten().double())
        kept[torch.topk(grow, n, sorted=False).indices] = True
        new[name] = kept.view_as(mask)
    return new


# A criterion scores every prunable weight; the lowest scores are pruned first. Its arguments: the model,
# its prunable weights, the sample's images and labels, a generator, and the batch size for passes over the
# sample (criteria that make none ignore it).
Criterion = Callable[[nn.Module, dict[str, nn.Parameter], Tensor, Tensor, torch.Generator, int], dict[str, Tensor]]
PRUNERS: Registry[Criterion] = Registry("pruner", "almabench.pruners", callable_entry)


@PRUNERS.register("magnitude")
def magnitude_scores(model, params, images, labels, generator, batch_size: int = 256) -> dict[str, Tensor]:
    """|w|."""
    return {name: p.detach().abs() for name, p in params.items()}


@PRUNERS.register("random")
def random_scores(model, params, images, labels, generator, batch_size: int = 256) -> dict[str, Tensor]:
    """Uniform noise from the run's generator: a seeded random mask."""
    return {
        name: torch.rand(p.shape, generator=generator, device=generator.device).to(p.device)
        for name, p in params.items()
    }


@PRUNERS.register("snip")
def snip_scores(model, params, images, labels, generator, batch_size: int = 256) -> dict[str, Tensor]:
    """SNIP: |∂L/∂m| = |g ⊙ w|, with g the gradient of the mean cross-entropy over the whole sample π_t.

    The model runs in train mode (batch-norm batch statistics, as in the released code); callers pass a copy
    so that running statistics and gradients of the real model are left untouched.
    """
    grads = loss_gradients(model, params, images, labels, batch_size)
    return {name: (grads[name] * p.detach()).abs() for name, p in params.items()}


def loss_gradients(model: nn.Module, params: dict[str, nn.Parameter], images: Tensor, labels: Tensor,
                   batch_size: int = 256) -> dict[str, Tensor]:
    """∂L/∂w of the mean cross-entropy over the whole sample, for the given weights, in train mode (batch-norm
    batch statistics), accumulated over batches; the model's gradients are left cleared."""
    model.train()
    for p in model.parameters():
        p.grad = None
    n = len(labels)
    for start in range(0, n, batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        loss = F.cross_entropy(model(x), y, reduction="sum") / n
        loss.backward()
    grads = {name: _grad_of(name, p).detach().clone() for name, p in params.items()}
    for p in model.parameters():
        p.grad = None
    return grads


def _grad_of(name: str, p: Tensor) -> Tensor:
    if p.grad is None:
        raise AlmabenchError(f"{name} got no gradient: the model's forward pass does not use it")
    return p.grad


GRASP_TEMPERATURE = 200.0  # logits are divided by it before the loss (GraSP's T, as in the released library)


@PRUNERS.register("grasp")
def grasp_scores(model, params, images, labels, generator, batch_size: int = 256) -> dict[str, Tensor]:
    """GraSP: θ ⊙ Hg, with g the gradient of the (temperature-scaled) mean cross-entropy over π_t and H its
    Hessian; the lowest scores are pruned, i.e. the weights whose removal reduces the gradient flow least.

    The released code's library draws 10 images per class for each of its two passes; here both passes run
    over π_t (in batches, train mode like SNIP), so the criterion sees the same sample as every other one.
    """
    model.train()
    weights = list(params.values())
    n = len(labels)

    def batch_loss(start: int) -> Tensor:
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        return F.cross_entropy(model(x) / GRASP_TEMPERATURE, y, reduction="sum") / n

    starts = range(0, n, batch_size)
    g = [torch.zeros_like(w) for w in weights]
    for start in starts:  # g = ∇L, no graph kept
        for total, part in zip(g, torch.autograd.grad(batch_loss(start), weights)):
            total += part
    hg = [torch.zeros_like(w) for w in weights]
    for start in starts:  # Hg = ∇(g · ∇L), batch by batch
        grads = torch.autograd.grad(batch_loss(start), weights, create_graph=True)
        dot = sum((gi * part).sum() for gi, part in zip(g, grads))
        assert isinstance(dot, Tensor)  # sum's start 0 is left only for no weights at all
        for total, part in zip(hg, torch.autograd.grad(dot, weights)):
            total += part
    return {name: (h * w.detach()) for name, h, w in zip(params, hg, weights)}


@PRUNERS.register("synflow")
def synflow_scores(model, params, images, labels, generator, batch_size: int = 256) -> dict[str, Tensor]:
    """SynFlow: |θ ⊙ ∂R/∂θ| with R the sum of the outputs of the network made linear (every parameter and
    buffer replaced by its absolute value, batch norm in eval mode, in float64) on an all-ones image. Data-free:
    only the sample's image shape is used. One round, as the released library's scorer; the SynFlow paper iterates
    (100 rounds of score-and-prune), which a method can do by calling ctx.scores and ctx.prune repeatedly.
    Changes the model it is given (callers pass a copy).
    """
    model.eval()  # in train mode batch norm would normalise the constant input to zero
    model.double()  # R is a product over every layer: float64 keeps deep networks from overflowing
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    for p in model.parameters():
        p.grad = None
    ones = torch.ones(1, *images.shape[1:], device=images.device, dtype=torch.float64)
    model(ones).sum().backward()
    scores = {name: (p.grad * p.detach()).abs() for name, p in params.items()}
    for p in model.parameters():
        p.grad = None
    return scores
