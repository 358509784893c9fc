"""EfficientNet (B0–B7 family) trunk in plain torch, with torchvision's state-dict layout.

torchvision cannot be installed next to the CPU torch here, yet GRADA checkpoints are saved from
torchvision's ``efficientnet_b1``. :func:`build_efficientnet` rebuilds the same module tree (``features.0``
stem, ``features.1``–``features.7`` MBConv stages, ``features.8`` head conv, ``avgpool``, optional
``classifier``) so ``state_dict()`` keys and shapes are exactly torchvision's and such checkpoints load
unchanged. Width/depth multipliers scale the base (B0) stage table as torchvision does; B1 is width 1.0,
depth 1.1 (6,513,184 trunk parameters; 7,794,184 with the 1000-class classifier). Stochastic depth is an
identity at inference and has no parameters, so it is left out.

The stage table and the layer arithmetic follow the EfficientNet paper (Tan & Le, 2019) and torchvision's
documented configuration; the code is written from that description.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class StageSetting:
    """One MBConv stage of the B0 table."""

    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    layers: int


B0_STAGES: tuple[StageSetting, ...] = (
    StageSetting(1, 3, 1, 32, 16, 1),
    StageSetting(6, 3, 2, 16, 24, 2),
    StageSetting(6, 5, 2, 24, 40, 2),
    StageSetting(6, 3, 2, 40, 80, 3),
    StageSetting(6, 5, 1, 80, 112, 3),
    StageSetting(6, 5, 2, 112, 192, 4),
    StageSetting(6, 3, 1, 192, 320, 1),
)
"""EfficientNet-B0 stages: expand ratio, kernel, stride, input/output channels, layers."""

VARIANTS: dict[str, tuple[float, float]] = {"b0": (1.0, 1.0), "b1": (1.0, 1.1), "b2": (1.1, 1.2),
                                            "b3": (1.2, 1.4), "b4": (1.4, 1.8)}
"""(width, depth) multipliers of the variants."""


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never below 90 % of ``value``."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def scaled_stages(width: float, depth: float) -> list[StageSetting]:
    """The B0 table with channels scaled by ``width`` and layers by ``depth`` (ceil)."""
    return [StageSetting(s.expand_ratio, s.kernel, s.stride, make_divisible(s.in_channels * width),
                         make_divisible(s.out_channels * width), math.ceil(s.layers * depth))
            for s in B0_STAGES]


def build_efficientnet(width: float = 1.0, depth: float = 1.1, *, num_classes: int | None = None) -> Any:
    """An EfficientNet with torchvision's module names; ``num_classes=None`` leaves ``classifier`` an
    ``Identity`` (the pooled ``make_divisible(1280 * width)``-d feature comes out)."""
    from torch import nn

    class ConvNormAct(nn.Sequential):  # type: ignore[misc]
        def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                     act: bool = True) -> None:
            layers: list[nn.Module] = [
                nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                nn.BatchNorm2d(cout)]
            if act:
                layers.append(nn.SiLU(inplace=True))
            super().__init__(*layers)

    class SqueezeExcitation(nn.Module):  # type: ignore[misc]
        def __init__(self, channels: int, squeeze: int) -> None:
            super().__init__()
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(channels, squeeze, 1)
            self.fc2 = nn.Conv2d(squeeze, channels, 1)
            self.activation = nn.SiLU(inplace=True)
            self.scale_activation = nn.Sigmoid()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
            return x * scale

    class MBConv(nn.Module):  # type: ignore[misc]
        def __init__(self, s: StageSetting, cin: int, stride: int) -> None:
            super().__init__()
            expanded = make_divisible(cin * s.expand_ratio)
            layers: list[nn.Module] = []
            if expanded != cin:
                layers.append(ConvNormAct(cin, expanded, 1))
            layers.append(ConvNormAct(expanded, expanded, s.kernel, stride, groups=expanded))
            layers.append(SqueezeExcitation(expanded, max(1, cin // 4)))
            layers.append(ConvNormAct(expanded, s.out_channels, 1, act=False))
            self.block = nn.Sequential(*layers)
            self.use_residual = stride == 1 and cin == s.out_channels

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.block(x)
            return out + x if self.use_residual else out

    class EfficientNet(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            stages = scaled_stages(width, depth)
            modules: list[nn.Module] = [ConvNormAct(3, stages[0].in_channels, 3, 2)]
            for s in stages:
                blocks = [MBConv(s, s.in_channels if i == 0 else s.out_channels, s.stride if i == 0 else 1)
                          for i in range(s.layers)]
                modules.append(nn.Sequential(*blocks))
            last = stages[-1].out_channels
            self.out_features = 4 * last
            modules.append(ConvNormAct(last, self.out_features, 1))
            self.features = nn.Sequential(*modules)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier: nn.Module = (nn.Identity() if num_classes is None else nn.Sequential(
                nn.Dropout(0.2, inplace=True), nn.Linear(self.out_features, num_classes)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.avgpool(self.features(x)).flatten(1))

    return EfficientNet()
