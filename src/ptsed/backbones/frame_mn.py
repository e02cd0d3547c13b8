"""Frame-level MobileNetV3 (``frame_mn06``, ``frame_mn10``) of PretrainedSED.

A MobileNetV3-Large body (Schmid et al., Efficient Large-Scale Audio Tagging via Transformer-to-CNN
Knowledge Distillation, ICASSP 2023) whose strides reduce frequency 128 -> 1 but time only by 4
(10 ms features -> 40 ms frames), so its last feature map is a frame sequence. No classifier: the output
is (B, T / 4, C) with C = 6 x the last bottleneck width (576 for width 0.6, 960 for width 1.0).

Module names match the released checkpoints (``features.N...``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ptsed.backbones.base import Backbone
from ptsed.core.frames import FRAME_HOP_S
from ptsed.frontends.mel_stft import MelSTFT
from ptsed.layers.mobilenet import BottleneckConfig, ConvNormAct, InvertedResidual

# (in, kernel, expanded, out, SE, activation, (frequency stride, time stride)), before the width multiplier.
FRAME_MN_BLOCKS: tuple[BottleneckConfig, ...] = tuple(
    BottleneckConfig(*row)
    for row in [
        (16, 3, 16, 16, False, "relu", (1, 1)),
        (16, 3, 64, 24, False, "relu", (2, 2)),
        (24, 3, 72, 24, False, "relu", (2, 1)),
        (24, 5, 72, 40, True, "relu", (1, 1)),
        (40, 5, 120, 40, True, "relu", (1, 1)),
        (40, 5, 120, 40, True, "relu", (2, 1)),
        (40, 3, 240, 80, False, "hardswish", (1, 1)),
        (80, 3, 200, 80, False, "hardswish", (2, 1)),
        (80, 3, 184, 80, False, "hardswish", (1, 1)),
        (80, 3, 184, 80, False, "hardswish", (1, 1)),
        (80, 3, 480, 112, True, "hardswish", (2, 1)),
        (112, 3, 672, 112, True, "hardswish", (1, 1)),
        (112, 5, 672, 160, True, "hardswish", (1, 1)),
        (160, 5, 960, 160, True, "hardswish", (1, 1)),
        (160, 5, 960, 160, True, "hardswish", (2, 1)),
    ]
)


class FrameMN(Backbone):
    """Frame-level MobileNetV3: features (B, 1, F, T) -> (B, ceil(T / 4), C).

    ``features`` holds 17 stages: the stem (3x3 conv, stride 2), the 15 inverted residual blocks and the
    final 1x1 conv. The frequency axis is reduced by 128 (stride 2 in the stem and six blocks); any
    remainder is averaged, so 128 mel bins give exactly upstream's output.

    Args:
        width_mult: channel multiplier (0.6 for frame_mn06, 1.0 for frame_mn10).
        in_channels: input channels of the features.
        se_reduction: squeeze-and-excitation bottleneck ratio.

    Attributes:
        embed_dim: output channels (6 x the last bottleneck width).
        max_input_s: ``inf``. The network is fully convolutional with no position information; only memory
            limits the input length. The squeeze-and-excitation layers average over the whole clip, so
            every frame depends on the clip length: the released weights were trained on 10 s clips, and
            inference should cut windows of that length.
        num_layers: 17 (the stages of ``features``).
    """

    frame_hop_s = FRAME_HOP_S
    max_input_s = math.inf

    def __init__(self, width_mult: float = 1.0, in_channels: int = 1, se_reduction: int = 4) -> None:
        super().__init__()
        blocks = [cfg.scaled(width_mult) for cfg in FRAME_MN_BLOCKS]
        last_in = blocks[-1].out_channels
        layers: list[nn.Module] = [ConvNormAct(in_channels, blocks[0].in_channels, 3, stride=2)]
        layers += [InvertedResidual(cfg, se_reduction) for cfg in blocks]
        layers.append(ConvNormAct(last_in, 6 * last_in, 1))
        self.features = nn.Sequential(*layers)
        self.width_mult = width_mult
        self.embed_dim = 6 * last_in
        self.num_layers = len(self.features)
        self._stage_dims = [blocks[0].in_channels] + [c.out_channels for c in blocks] + [self.embed_dim]

    @staticmethod
    def _to_sequence(x: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """(B, C, F, T) -> (B, T, C), averaging the frequency axis; time pooled to ``num_frames`` if given."""
        x = x.squeeze(2) if x.shape[2] == 1 else x.mean(2)
        if num_frames is not None and x.shape[-1] != num_frames:
            x = F.adaptive_avg_pool1d(x, num_frames)
        return x.transpose(1, 2)

    @staticmethod
    def output_frames(num_feature_frames: int) -> int:
        """Sequence length S = ceil(T / 4) for T input frames (250 for 1000): two stride-2 steps in time."""
        return (num_feature_frames + 3) // 4

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, 1, F, T) -> frame embeddings (B, S, embed_dim), S = ceil(T / 4)."""
        return self._to_sequence(self.features(features))

    def forward_intermediates(self, features: torch.Tensor, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Outputs of the chosen stages (0: stem ... 16: last conv), each (B, S, C_i) on the output grid.

        The frequency axis is averaged; the stem output (time stride 2 only) is average-pooled in time to
        the S frames of the output. The last stage equals :meth:`forward`.
        """
        wanted = self.resolve_indices(indices, self.num_layers)
        num_frames = self.output_frames(features.shape[-1])
        outs: dict[int, torch.Tensor] = {}
        x = features
        for i, layer in enumerate(self.features[: max(wanted) + 1]):
            x = layer(x)
            if i in wanted:
                outs[i] = self._to_sequence(x, num_frames)
        return [outs[i] for i in wanted]

    def stage_dims(self) -> list[int]:
        """Channels C_i of every stage's output."""
        return list(self._stage_dims)

    def param_groups(self) -> list[list[str]]:
        """One group per stage of ``features`` (stem first, last conv last)."""
        groups: list[list[str]] = [[] for _ in range(self.num_layers)]
        for name, _ in self.named_parameters():
            groups[int(name.split(".")[1])].append(name)
        return groups


def build(width_mult: float = 1.0, n_mels: int = 128, **frontend_kwargs: Any) -> tuple[MelSTFT, FrameMN]:
    """Front-end and backbone of frame_mn: symmetric-window log-mel (128 bins) + :class:`FrameMN`.

    Args:
        width_mult: 0.6 (frame_mn06) or 1.0 (frame_mn10); smaller values give tiny test models.
        n_mels: mel bins of the front-end.
        **frontend_kwargs: further :class:`~ptsed.frontends.mel_stft.MelSTFT` arguments.
    """
    frontend = MelSTFT(n_mels=n_mels, periodic_window=False, **frontend_kwargs)
    return frontend, FrameMN(width_mult=width_mult)


__all__ = ["FRAME_MN_BLOCKS", "FrameMN", "build"]
