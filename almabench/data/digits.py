"""The embedded default: scikit-learn's handwritten digits (1,797 8×8 images, shipped inside the package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from almabench.data.base import AUGMENTATION, DATASETS, Dataset, channel_stats


@DATASETS.register("digits")
def load_digits(root: Path, download: bool) -> Dataset:
    """sklearn's digits; a fixed split: every fifth image (index % 5 == 0) is the test set (360 / 1,437)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.clip(bunch.images * 16.0, 0, 255).astype(np.uint8)[:, None]  # 0..16 -> 0..255
    labels = bunch.target.astype(np.int64)
    test = np.arange(len(labels)) % 5 == 0
    x_train = torch.from_numpy(images[~test])
    mean, std = channel_stats(x_train)
    return Dataset(
        name="digits",
        x_train=x_train,
        y_train=torch.from_numpy(labels[~test]),
        x_test=torch.from_numpy(images[test]),
        y_test=torch.from_numpy(labels[test]),
        num_classes=10,
        mean=mean,
        std=std,
        crop_padding=AUGMENTATION["digits"].crop_padding,
        source="sklearn.datasets.load_digits",
        flip=AUGMENTATION["digits"].flip,
    )
