"""Training and evaluation with the whole dataset on the run's device.

Batches are gathered by index from uint8 tensors, then cropped, flipped and normalised on the device in one
vectorised step: no per-image Python and no DataLoader workers. The same code runs on CPU (fp32) and CUDA
(channels_last, bf16 autocast).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from almabench.config import RunConfig
from almabench.data import Dataset
from almabench.errors import AlmabenchError
from almabench.protocol import PROTOCOLS
from almabench.sparsity import Masks

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
    """Number of correctly classified images, in eval mode, in large batches."""
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=y.device)  # summed on the device: one sync at the end
    for start in range(0, len(y), batch_size):
        with data.autocast():
            logits = model(data.normalise(x[start : start + batch_size]))
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
    seconds: float


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
) -> tuple[Tensor, Tensor | None]:
    """SGD over the given index batches (augmented on the device), masks re-applied after every step.

    Returns the summed loss and, with track_accuracy, the number of correctly classified training images (the
    running accuracy the released code logs; None otherwise, sparing the hot loop its kernels) as device
    tensors, so the caller decides when to synchronise.
    """
    device = data.x_train.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device) if track_accuracy else None
    for batch in batches:
        x, y = data.normalise(augment(data.x_train[batch], crop_padding, flip, generator)), data.y_train[batch]
        with data.autocast():
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        masks.apply()
        loss_sum += loss.detach()
        if correct is not None:
            correct += (logits.detach().argmax(1) == y).sum()
    return loss_sum, correct


def train_step(
    model: nn.Module,
    masks: Masks,
    data: DeviceData,
    train_idx: Tensor,
    val_idx: Tensor,
    config: RunConfig,
    crop_padding: int,
    generator: torch.Generator,
    eval_batch_size: int = 1024,
    step_model: nn.Module | None = None,
    optimiser: torch.optim.Optimizer | None = None,
) -> TrainStats:
    """One megabatch: `epochs` epochs of SGD from a fresh learning rate, masks held after every step.

    The checkpoint with the best validation accuracy is loaded back at the end (ties keep the earlier one).
    step_model is what the SGD steps call (e.g. torch.compile(model)); it must share model's parameters.
    optimiser: None makes a new one (the paper); one carried through the stream (the released protocol) keeps
    its momentum and restarts its learning rate. Under that protocol validation images are augmented too.
    """
    if config.flip is None or config.milestones is None:
        raise ValueError("train_step needs a resolved config (RunConfig.resolve): flip and milestones unset")
    device = data.x_train.device
    protocol = PROTOCOLS.get(config.protocol)
    if optimiser is None:
        optimiser = new_optimiser(model, config)
    for group in optimiser.param_groups:
        group["lr"] = config.lr
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, list(config.milestones), config.lr_gamma)
    x_val, y_val = data.x_train[val_idx], data.y_train[val_idx]
    train_idx = train_idx.to(device)
    best = (-1.0, 0, None, copy.deepcopy(model.state_dict()))
    images = 0
    synchronize(device)
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator, device=device)]
        batches = [b for b in order.split(config.batch_size) if len(b) > 1]  # BN cannot train on one image
        loss_sum, correct = train_batches(step_model or model, masks, data, batches, optimiser, crop_padding,
                                          config.flip, generator, track_accuracy=protocol.gap == "running")
        epoch_images = sum(len(b) for b in batches)
        images += epoch_images
        if not torch.isfinite(loss_sum):  # checked once per epoch: no host sync per batch
            raise FloatingPointError(f"training loss is {loss_sum.item()} in epoch {epoch}")
        schedule.step()
        x_seen = augment(x_val, crop_padding, config.flip, generator) if protocol.augment_eval else x_val
        val_accuracy = accuracy(model, data, x_seen, y_val, eval_batch_size)
        if val_accuracy > best[0]:
            running = None if correct is None else 100.0 * int(correct) / max(1, epoch_images)
            best = (val_accuracy, epoch, running, {k: v.detach().clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[3])
    synchronize(device)
    return TrainStats(best_epoch=best[1], best_val_accuracy=best[0], best_running_accuracy=best[2], images=images,
                      seconds=time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so that a wall-clock reading covers it; a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
