"""Training and evaluation with the whole dataset on the run's device.

Batches are gathered by index from uint8 tensors, then cropped, flipped and normalised on the device in one
vectorised step: no per-image Python and no DataLoader workers. The same code runs on CPU (fp32) and CUDA
(channels_last, bf16 autocast).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from almabench.cell.config import RunConfig
from almabench.cell.inference import inference_model
from almabench.cell.protocol import PROTOCOLS
from almabench.cell.sparsity import Masks
from almabench.data import Dataset
from almabench.errors import AlmabenchError

if TYPE_CHECKING:  # methods import this module: the type only, no import cycle at run time
    from almabench.methods import Method

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """What a run computes in: auto is bf16 autocast on CUDA and plain fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise AlmabenchError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


@dataclass(frozen=True, eq=False)
class DeviceData:
    """The dataset's tensors on the run's device, plus what normalising them needs."""

    x_train: Tensor  # uint8 N×C×H×W
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    mean: Tensor  # 1×C×1×1, float32, scaled to uint8 range
    std: Tensor
    channels_last: bool = False
    autocast_dtype: torch.dtype | None = None  # None: plain fp32

    @classmethod
    def from_dataset(cls, data: Dataset, device: torch.device, precision: str = "auto",
                     channels_last: bool | None = None) -> DeviceData:
        """precision: auto (bf16 autocast on CUDA, fp32 on CPU), fp32, or bf16 (also on CPUs with AVX512-BF16).
        channels_last: None picks it wherever it is faster: on CUDA, and on CPU for images of 16 px and more
        (oneDNN's NHWC convolutions; 1.4-1.7x on 2 cores for 32 px, slower for 8 px)."""
        bf16 = resolve_precision(precision, device) == "bf16"
        if channels_last is None:
            channels_last = device.type == "cuda" or min(data.image_size) >= 16
        scale = torch.tensor(data.mean, device=device).view(1, -1, 1, 1) * 255.0
        std = torch.tensor(data.std, device=device).view(1, -1, 1, 1) * 255.0
        return cls(
            data.x_train.to(device), data.y_train.to(device), data.x_test.to(device), data.y_test.to(device),
            scale, std, channels_last=channels_last, autocast_dtype=torch.bfloat16 if bf16 else None,
        )

    def autocast(self) -> torch.autocast:
        device_type = self.x_train.device.type
        return torch.autocast(device_type, dtype=self.autocast_dtype or torch.bfloat16,
                              enabled=self.autocast_dtype is not None)

    def normalise(self, x: Tensor) -> Tensor:
        """uint8 images -> float32 (x − mean) / std, laid out as chosen: channels_last or plain contiguous.

        Always one of the two: the crop's gather leaves a strided batch, and a convolution picks its algorithm
        by layout, so passing it on as is would make the "plain" fp32 path differ from a textbook loop.
        """
        out = (x.float() - self.mean) / self.std
        return out.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)


