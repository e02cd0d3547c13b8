"""MobileNetV3 building blocks (Howard et al., Searching for MobileNetV3, ICCV 2019).

Conv-BatchNorm-activation units, channel squeeze-and-excitation and the inverted residual bottleneck.
Submodule names follow torchvision's MobileNetV3 (``block.N.0`` conv, ``block.N.1`` BatchNorm) and the
EfficientAT / PretrainedSED variant (``conc_se_layers.0.fc1``), so their state dicts load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` without losing more than 10 %."""
    min_value = divisor if min_value is None else min_value
    out = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out


def _activation(name: str | None) -> nn.Module | None:
    if name is None:
        return None
    return {"relu": nn.ReLU, "hardswish": nn.Hardswish}[name](inplace=True)


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias, "same" padding) -> BatchNorm2d -> optional activation ("relu" / "hardswish").

    (B, C_in, F, T) -> (B, C_out, ceil(F / stride_f), ceil(T / stride_t)) for odd kernels.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int | tuple[int, int] = 1,
        groups: int = 1,
        activation: str | None = "hardswish",
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM),
        ]
        act = _activation(activation)
        if act is not None:
            layers.append(act)
        super().__init__(*layers)
        self.out_channels = out_channels


class ChannelSE(nn.Module):
    """Squeeze-and-excitation over channels: ``x * sigmoid(fc2(relu(fc1(mean_{F,T} x))))``. (B, C, F, T)."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze_channels)
        self.fc2 = nn.Linear(squeeze_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3))
        s = self.fc2(torch.relu(self.fc1(s)))
        return x * torch.sigmoid(s)[:, :, None, None]


class ConcurrentSE(nn.Module):
    """Container of the SE layers of one block, combined by element-wise max (one channel SE here)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.conc_se_layers = nn.ModuleList([ChannelSE(channels, make_divisible(channels // reduction, 8))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [layer(x) for layer in self.conc_se_layers]
        return outs[0] if len(outs) == 1 else torch.stack(outs).amax(0)


@dataclass(frozen=True)
class BottleneckConfig:
    """One inverted residual block, channel counts before the width multiplier.

    Attributes:
        in_channels, kernel, expanded_channels, out_channels: as in Table 1 of the MobileNetV3 paper.
        use_se: add channel squeeze-and-excitation after the depthwise convolution.
        activation: "relu" or "hardswish".
        stride: (frequency, time) stride of the depthwise convolution.
    """

    in_channels: int
    kernel: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    activation: str
    stride: tuple[int, int]

    def scaled(self, width_mult: float) -> BottleneckConfig:
        """The same block with all channel counts scaled by ``width_mult`` (rounded to multiples of 8)."""
        return BottleneckConfig(
            make_divisible(self.in_channels * width_mult),
            self.kernel,
            make_divisible(self.expanded_channels * width_mult),
            make_divisible(self.out_channels * width_mult),
            self.use_se,
            self.activation,
            self.stride,
        )


class InvertedResidual(nn.Module):
    """Expand (1x1, if wider) -> depthwise kxk (strided) -> optional SE -> project (1x1, linear), plus the
    identity shortcut when the stride is 1 and the channel count is unchanged. (B, C_in, F, T) input."""

    def __init__(self, cfg: BottleneckConfig, se_reduction: int = 4) -> None:
        super().__init__()
        self.use_residual = cfg.stride == (1, 1) and cfg.in_channels == cfg.out_channels
        layers: list[nn.Module] = []
        if cfg.expanded_channels != cfg.in_channels:
            layers.append(ConvNormAct(cfg.in_channels, cfg.expanded_channels, 1, activation=cfg.activation))
        layers.append(
            ConvNormAct(
                cfg.expanded_channels,
                cfg.expanded_channels,
                cfg.kernel,
                stride=cfg.stride,
                groups=cfg.expanded_channels,
                activation=cfg.activation,
            )
        )
        if cfg.use_se:
            layers.append(ConcurrentSE(cfg.expanded_channels, se_reduction))
        layers.append(ConvNormAct(cfg.expanded_channels, cfg.out_channels, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cfg.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_residual else out
