"""The device a cell runs on, from the --device name: one function that run, checkpoint, plan, gpu and execute
all use, so none of them imports another for it (checkpoint.py and run.py used to import each other)."""

from __future__ import annotations

import torch

from almabench.errors import AlmabenchError


def resolve_device(name: str) -> torch.device:
    """auto: CUDA where it is available, else the CPU; cuda or cuda:N only where CUDA is available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AlmabenchError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise AlmabenchError(f"unknown device {name!r}; choose from: auto, cpu, cuda, cuda:N") from None
