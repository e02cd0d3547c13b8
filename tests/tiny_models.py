"""Tiny, fast SED models for tests of the inference engine (no zoo arch needed).

``tiny_model(context=1)`` is *frame-local*: each 40 ms output frame depends only on the samples of that
frame, so windowed inference must equal one pass over the whole signal. ``context > 1`` adds a temporal
convolution (outputs near window edges then depend on the window), like real models.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ptsed.backbones.base import Backbone
from ptsed.frontends.base import Frontend
from ptsed.heads.sed_head import HeadConfig
from ptsed.models.sed_model import SEDModel

TINY_LABELS = ["Speech", "Dog", "Accelerating, revving, vroom", "Music", "Bird"]


class FrameFrontend(Frontend):
    """(B, N) -> (B, 1, n_bins, N // 640): log magnitude of a fixed projection of each 40 ms frame."""

    sample_rate = 16_000
    hop_s = 0.04

    def __init__(self, n_bins: int = 8) -> None:
        super().__init__()
        self.n_bins = n_bins
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(640, n_bins, generator=g) / 25.0, persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        frames = waveform.unfold(-1, 640, 640)  # (B, T, 640)
        feats = torch.log1p((frames @ self.proj).abs() * 10.0)
        return feats.transpose(1, 2).unsqueeze(1)

    def num_frames(self, num_samples: int) -> int:
        return num_samples // 640


class FrameBackbone(Backbone):
    """Per-frame MLP, optionally followed by a temporal convolution of ``context`` frames."""

    frame_hop_s = 0.04
    max_input_s = 10.0

    def __init__(self, n_bins: int = 8, dim: int = 16, context: int = 1) -> None:
        super().__init__()
        self.embed_dim = dim
        self.num_layers = 2
        g = torch.Generator().manual_seed(1)
        self.fc1 = nn.Linear(n_bins, dim)
        self.fc2 = nn.Linear(dim, dim)
        self.conv = nn.Conv1d(dim, dim, context, padding=context // 2) if context > 1 else None
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def _blocks(self, features: torch.Tensor) -> list[torch.Tensor]:
        x = features.squeeze(1).transpose(1, 2)  # (B, T, F)
        h1 = torch.tanh(self.fc1(x))
        h2 = self.fc2(h1)
        if self.conv is not None:
            h2 = h2 + self.conv(h2.transpose(1, 2)).transpose(1, 2)
        return [h1, h2]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self._blocks(features)[-1]

    def forward_intermediates(self, features: torch.Tensor, indices: Sequence[int] | None = None) -> list:
        blocks = self._blocks(features)
        return [blocks[i] for i in self.resolve_indices(indices, self.num_layers)]

    def param_groups(self) -> list[list[str]]:
        return [[n for n, _ in self.named_parameters()]]


def tiny_model(context: int = 1, labels: Sequence[str] = TINY_LABELS, name: str = "tiny") -> SEDModel:
    """A tiny SEDModel in eval mode (16 kHz, 250 frames per 10 s, ``len(labels)`` classes)."""
    torch.manual_seed(2)
    model = SEDModel(
        FrameFrontend(),
        FrameBackbone(context=context),
        HeadConfig(n_strong=len(labels)),
        name=name,
        labels=list(labels),
    )
    with torch.no_grad():
        model.head.strong_head.weight.mul_(3.0)
    return model.eval()
