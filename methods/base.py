"""What a method is: a small class with named hooks: one before each megabatch's training and, for methods that
change the masks while training (gradual pruning, RigL, SET) or keep a rewind point, one after each SGD step.

Methods never write the training loop, the optimiser's update or files: they read the step's context and, if
they prune, hand new masks to `ctx.masks`. What they keep from one megabatch to the next goes through
`state_dict` into the cell's checkpoint. Adding a method is one module in methods/ plus its registry line, or,
outside almabench, a package of its own or a --plugin file (almabench.extend.plugins; `almabench new-method` writes
one).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn as nn
from torch import Tensor

from almabench.cell.config import RunConfig
from almabench.cell.models import init_seed
from almabench.cell.protocol import PROTOCOLS
from almabench.cell.sparsity import PRUNERS, Masks, top_k_masks
from almabench.cell.stream import Megabatch
from almabench.cell.train import CellState, DeviceData, SGDStep, augment
from almabench.errors import AlmabenchError
from almabench.registry import Registry


@dataclass(eq=False)
class StepContext:
    """Everything a method may look at before step t (1-based) trains."""

    step: int
    config: RunConfig
    model: nn.Module
    masks: Masks
    data: DeviceData
    stream: list[Megabatch]
    step_data: Megabatch  # the indices step t trains and validates on (after replay)
    generator: torch.Generator  # CPU generator for sampling and random scores, seeded per run
    crop_padding: int = 0  # the run's augmentation, for protocols that read π_t through it
    sample_indices: Tensor | None = None  # π_t, recorded by `scores`
    # builds the cell's architecture on the CPU, its init drawn from torch's global RNG as the cell's own network
    # was (seeded with init_seed(seed, 0)): for methods that re-initialise (scratch, shrink-perturb); see fresh_init
    new_model: Callable[[], nn.Module] | None = None

    def fresh_init(self, offset: int) -> tuple[int, dict[str, Tensor]]:
        """(seed, state dict) of the cell's network initialised afresh from init_seed(config.seed, offset); the
        global random state is left as it was (forked), so nothing else the cell draws moves."""
        if self.new_model is None:
            raise RuntimeError("this step context has no new_model: the harness passes one (almabench.cell.run)")
        seed = init_seed(self.config.seed, offset)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = self.new_model()
        return seed, fresh.state_dict()

    @property
    def sample_size(self) -> int:
        """|π_t| = sample_fraction · |M_t| (1,250 for CIFAR-10 at T = 8)."""
        return max(1, round(self.config.sample_fraction * self.stream[self.step - 1].size))

    def random_sample(self, pool: Tensor) -> Tensor:
        """|π_t| indices drawn without replacement from pool."""
        size = min(self.sample_size, len(pool))
        return pool[torch.randperm(len(pool), generator=self.generator)[:size]]

    def scores(self, indices: Tensor, model: nn.Module | None = None) -> dict[str, Tensor]:
        """The configured criterion's scores of the prunable weights, computed on a copy of `model`.

        Scores are keyed like ctx.masks (the names of the run's prunable weights).
        """
        scoring = copy.deepcopy(model if model is not None else self.model)
        params = dict(scoring.named_parameters())
        params = {name: params[name] for name in self.masks.params}
        images, labels = self.sample_batch(indices)
        criterion = PRUNERS.get(self.config.pruner)
        return criterion(scoring, params, images, labels, self.generator, self.score_batch_size)

    @property
    def score_batch_size(self) -> int:
        """Batches of passes over π_t (per-batch batch-norm statistics: the released protocol uses 100)."""
        return PROTOCOLS.get(self.config.protocol).score_batch_size

    def sample_batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """π_t as the criterion sees it: normalised images (augmented under the released protocol) and labels;
        records the indices as the step's sample."""
        self.sample_indices = indices
        idx = indices.to(self.data.x_train.device)
        images, labels = self.data.x_train[idx], self.data.y_train[idx]
        if PROTOCOLS.get(self.config.protocol).augment_eval:  # the released code reads π_t augmented
            images = augment(images.cpu(), self.crop_padding, self.config.run_flip, self.generator).to(images.device)
        return self.data.normalise(images), labels

    def prune(self, scores: dict[str, Tensor], density: float, within_current: bool) -> None:
        """Set the masks to the top round(density·n) scores; within_current keeps new mask ⊆ old mask."""
        within = self.masks.masks if within_current else None
        self.masks.set(top_k_masks(scores, density, self.config.run_scope, within=within))


HOOKS = ("before_step", "after_sgd_step")


@dataclass(frozen=True)
class Setting:
    """A number a method reads that a grid may vary: `--set NAME=VALUE`, a spec's [config] or [grid] (an axis).

    The value is an attribute of the method instance (self.NAME), its default also of the class. A cell names a
    setting only where it differs from the default, so a method's files keep their names when it gains one.
    """

    name: str
    default: float | int  # an int default makes an integer setting (2.0 is accepted as 2, 2.5 is refused)
    help: str  # one line: what it is, its unit, and where the default comes from
    low: float | None = None  # the smallest value allowed (inclusive); None: no bound
    high: float | None = None  # the largest value allowed (inclusive)

    def coerce(self, value: Any) -> float | int:
        """The value in the setting's type, or AlmabenchError naming the setting, its type and range."""
        integer = isinstance(self.default, int)
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if ok and integer and float(value).is_integer():
            value = int(value)
        elif ok and not integer:
            value = float(value)
        elif ok:
            ok = False
        if not ok or (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise AlmabenchError(f"{self.name} must be {self.describe_range()}, got {value!r}")
        return value

    def describe_range(self) -> str:
        kind = "an integer" if isinstance(self.default, int) else "a number"
        bounds = [f">= {self.low:g}" if self.low is not None else "", f"<= {self.high:g}" if self.high is not None
                  else ""]
        return " ".join([kind, " and ".join(b for b in bounds if b)]).strip()


class Method:
    """Base class: a dense learner that changes nothing before a step and has no hook in training."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    prunes: ClassVar[bool] = False  # False: the pruning keys of its config change nothing (see specs.GridSpec.configs)
    shrinks: ClassVar[bool] = False  # its masks only shrink (new ⊆ old), so its schedule must not rise (τ ≥ 1)
    ignores: ClassVar[tuple[str, ...]] = ()  # pruning keys a pruning method never reads (grid sets them default)
    default_scope: ClassVar[str] = "global"  # the scope (sparsity.SCOPES) of a cell whose config leaves it unset
    # clauses of the contract (almabench.extend.contract: "density", "pairing") the method departs from on purpose, and
    # why: the check reports the departure instead of failing it
    departs: ClassVar[dict[str, str]] = {}
    settings: ClassVar[tuple[Setting, ...]] = ()  # numbers a grid may vary (Setting); self.NAME holds each

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A misspelt hook would never run: names that look like hooks must be hooks. A setting must not take a
        config key's name (--set would not know which is meant), and its default is the class's value."""
        super().__init_subclass__(**kwargs)
        for attr in vars(cls):
            if attr.startswith(("before_", "after_")) and attr not in HOOKS:
                raise TypeError(f"{cls.__name__}.{attr} is not a hook; the hooks are {', '.join(HOOKS)}")
        keys = {f.name for f in fields(RunConfig)}
        for setting in vars(cls).get("settings", ()):
            if setting.name in keys or not setting.name.isidentifier():
                raise TypeError(f"{cls.__name__}: setting {setting.name!r} must be an identifier other than the "
                                f"config keys ({', '.join(sorted(keys))})")
            setattr(cls, setting.name, setting.coerce(setting.default))

    def configure(self, values: dict[str, float | int]) -> None:
        """Set the declared settings from a cell's config (config.settings: those not at their defaults)."""
        declared = {s.name: s for s in self.settings}
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise AlmabenchError(f"{self.name} has no setting {', '.join(unknown)}; its settings: "
                                 f"{', '.join(declared) or 'none'}")
        for name, setting in declared.items():
            setattr(self, name, setting.coerce(values.get(name, setting.default)))

    def setting_values(self) -> dict[str, float | int]:
        """Every declared setting with the value this instance runs with (recorded in the result)."""
        return {s.name: getattr(self, s.name) for s in self.settings}

    def before_step(self, ctx: StepContext) -> None:
        """Runs before the training of step ctx.step; may prune through ctx.prune."""

    def after_sgd_step(self, cell: CellState, sgd: SGDStep) -> None:
        """Runs after every SGD step (optimiser step, masks applied, gradients of the minibatch still in
        p.grad) of methods that override it; may change cell.masks and the optimiser's state."""

    @property
    def acts_in_training(self) -> bool:
        """Whether after_sgd_step is overridden: the training loop calls nothing for methods that do not."""
        return type(self).after_sgd_step is not Method.after_sgd_step

    def settled(self, iteration: int, total: int) -> bool:
        """Whether the masks are final for this megabatch after `iteration` of its `total` SGD steps: only
        epochs that end settled may become the megabatch's kept (best-validation) checkpoint. The last epoch
        competes whatever this says (train_step), so a megabatch too short for any settled epoch keeps its last."""
        return True

    def target_density(self, step: int, config: RunConfig) -> float:
        """The kept fraction this method aims for after pruning at step t (for the record)."""
        return 1.0

    def step_record(self) -> dict[str, Any]:
        """Extra keys (JSON types) for the record of the megabatch just trained: e.g. a schedule followed."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What the method carries from one megabatch to the next, for the cell's checkpoint: tensors, dicts,
        lists and numbers only (it loads with torch.load(weights_only=True)). Resumes happen at megabatch
        boundaries, so state that lives only inside a megabatch's training needs no saving."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict returned."""


def build_method(config: RunConfig) -> Method:
    """A new instance of the cell's method with the cell's settings."""
    method = METHODS.get(config.method)()
    method.configure(dict(config.settings))
    return method


def _is_method(entry: object) -> str | None:
    """An entry point's check: it must name a Method subclass."""
    return None if isinstance(entry, type) and issubclass(entry, Method) else "a subclass of almabench.methods.Method"


METHODS: Registry[type[Method]] = Registry("method", "almabench.methods", _is_method)


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add the method to the registry under its `name`."""
    return METHODS.register(cls.name)(cls)
