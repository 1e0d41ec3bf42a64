"""RunConfig: everything that decides a cell's numbers, frozen, typed and hashed into its file name.

Where things run (device, data folder) is not part of the config: it lives in RunOptions, and is recorded in
the result's provenance instead, so the same experiment has the same name on any machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from almabench.errors import AlmabenchError

# A method's declared settings (methods.base.Setting) where a cell sets them to other values than their defaults:
# (name, value) pairs sorted by name. Defaults are left out (specs.for_method), so a cell at its method's defaults
# has none and keeps the name it had before methods had settings.
MethodSettings = tuple[tuple[str, float | int], ...]


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)


def _to_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(value)
    return value


def _to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(value)
    return float(value)


def _to_ints(value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes, dict)):
        raise TypeError(value)
    return tuple(_to_int(x) for x in ([value] if isinstance(value, int) else value))


def _to_settings(value: Any) -> MethodSettings:
    """A method's settings as a sorted tuple of (name, number) pairs (frozen, hashable); a dict or pairs in."""
    pairs = value.items() if isinstance(value, dict) else value
    if isinstance(pairs, (str, bytes)):
        raise TypeError(value)
    out = []
    for name, number in pairs:
        if not isinstance(name, str) or isinstance(number, bool) or not isinstance(number, (int, float)):
            raise TypeError(value)
        out.append((name, number))
    if len({name for name, _ in out}) != len(out):
        raise ValueError(value)
    return tuple(sorted(out))


