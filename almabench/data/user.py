"""The user's own data (.npz, ImageFolder): what the two share.

Classes, channels, size and mean/std are read from the data itself. Anything the data cannot mean is an
AlmabenchError naming the file and what would be valid, raised while the grid is checked, so a bad file stops
the run before a cell runs or anything in --out is touched.
Augmentation defaults: padding by image size, and no flip (a mirrored image may be another class: text,
digits, arrows); users who know their images are mirror-symmetric set flip = true in the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from almabench.data.base import Dataset, channel_stats
from almabench.names import quoted


def padding_for(size: int) -> int:
    """⌊size/8⌋, at least 1 and at most 4, and always below the size (a crop must keep a pixel): 0 for 1 px."""
    return min(4 if size >= 32 else max(1, size // 8), size - 1)


def some(items: Sequence[Any], limit: int = 3) -> str:
    """The first few items, comma-separated, and how many more: error messages stay one readable line."""
    shown = ", ".join(quoted(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def from_arrays(name: str, source: str, num_classes: int, x_train, y_train, x_test, y_test) -> Dataset:
    """A user's Dataset from checked N×C×H×W uint8 images and labels 0..num_classes-1."""
    x_train, x_test = torch.as_tensor(x_train), torch.as_tensor(x_test)
    y_train, y_test = torch.as_tensor(y_train, dtype=torch.int64), torch.as_tensor(y_test, dtype=torch.int64)
    mean, std = channel_stats(x_train)
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   num_classes=num_classes, mean=mean, std=std, crop_padding=padding_for(min(x_train.shape[2:])),
                   flip=False, source=source)
