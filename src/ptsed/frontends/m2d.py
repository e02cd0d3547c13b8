"""M2D front-end: 80-bin Slaney mel power spectrogram, natural log, fixed normalisation (plain torch).

M2D was trained with nnAudio's ``MelSpectrogram``, whose STFT is a strided 1-D convolution with windowed
Fourier kernels. This module builds the same kernels (same float64 formulas, same float32 rounding) and
runs the same convolution, so the features agree with upstream to float32 rounding. For a waveform batch
(B, N) at 16 kHz:

1. reflection padding by 200 samples on both sides (centred frames), ``T = N // 160 + 1``;
2. STFT as ``conv1d`` with kernels ``hann[n] cos(2 pi k n / 400)`` and ``hann[n] sin(2 pi k n / 400)``,
   k = 0..200, stride 160 (10 ms); magnitude ``sqrt(re^2 + im^2)``, squared (power 2);
3. Slaney-style mel filterbank (librosa's ``filters.mel`` with ``htk=False, norm=1``), 80 bins,
   50 Hz .. 8 kHz;
4. ``log(x + eps)`` with float32 eps, then ``(x + 7.1) / 4.2``.

The kernels are persistent buffers under nnAudio's names (``to_spec.mel_basis``, ``to_spec.stft.wsin``,
``to_spec.stft.wcos``, ``to_spec.stft.window_mask``), so an export in upstream's layout carries them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ptsed.frontends.base import no_autocast
from ptsed.frontends.centred import CentredSTFTFrontend

M2D_MEAN = -7.1
"""Mean of M2D's log-mel features (the constant upstream normalises with; ``norm_stats`` is never read)."""
M2D_STD = 4.2
"""Standard deviation of M2D's log-mel features."""


def periodic_hann(length: int) -> np.ndarray:
    """Periodic Hann window (scipy ``get_window("hann", length, fftbins=True)``), float64."""
    fac = np.linspace(-np.pi, np.pi, length + 1)
    w = np.zeros(length + 1)
    w += 0.5 * np.cos(0 * fac)
    w += 0.5 * np.cos(1 * fac)
    return w[:length]


def fourier_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sine and cosine kernels (n_fft // 2 + 1, 1, n_fft) and the window (n_fft,), float32, as nnAudio
    builds them (kernels and window rounded to float32 separately, windowed in float32 later)."""
    s = np.arange(0, n_fft, 1.0)
    k = np.arange(n_fft // 2 + 1)[:, None]
    phase = 2 * np.pi * k * s / n_fft
    sin = np.sin(phase)[:, None, :].astype(np.float32)
    cos = np.cos(phase)[:, None, :].astype(np.float32)
    return sin, cos, periodic_hann(n_fft).astype(np.float32)


def _hz_to_slaney_mel(freq: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    mels = freq / f_sp
    min_log_mel = 1000.0 / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = freq >= 1000.0
    mels[log_t] = min_log_mel + np.log(freq[log_t] / 1000.0) / logstep
    return mels


def _slaney_mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_mel = 1000.0 / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    freqs[log_t] = 1000.0 * np.exp(logstep * (mels[log_t] - min_log_mel))
    return freqs


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Area-normalised triangular filters on the Slaney mel scale (librosa 0.7 ``filters.mel`` with
    ``htk=False, norm=1``), float32 of shape (n_mels, n_fft // 2 + 1)."""
    fft_freqs = np.linspace(0, float(sample_rate) / 2, int(1 + n_fft // 2), endpoint=True)
    lo, hi = _hz_to_slaney_mel(np.array([float(f_min), float(f_max)]))
    mel_f = _slaney_mel_to_hz(np.linspace(lo, hi, n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)).astype(np.float32)
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    return (weights * enorm[:, None]).astype(np.float32)


class _ConvSTFT(nn.Module):
    """Holds nnAudio's STFT buffers: ``wsin``/``wcos`` (n_fft // 2 + 1, 1, n_fft), ``window_mask`` (1, n_fft, 1)."""

    def __init__(self, n_fft: int) -> None:
        super().__init__()
        sin, cos, window = fourier_kernels(n_fft)
        win = torch.from_numpy(window)
        self.register_buffer("wsin", torch.from_numpy(sin) * win)
        self.register_buffer("wcos", torch.from_numpy(cos) * win)
        self.register_buffer("window_mask", win[None, :, None].clone())


class _MelBuffers(nn.Module):
    def __init__(self, sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> None:
        super().__init__()
        self.stft = _ConvSTFT(n_fft)
        self.register_buffer(
            "mel_basis", torch.from_numpy(slaney_mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max))
        )


class M2DMel(CentredSTFTFrontend):
    """M2D's front-end: waveform (B, N) -> normalised log-mel (B, 1, 80, N // 160 + 1).

    Args:
        sample_rate: input sample rate in Hz.
        n_fft: FFT size (= window length) in samples.
        hop_length: hop in samples.
        n_mels: number of mel bins F.
        f_min, f_max: mel range in Hz.
        mean, std: normalisation ``(log_mel - mean) / std``.
    """

    def __init__(
        self,
        sample_rate: int = 16_000,
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 80,
        f_min: float = 50.0,
        f_max: float = 8000.0,
        mean: float = M2D_MEAN,
        std: float = M2D_STD,
    ) -> None:
        super().__init__(sample_rate, n_fft, hop_length, n_mels)
        self.mean = mean
        self.std = std
        self.eps = float(torch.finfo(torch.float32).eps)
        self.to_spec = _MelBuffers(sample_rate, n_fft, n_mels, f_min, f_max)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, log, normalisation (x - {self.mean:g}) / {self.std:g}"

    def mel_power(self, waveform: torch.Tensor) -> torch.Tensor:
        """waveform (B, N) -> mel power spectrogram (B, n_mels, T)."""
        self.check_length(waveform.shape[-1])
        pad = self.n_fft // 2
        stft = self.to_spec.stft
        x = F.pad(waveform.to(stft.wcos.dtype).unsqueeze(1), (pad, pad), mode="reflect")
        kernels = torch.cat([stft.wcos, stft.wsin])  # (2 * bins, 1, n_fft)
        re, im = F.conv1d(x, kernels, stride=self.hop_length).chunk(2, dim=1)
        power = torch.sqrt(re.pow(2) + im.pow(2)) ** 2
        return torch.matmul(self.to_spec.mel_basis, power)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """waveform (B, N) at 16 kHz -> features (B, 1, 80, T); float32 with autocast off, as upstream."""
        with no_autocast(waveform.device.type):
            x = (self.mel_power(waveform) + self.eps).log()
            return ((x - self.mean) / self.std).unsqueeze(1)
