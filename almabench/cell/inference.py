"""Evaluation as fast as the machine allows, with the predictions of the model as it is.

Two choices, each a rule that can be shown (benchmarks/speed.py --cell measures every alternative beside it):
- batch norm folded into the convolution before it (torch.fx's conv-BN fusion, on a copy of the model): one
  kernel fewer per layer, 7-10 % more images/s on CPU; tracing costs 20-110 ms, so only from FOLD_FROM_IMAGES on.
  Models fx cannot trace are evaluated as they are;
- the batch: on CUDA 1,024; on CPU the largest power of two up to 1,024 whose largest layer output fits a
  budget: 64 MiB where freed buffers are reused (almabench.cell.allocator), 8 MiB where each one above glibc's mmap
  threshold would be mapped and zero-filled anew (page-fault storms; measured 10-28 % system time).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.fx.experimental.optimization import fuse

FOLD_FROM_IMAGES = 1024
MAX_EVAL_BATCH = 1024
CPU_BUDGET_BYTES = {True: 64 << 20, False: 8 << 20}  # by whether freed memory is reused

_UNTRACEABLE: set[type] = set()  # model classes fx failed on: not tried again


def inference_model(model: nn.Module, n_images: int) -> nn.Module:
    """The model in eval mode, with batch norm folded into its convolutions where that pays and is possible."""
    model.eval()
    if n_images < FOLD_FROM_IMAGES or type(model) in _UNTRACEABLE:
        return model
    try:
        return fuse(model)  # a copy: the trained model keeps its batch norm
    except Exception:  # noqa: BLE001 - fx raises many types on untraceable code; the plain model is always right
        _UNTRACEABLE.add(type(model))
        return model


def largest_activation_bytes(model: nn.Module, channels: int, size: tuple[int, int], device: torch.device) -> int:
    """Bytes of the largest output any layer makes for one fp32 image."""
    largest = 0

    def hook(module: nn.Module, inputs: object, out: object) -> None:
        nonlocal largest
        if isinstance(out, torch.Tensor):
            largest = max(largest, out.numel() * 4)

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(torch.zeros(1, channels, *size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return largest


def eval_batch_size(device: torch.device, activation_bytes: int, memory_reused: bool) -> int:
    """The evaluation batch by the rule in the module's docstring."""
    if device.type == "cuda":
        return MAX_EVAL_BATCH
    batch = MAX_EVAL_BATCH
    while batch > 32 and batch * activation_bytes > CPU_BUDGET_BYTES[memory_reused]:
        batch //= 2
    return batch