def augment(x: Tensor, padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Random crop (zero padding) and horizontal flip of a uint8 batch, one random draw per image."""
    b, _, h, w = x.shape
    if padding > 0:
        padded = F.pad(x, (padding, padding, padding, padding))
        offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=x.device)
        rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, :, None]  # B×H×1
        cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, :]  # B×1×W
        x = padded[torch.arange(b, device=x.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if flip:
        flips = torch.rand(b, generator=generator, device=x.device) < 0.5
        x = torch.where(flips[:, None, None, None], x.flip(3), x)
    return x


@torch.inference_mode()
def count_correct(model: nn.Module, data: DeviceData, x: Tensor, y: Tensor, batch_size: int = 1024) -> int:
    """Number of correctly classified images, in eval mode (batch norm folded where it pays: inference.py)."""
    net = inference_model(model, len(y))
    correct = torch.zeros((), dtype=torch.int64, device=y.device)  # summed on the device: one sync at the end
    for start in range(0, len(y), batch_size):
        with data.autocast():
            logits = net(data.normalise(x[start : start + batch_size]))
        correct += (logits.argmax(1) == y[start : start + batch_size]).sum()
    return int(correct)


def accuracy(model: nn.Module, data: DeviceData, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * count_correct(model, data, x, y, batch_size) / len(y)


@dataclass(frozen=True)
class TrainStats:
    best_epoch: int
    best_val_accuracy: float
    best_running_accuracy: float | None  # the kept epoch's accuracy on its own (augmented, train-mode) batches;
    #                                      tracked only where the protocol's gap uses it
    images: int  # training images processed
    seconds: float  # the whole megabatch, validation included
    validation_seconds: float  # of which: the validation pass after each epoch

    @property
    def images_per_second(self) -> float | None:
        training = self.seconds - self.validation_seconds
        return round(self.images / training, 1) if training > 0 else None


@dataclass(eq=False)
class CellState:
    """One cell's state as one object: what train_step, evaluate_step, the methods' hooks and the checkpoint share.

    Mutable on purpose (a config is frozen; a state is not): `step` advances, masks and weights change.
    """

    config: RunConfig
    model: nn.Module
    masks: Masks
    data: DeviceData
    method: Method
    train_generator: torch.Generator  # batch order and augmentation, on the run's device
    method_generator: torch.Generator = field(default_factory=torch.Generator)  # CPU: π_t, random scores, SET
    crop_padding: int = 0
    optimiser: torch.optim.Optimizer | None = None  # carried through the stream (released protocol); None: a
    #                                                  new one per megabatch (the paper)
    step_model: nn.Module | None = None  # what the SGD steps call (e.g. torch.compile(model)); None: model
    eval_batch_size: int = 1024
    step: int = 0  # the megabatch being trained or last finished, 1-based


@dataclass(frozen=True)
class SGDStep:
    """Where a megabatch's training stands when a method's after_sgd_step hook runs: right after
    optimiser.step() and masks.apply(), with the minibatch's (dense) gradients still in every p.grad."""

    iteration: int  # 1-based, counted over all the megabatch's epochs
    total: int  # SGD steps the megabatch makes: epochs × batches per epoch
    optimiser: torch.optim.Optimizer  # the one in use (its momentum buffers live in optimiser.state)

    @property
    def progress(self) -> float:
        return self.iteration / self.total


def new_optimiser(model: nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def train_batches(
    model: nn.Module,
    masks: Masks,
    data: DeviceData,
    batches: list[Tensor],
    optimiser: torch.optim.Optimizer,
    crop_padding: int,
    flip: bool,
    generator: torch.Generator,
    track_accuracy: bool = False,
    after_step: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """SGD over the given index batches (augmented on the device), masks re-applied after every step.

    after_step(i) runs after the i-th batch's optimiser step and mask (1-based), gradients still in place;
    None (every method without a training hook) leaves the loop as it is.
    Returns the summed loss and, with track_accuracy, the number of correctly classified training images (the
    running accuracy the released code logs; None otherwise, sparing the hot loop its kernels) as device
    tensors, so the caller decides when to synchronise.
    """
    device = data.x_train.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device) if track_accuracy else None
    for i, batch in enumerate(batches, start=1):
        x, y = data.normalise(augment(data.x_train[batch], crop_padding, flip, generator)), data.y_train[batch]
        with data.autocast():
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        masks.apply()
        if after_step is not None:
            after_step(i)
        loss_sum += loss.detach()
        if correct is not None:
            correct += (logits.detach().argmax(1) == y).sum()
    return loss_sum, correct


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Batches an epoch of n images makes: a last batch of one image is dropped (batch norm cannot train on it)."""
    return n // batch_size + (1 if n % batch_size > 1 else 0)


def train_step(cell: CellState, train_idx: Tensor, val_idx: Tensor) -> TrainStats:
    """One megabatch: `epochs` epochs of SGD from a fresh learning rate, masks held after every step.

    The checkpoint with the best validation accuracy is loaded back at the end (ties keep the earlier one).
    cell.optimiser None makes a new one (the paper); one carried through the stream (the released protocol)
    keeps its momentum and restarts its learning rate. Under that protocol validation images are augmented too.
    A method with a training hook has it called after every SGD step; as it may change the masks, its kept
    checkpoint holds them too, and only epochs that end where the method says its masks are settled compete, and
    the last epoch always (a megabatch too short for a settled epoch keeps its last, never its untrained start).
    """
    config, model, masks, data = cell.config, cell.model, cell.masks, cell.data
    if config.flip is None or config.milestones is None:
        raise ValueError("train_step needs a resolved config (RunConfig.resolve): flip and milestones unset")
    device = data.x_train.device
    protocol = PROTOCOLS.get(config.protocol)
    optimiser = cell.optimiser if cell.optimiser is not None else new_optimiser(model, config)
    for group in optimiser.param_groups:
        group["lr"] = config.lr
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, list(config.milestones), config.lr_gamma)
    x_val, y_val = data.x_train[val_idx], data.y_train[val_idx]
    train_idx = train_idx.to(device)
    per_epoch = batches_per_epoch(len(train_idx), config.batch_size)
    total = config.epochs * per_epoch
    hook = cell.method.after_sgd_step if cell.method.acts_in_training else None
    best: tuple[float, int, float | None, dict[str, Any], dict[str, Tensor] | None]
    best = (-1.0, 0, None, copy.deepcopy(model.state_dict()), _mask_copy(masks) if hook else None)
    images, validation_seconds = 0, 0.0
    synchronize(device)
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=cell.train_generator, device=device)]
        batches = [b for b in order.split(config.batch_size) if len(b) > 1]  # BN cannot train on one image
        done = (epoch - 1) * per_epoch
        after_step = None if hook is None else (lambda i, done=done: hook(cell, SGDStep(done + i, total, optimiser)))
        loss_sum, correct = train_batches(cell.step_model or model, masks, data, batches, optimiser,
                                          cell.crop_padding, config.flip, cell.train_generator,
                                          track_accuracy=protocol.gap == "running", after_step=after_step)
        epoch_images = sum(len(b) for b in batches)
        images += epoch_images
        if not torch.isfinite(loss_sum):  # checked once per epoch: no host sync per batch
            raise FloatingPointError(f"training loss is {loss_sum.item()} in epoch {epoch}")
        schedule.step()
        validation_start = time.perf_counter()
        x_seen = x_val
        if protocol.augment_eval:
            x_seen = augment(x_val, cell.crop_padding, config.flip, cell.train_generator)
        val_accuracy = accuracy(model, data, x_seen, y_val, cell.eval_batch_size)
        validation_seconds += time.perf_counter() - validation_start  # accuracy() synchronises: it reads a count
        competes = epoch == config.epochs or cell.method.settled(epoch * per_epoch, total)
        if val_accuracy > best[0] and competes:
            running = None if correct is None else 100.0 * int(correct) / max(1, epoch_images)
            best = (val_accuracy, epoch, running, {k: v.detach().clone() for k, v in model.state_dict().items()},
                    _mask_copy(masks) if hook else None)
    model.load_state_dict(best[3])
    if best[4] is not None:
        masks.set(best[4])
    synchronize(device)
    return TrainStats(best_epoch=best[1], best_val_accuracy=best[0], best_running_accuracy=best[2], images=images,
                      seconds=time.perf_counter() - start, validation_seconds=validation_seconds)


def _mask_copy(masks: Masks) -> dict[str, Tensor]:
    return {name: m.clone() for name, m in masks.masks.items()}


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so that a wall-clock reading covers it; a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
