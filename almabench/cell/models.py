"""Architectures by name. Each builder takes the dataset's classes, channels and image size.

ResNet-18/34/50 reuse torchvision's implementation with the CIFAR stem (3×3 stride-1 conv, no max-pool), as in
the released APP code; ResNet-20/56 are the CIFAR family of He et al. (16/32/64 channels, 1×1 projection
shortcuts); VGG-16-bn is the CIFAR variant (global pooling, one linear classifier); `convnet` is a small net
that trains in seconds on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchvision.models import resnet

from almabench.registry import Registry, callable_entry

Builder = Callable[[int, int, int], nn.Module]  # (num_classes, in_channels, image_size) -> model
ARCHS: Registry[Builder] = Registry("architecture", "almabench.architectures", callable_entry)


def init_seed(seed: int, offset: int) -> int:
    """The seed of a model initialisation (the cell's at offset 0, app-released's fresh scorer weights at step t):
    distinct per (seed, offset), and within torch's 64-bit range."""
    return (seed * 1_000_003 + offset) % 2**64


def build_model(arch: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return ARCHS.get(arch)(num_classes, in_channels, image_size)


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@ARCHS.register("convnet")
def convnet(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Four 3×3 conv layers (32-64-128-128), a 2×2 max-pool after each of the first three while the map is at
    least 4 pixels wide, global average pooling, one linear layer: about 13 M multiply-adds for a 32×32 image."""
    layers: list[nn.Module] = []
    cin, size = in_channels, image_size
    for i, cout in enumerate((32, 64, 128, 128)):
        layers += _conv_bn(cin, cout)
        cin = cout
        if i < 3 and size >= 4:
            layers.append(nn.MaxPool2d(2))
            size //= 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes)]
    return nn.Sequential(*layers)


def _cifar_torchvision_resnet(block: type, layers: list[int]) -> Builder:
    def build(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        model = resnet.ResNet(block, layers, num_classes=num_classes)
        model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        model.maxpool = nn.Identity()
        return model

    return build


ARCHS.register("resnet18")(_cifar_torchvision_resnet(resnet.BasicBlock, [2, 2, 2, 2]))
ARCHS.register("resnet34")(_cifar_torchvision_resnet(resnet.BasicBlock, [3, 4, 6, 3]))
ARCHS.register("resnet50")(_cifar_torchvision_resnet(resnet.Bottleneck, [3, 4, 6, 3]))


class _CifarBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR: three stages of n blocks with 16, 32 and 64 channels."""

    def __init__(self, depth: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError("CIFAR ResNet depth must be 6n+2")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(*_conv_bn(in_channels, 16))
        blocks: list[nn.Module] = []
        cin = 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(_CifarBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        out = self.blocks(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


ARCHS.register("resnet20")(lambda c, i, s: CifarResNet(20, c, i))
ARCHS.register("resnet56")(lambda c, i, s: CifarResNet(56, c, i))

_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@ARCHS.register("vgg16_bn")
def vgg16_bn(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """VGG-16 with batch norm; a max-pool is skipped once the feature map is down to 1×1."""
    layers: list[nn.Module] = []
    cin, size = in_channels, image_size
    for item in _VGG16:
        if item == "M":
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        else:
            layers += _conv_bn(cin, int(item))
            cin = int(item)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    return nn.Sequential(*layers)