def _or_none(coerce: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else coerce(value)


_COERCE = {
    "str": _to_str,
    "str | None": _or_none(_to_str),
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "bool | None": _or_none(_to_bool),
    "int | None": _or_none(_to_int),
    "tuple[int, ...] | None": _or_none(_to_ints),
    "MethodSettings": _to_settings,
}
_KIND = {"str": "a string", "str | None": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
         "bool | None": "true or false", "int | None": "an integer", "tuple[int, ...] | None": "a list of integers",
         "MethodSettings": "a table of the method's settings (name = number)"}

# The paper's recipe for CIFAR (SPEC.md), against which `--dry-run` names what a cell changes.
PAPER_RECIPE: dict[str, Any] = {
    "epochs": 50, "batch_size": 64, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "milestones": (20, 40),
    "lr_gamma": 0.1, "crop_padding": 4, "flip": True, "tau": 4.5, "pruner": "snip", "scope": "global",
    "sample_fraction": 0.2, "replay": "full", "val_fraction": 0.1, "protocol": "paper", "stream_images": None,
}
MILESTONE_FRACTIONS = (0.4, 0.8)  # the paper drops the learning rate at epochs 20 and 40 of 50
# Keys whose default is unset (None, resolved per cell) but whose name leaves out the value every cell used
# before that default became per-cell: an app cell at scope global keeps the name it has had since scope existed.
NAMED_WITHOUT: dict[str, Any] = {"scope": "global"}


def default_milestones(epochs: int) -> tuple[int, ...]:
    """The paper's milestones scaled to `epochs`: 0.4·E and 0.8·E rounded half up, at least epoch 1, each once.

    10 epochs -> (4, 8); 50 -> (20, 40); 2 -> (1, 2); 1 -> (1,). A milestone equal to E changes nothing (the
    rate would drop after the last epoch) but keeps the rule one line.
    """
    return tuple(dict.fromkeys(max(1, math.floor(f * epochs + 0.5)) for f in MILESTONE_FRACTIONS))


@dataclass(frozen=True)
class RunConfig:
    """One cell of the grid. Defaults are the paper's CIFAR settings (SPEC.md)."""

    method: str = "app"
    dataset: str = "digits"
    arch: str = "convnet"
    megabatches: int = 8
    seed: int = 0
    # pruning
    pruner: str = "snip"
    tau: float = 4.5
    scope: str | None = None  # None: the method's own (methods.Method.default_scope); sparsity.SCOPES
    sample_fraction: float = 0.2  # |pi_t| = sample_fraction * |M_t|
    prune_linear: bool = False  # the released code prunes Conv2d weights only
    # the stream
    stream_images: int | None = None  # None: the whole training set; N: the first N of a class-balanced order
    replay: str = "full"
    val_fraction: float = 0.1
    # training of each step
    epochs: int = 50
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple[int, ...] | None = None  # None: 0.4 and 0.8 of the epochs (the paper's 20, 40 of 50)
    lr_gamma: float = 0.1
    crop_padding: int = -1  # -1: the dataset's own (4 px for CIFAR, 1 for digits)
    flip: bool | None = None  # None: the dataset's own (CIFAR flips, digits and user data do not)
    # the harness around the methods: the paper's, or the released code's departures 4-7 (almabench.cell.protocol)
    protocol: str = "paper"
    # the method's own settings that differ from its defaults (methods.base.Setting; `almabench list METHOD`)
    settings: MethodSettings = ()

    def __post_init__(self) -> None:
        # Coerce types so that 4 and 4.0, or [20, 40] and (20, 40), name the same cell. f.type is the
        # annotation's text (`from __future__ import annotations`), the key of _COERCE and _KIND.
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                value = _COERCE[str(f.type)](value)
            except (TypeError, ValueError):
                raise AlmabenchError(f"{f.name} must be {_KIND[str(f.type)]}, got {value!r}") from None
            object.__setattr__(self, f.name, value)
        if self.dataset:  # a path names its data once: ./data/x.npz and data/x.npz are one cell (names are kept)
            object.__setattr__(self, "dataset", os.path.normpath(self.dataset))

    def non_default(self) -> dict[str, Any]:
        """The fields that differ from their defaults: RunConfig.from_dict(c.non_default()) == c."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = _plain(value, f.name)
        return out

    def named(self) -> dict[str, Any]:
        """What names the cell: the non-default fields, less those at their NAMED_WITHOUT value. Adding a field
        with a no-op default keeps old names, and so does a default that became per-method (scope); such a field
        left unset (None: not resolved yet) is named as unset, never like a cell at NAMED_WITHOUT's value."""
        out = {k: v for k, v in self.non_default().items() if k not in NAMED_WITHOUT or v != NAMED_WITHOUT[k]}
        return {**out, **{k: None for k in NAMED_WITHOUT if getattr(self, k) is None}}

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name), f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AlmabenchError(f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
        return cls(**data)

    def hash(self) -> str:
        """Stable name of the cell: sha1 of the canonical JSON of its non-default fields (named())."""
        canonical = json.dumps(self.named(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(canonical.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    @property
    def resolved(self) -> bool:
        """Whether every setting that defaults to the dataset's, the method's or the epochs' has its value."""
        return (self.flip is not None and self.crop_padding >= 0 and self.milestones is not None
                and self.scope is not None)

    @property
    def run_flip(self) -> bool:
        """flip as a run uses it; only a resolved config (resolve()) has it."""
        if self.flip is None:
            raise AlmabenchError("flip is unset: a run uses a resolved config (RunConfig.resolve)")
        return self.flip

    @property
    def run_scope(self) -> str:
        """scope as a run uses it; only a resolved config (resolve()) has it."""
        if self.scope is None:
            raise AlmabenchError("scope is unset: a run uses a resolved config (RunConfig.resolve)")
        return self.scope

    def resolve(self, flip: bool, crop_padding: int, *, scope: str) -> RunConfig:
        """The config with the values a run uses: the dataset's flip and crop padding, the method's scope
        (`scope`: Method.default_scope) and milestones scaled to the epochs, wherever the user left them unset.
        Cells are named by their resolved config, so two spellings of one computation share a file and a recipe
        change makes a new one."""
        return self.replace(
            flip=flip if self.flip is None else self.flip,
            crop_padding=crop_padding if self.crop_padding < 0 else self.crop_padding,
            milestones=default_milestones(self.epochs) if self.milestones is None else self.milestones,
            scope=scope if self.scope is None else self.scope,
        )

    def differences_from_paper(self) -> dict[str, Any]:
        """The settings where this cell departs from the paper's CIFAR recipe (shown by --dry-run)."""
        return {k: getattr(self, k) for k, v in PAPER_RECIPE.items() if getattr(self, k) != v}


def _plain(value: Any, name: str) -> Any:
    """A field's value as JSON holds it: settings as an object, other tuples as lists."""
    if name == "settings":
        return dict(value)
    return list(value) if isinstance(value, tuple) else value


def range_problem(config: RunConfig) -> str | None:
    """Why config's values lie outside what a run accepts (a number out of its range, or not finite), or None.

    The checks that need nothing but the config: `run` applies them with the registries' (specs.check_config),
    and a result file's config must pass them too (validate.validate_result), whoever wrote it.
    """
    values = {**config.to_dict(), **dict(config.settings)}
    for name, value in values.items():  # inf passes every range check below, and JSON cannot hold it
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name} must be a finite number, got {value}"
    milestones = config.milestones or ()
    checks = [
        (config.tau > 0, f"tau must be > 0, got {config.tau}"),
        (config.tau <= 0 or 0.8 ** config.tau > 0,
         f"tau = {config.tau} keeps 0.8^tau = 0 of the weights (the kept fraction must be in (0, 1]); use a "
         f"smaller tau"),
        (config.megabatches >= 1, f"megabatches must be at least 1, got {config.megabatches}"),
        (config.epochs >= 1, f"epochs must be at least 1, got {config.epochs}"),
        (all(1 <= m <= config.epochs for m in milestones),
         f"milestones must be epochs in 1..{config.epochs} (the learning rate drops after them), got "
         f"{list(milestones)}"),
        (config.batch_size >= 2, f"batch_size must be at least 2, got {config.batch_size}"),
        (config.lr > 0, f"lr must be > 0, got {config.lr}"),
        (config.lr_gamma > 0, f"lr_gamma must be > 0 (the factor the learning rate is multiplied by at each "
                              f"milestone), got {config.lr_gamma}"),
        (config.momentum >= 0, f"momentum must be >= 0, got {config.momentum}"),
        (config.weight_decay >= 0, f"weight_decay must be >= 0, got {config.weight_decay}"),
        (config.crop_padding >= -1, f"crop_padding must be a number of pixels >= 0 (or -1: the dataset's), got "
                                    f"{config.crop_padding}"),
        (0 <= config.seed < 2**63, f"seed must be an integer in 0..2^63-1 (it seeds 64-bit generators), got "
                                   f"{config.seed}"),
        (0 < config.sample_fraction <= 1, f"sample_fraction must be in (0, 1], got {config.sample_fraction}"),
        (0 < config.val_fraction < 1, f"val_fraction must be in (0, 1), got {config.val_fraction}"),
    ]
    return next((message for ok, message in checks if not ok), None)


@dataclass(frozen=True)
class RunOptions:
    """Where and how a cell runs; never changes what it computes (beyond floating-point rounding)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data_root: str = ""  # empty: the user cache folder (see almabench.data.default_data_root)
    download: bool = False
    eval_batch_size: int = 0  # 0: chosen per model and machine (almabench.cell.inference.eval_batch_size)
    threads: int = 0  # torch intra-op threads; 0: leave torch's default
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU (identical to the plain path)
    compile: bool = False  # torch.compile the training steps
    # --plugin files and modules (almabench.extend.plugins), imported by every process that runs a cell; what they
    # compute is recorded by their code's fingerprint (the result's environment), not by where they were found
    plugins: tuple[str, ...] = ()
