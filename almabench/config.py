"""RunConfig: everything that decides a cell's numbers, frozen, typed and hashed into its file name.

Where things run (device, data folder) is not part of the config: it lives in RunOptions, and is recorded in
the result's provenance instead, so the same experiment has the same name on any machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

from almabench.errors import AlmabenchError

SCOPES = ("global", "layer", "erk")  # how a density is shared among layers (sparsity.top_k_masks)


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


_COERCE = {
    "str": _to_str,
    "int": _to_int,
    "float": float,
    "bool": _to_bool,
    "tuple[int, ...]": lambda v: tuple(_to_int(x) for x in ([v] if isinstance(v, int) else v)),
}
_KIND = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
         "tuple[int, ...]": "a list of integers"}


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
    scope: str = "global"  # global top-k across layers, the same density in every layer, or erk (RigL's ERK)
    sample_fraction: float = 0.2  # |pi_t| = sample_fraction * |M_t|
    prune_linear: bool = False  # the released code prunes Conv2d weights only
    # the stream
    replay: str = "full"
    val_fraction: float = 0.1
    # training of each step
    epochs: int = 50
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple[int, ...] = (20, 40)
    lr_gamma: float = 0.1
    crop_padding: int = -1  # -1: the dataset's own default (4 for CIFAR)
    flip: bool = True
    # the harness around the methods: the paper's, or the released code's departures 4-7 (almabench.protocol)
    protocol: str = "paper"

    def __post_init__(self) -> None:
        # Coerce types so that 4 and 4.0, or [20, 40] and (20, 40), name the same cell.
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                value = _COERCE[f.type](value)
            except (TypeError, ValueError):
                raise AlmabenchError(f"{f.name} must be {_KIND[f.type]}, got {value!r}") from None
            object.__setattr__(self, f.name, value)

    def non_default(self) -> dict[str, Any]:
        """The fields that differ from their defaults: adding a field with a no-op default keeps old names."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AlmabenchError(f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
        return cls(**data)

    def hash(self) -> str:
        """Stable name of the cell: sha1 of the canonical JSON of its non-default fields."""
        canonical = json.dumps(self.non_default(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(canonical.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class RunOptions:
    """Where and how a cell runs; never changes what it computes (beyond floating-point rounding)."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data_root: str = ""  # empty: the user cache folder (see almabench.data.default_data_root)
    download: bool = False
    eval_batch_size: int = 1024
    threads: int = 0  # torch intra-op threads; 0: leave torch's default
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU (identical to the plain path)
    compile: bool = False  # torch.compile the training steps
