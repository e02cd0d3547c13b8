"""Common part of the front-ends whose STFT frames are centred on multiples of the hop (ATST-Frame, M2D).

The waveform is padded by reflection with ``n_fft // 2`` samples on both sides, so an input of N samples
gives ``T = N // hop + 1`` frames and must be longer than ``n_fft // 2`` samples.
"""

from __future__ import annotations

from ptsed.core.errors import AudioError
from ptsed.frontends.base import Frontend


class CentredSTFTFrontend(Frontend):
    """Base of centred-STFT front-ends: sets ``sample_rate``, ``hop_s``, ``n_bins`` and the frame count.

    Args:
        sample_rate: input sample rate in Hz.
        n_fft: FFT size in samples (the reflection padding is ``n_fft // 2`` on each side).
        hop_length: hop in samples.
        n_bins: number of output bins F.
    """

    def __init__(self, sample_rate: int, n_fft: int, hop_length: int, n_bins: int) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.hop_s = hop_length / sample_rate
        self.n_bins = n_bins

    def extra_repr(self) -> str:
        return f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop={self.hop_length}, n_mels={self.n_bins}"

    def num_frames(self, num_samples: int) -> int:
        """``N // hop + 1`` frames (centred frames)."""
        return num_samples // self.hop_length + 1

    def check_length(self, num_samples: int) -> None:
        """Raise :class:`~ptsed.core.errors.AudioError` for inputs too short for the reflection padding."""
        pad = self.n_fft // 2
        if num_samples <= pad:
            raise AudioError(
                f"input of {num_samples} samples is too short for the {type(self).__name__} front-end: it needs "
                f"more than {pad} samples ({pad / self.sample_rate * 1000:.1f} ms at {self.sample_rate} Hz)"
            )
