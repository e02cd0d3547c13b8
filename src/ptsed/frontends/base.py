"""The front-end protocol: waveform (B, N) -> features (B, 1, F, T).

A front-end is a small ``nn.Module`` with a config. Its output never depends on the other clips of a
batch: every normalisation is computed per clip.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def no_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """A context that switches autocast off on ``device_type`` (a no-op where autocast does not exist).

    Front-ends compute in float32 even when the network runs under mixed precision, as the references do.
    """
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


class Frontend(nn.Module):
    """Base class of every front-end.

    Attributes:
        sample_rate: expected input sample rate in Hz.
        hop_s: hop between feature frames in seconds.
        n_bins: number of frequency bins F of the output.
    """

    sample_rate: int = 16_000
    hop_s: float = 0.01
    n_bins: int = 0

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Map a waveform batch (B, N), float, at ``sample_rate`` to features (B, 1, F, T)."""
        raise NotImplementedError

    def num_frames(self, num_samples: int) -> int:  # pragma: no cover - abstract
        """Number of feature frames T produced for an input of ``num_samples`` samples."""
        raise NotImplementedError
