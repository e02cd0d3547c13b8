"""ATST-Frame front-end: 64-bin HTK mel power spectrogram in dB, clipped and min-max scaled (plain torch).

Pipeline for a waveform batch (B, N) at 16 kHz (the numerics of torchaudio's ``MelSpectrogram`` and
``AmplitudeToDB`` that ATST was trained with):

1. STFT: periodic Hann window of 1024 samples, ``n_fft`` 1024, hop 160 (10 ms), centred frames with
   reflection padding of 512 samples, so ``T = N // 160 + 1``; power ``|X|^2``;
2. triangular filters on the HTK mel scale ``2595 log10(1 + f / 700)`` from 60 to 7800 Hz, unnormalised;
3. ``10 log10(max(x, 1e-10))``, floored at 80 dB below the clip's maximum (per clip: upstream takes the
   maximum over the whole batch, which is the same for a batch of one), then clipped to [-50, 80] dB;
4. min-max scaling ``2 (x - min) / (max - min) - 1`` with the constants min -79.6482, max 50.6842.
"""

from __future__ import annotations

import math

import torch

from ptsed.frontends.base import no_autocast
from ptsed.frontends.centred import CentredSTFTFrontend


def htk_mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Triangular filters equally spaced on the HTK mel scale, peak 1 (torchaudio ``melscale_fbanks``
    with ``norm=None, mel_scale="htk"``), computed in float32 in the same order.

    Returns:
        (n_freqs, n_mels) float32 weights; ``n_freqs`` bins span 0 .. ``sample_rate / 2`` Hz.
    """
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_min = 2595.0 * math.log10(1.0 + f_min / 700.0)
    m_max = 2595.0 * math.log10(1.0 + f_max / 700.0)
    f_pts = 700.0 * (10.0 ** (torch.linspace(m_min, m_max, n_mels + 2) / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]  # (n_mels + 1,)
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # (n_freqs, n_mels + 2)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0)


class ATSTMel(CentredSTFTFrontend):
    """ATST-Frame's front-end: waveform (B, N) -> scaled dB mel spectrogram (B, 1, 64, N // 160 + 1).

    The window and the filterbank are non-persistent buffers (upstream's released files do not hold them).

    Args:
        sample_rate: input sample rate in Hz.
        n_fft: FFT size (= window length) in samples.
        hop_length: hop in samples.
        n_mels: number of mel bins F.
        f_min, f_max: mel range in Hz.
        top_db: dynamic range kept below each clip's maximum, in dB.
        clamp_db: (low, high) clipping of the dB values.
        scale_min, scale_max: dB values mapped to -1 and 1.
    """

    def __init__(
        self,
        sample_rate: int = 16_000,
        n_fft: int = 1024,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 60.0,
        f_max: float = 7800.0,
        top_db: float = 80.0,
        clamp_db: tuple[float, float] = (-50.0, 80.0),
        scale_min: float = -79.6482,
        scale_max: float = 50.6842,
    ) -> None:
        super().__init__(sample_rate, n_fft, hop_length, n_mels)
        self.top_db = top_db
        self.clamp_db = clamp_db
        self.scale_min = scale_min
        self.scale_max = scale_max
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        fb = htk_mel_filterbank(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate)
        self.register_buffer("fb", fb, persistent=False)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, dB (top {self.top_db:g}, clamp {self.clamp_db}), "
            f"min-max scaling [{self.scale_min:g}, {self.scale_max:g}] -> [-1, 1]"
        )

    def mel_power(self, waveform: torch.Tensor) -> torch.Tensor:
        """waveform (B, N) -> mel power spectrogram (B, n_mels, T)."""
        self.check_length(waveform.shape[-1])
        spec = torch.stft(
            waveform.to(self.window.dtype),
            self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.abs().pow(2.0)  # (B, n_fft // 2 + 1, T)
        return torch.matmul(power.transpose(-1, -2), self.fb).transpose(-1, -2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """waveform (B, N) at 16 kHz -> features (B, 1, 64, T) in [-1, 1]-ish (dB mapped linearly).

        Runs in float32 with autocast off, as upstream does."""
        with no_autocast(waveform.device.type):
            db = 10.0 * torch.log10(torch.clamp(self.mel_power(waveform), min=1e-10))
            floor = db.amax(dim=(-2, -1), keepdim=True) - self.top_db  # per clip
            db = torch.maximum(db, floor).clamp(min=self.clamp_db[0], max=self.clamp_db[1])
            lo, hi = self.scale_min, self.scale_max
            return ((db - lo) / (hi - lo) * 2.0 - 1.0).unsqueeze(1)
