"""Kaldi-compatible log-mel filterbank ("fbank") in plain torch, batched.

The numerics follow Kaldi's ``compute-fbank-feats`` as torchaudio's ``compliance.kaldi.fbank`` implements
them (the reference that BEATs and ASiT were trained with), for the options those models use:

1. optional scaling of the waveform (BEATs multiplies by 2**15 to reach the int16 range) and removal of the
   clip mean (ASiT);
2. framing with ``snip_edges``: only frames that fit completely, ``T = 1 + (N - W) // H`` with window
   ``W = int(sr * frame_length_ms * 0.001)`` and hop ``H = int(sr * frame_shift_ms * 0.001)`` samples
   (400 and 160 at 16 kHz);
3. per frame: DC removal, pre-emphasis ``y[j] = x[j] - a x[j-1]`` with ``x[-1] = x[0]``, window,
   zero-padding to the next power of two (512), power spectrum ``|rfft|**2``;
4. triangular filters that are linear on Kaldi's mel scale ``1127 ln(1 + f / 700)`` between ``low_freq``
   and ``high_freq`` (edges computed in float32, exactly as the reference builds them);
5. ``log(max(energy, float32 eps))``;
6. fixed normalisation ``(fbank - mean) / (std_factor * std)``.

Every clip of a batch is processed independently (no statistics cross clips), in one vectorised pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch

from ptsed.core.errors import AudioError, ConfigError
from ptsed.frontends.base import Frontend, no_autocast

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)
"""The floor of the filterbank energies before the log (Kaldi's ``std::numeric_limits<float>::epsilon()``)."""

WindowType = Literal["povey", "hanning", "hamming", "rectangular"]
Layout = Literal["freq_time", "time_freq"]


@dataclass(frozen=True)
class KaldiFbankConfig:
    """Options of :class:`KaldiFbank`.

    Attributes:
        sample_rate: input sample rate in Hz.
        n_mels: number of mel filters F.
        frame_length_ms: analysis window length in milliseconds (25 ms = 400 samples at 16 kHz).
        frame_shift_ms: hop between frames in milliseconds (10 ms = 160 samples at 16 kHz).
        window: window function; ``"povey"`` (Kaldi's default, Hann**0.85), ``"hanning"``, ``"hamming"``
            or ``"rectangular"``, all symmetric as in Kaldi.
        preemphasis: pre-emphasis coefficient (0 disables it).
        remove_dc_offset: subtract each frame's mean before pre-emphasis.
        low_freq: lower edge of the first mel filter in Hz.
        high_freq: upper edge of the last mel filter in Hz; values <= 0 are offsets from Nyquist.
        round_to_power_of_two: zero-pad each frame to the next power of two before the FFT.
        input_scale: factor applied to the waveform first (BEATs: 2**15, the int16 range).
        subtract_clip_mean: subtract the mean of each whole clip before framing (ASiT).
        mean: normalisation offset subtracted from the log filterbank.
        std: normalisation scale; the output is ``(fbank - mean) / (std_factor * std)``.
        std_factor: multiplier of ``std`` (2 for both BEATs and ASiT, the AST convention).
        layout: ``"freq_time"`` gives (B, 1, F, T) (the ptsed convention), ``"time_freq"`` (B, 1, T, F).
    """

    sample_rate: int = 16_000
    n_mels: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window: WindowType = "povey"
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    low_freq: float = 20.0
    high_freq: float = 0.0
    round_to_power_of_two: bool = True
    input_scale: float = 1.0
    subtract_clip_mean: bool = False
    mean: float = 0.0
    std: float = 0.5
    std_factor: float = 2.0
    layout: Layout = "freq_time"

    @property
    def window_samples(self) -> int:
        """Window length W in samples (Kaldi truncates to an integer)."""
        return int(float(self.sample_rate) * self.frame_length_ms * 0.001)

    @property
    def hop_samples(self) -> int:
        """Hop H in samples (Kaldi truncates to an integer)."""
        return int(float(self.sample_rate) * self.frame_shift_ms * 0.001)

    @property
    def n_fft(self) -> int:
        """FFT size: W rounded up to a power of two, or W itself."""
        w = self.window_samples
        return 1 << (w - 1).bit_length() if self.round_to_power_of_two else w

    def validate(self) -> None:
        """Raise :class:`ConfigError` for options the reference would reject."""
        nyquist = 0.5 * self.sample_rate
        high = self.high_freq + nyquist if self.high_freq <= 0 else self.high_freq
        problems = []
        if self.window_samples < 2:
            problems.append(f"frame_length_ms={self.frame_length_ms} gives fewer than 2 samples")
        if self.hop_samples < 1:
            problems.append(f"frame_shift_ms={self.frame_shift_ms} gives a hop of 0 samples")
        if self.n_fft % 2:
            problems.append(f"the FFT size {self.n_fft} must be even (use round_to_power_of_two)")
        if self.n_mels <= 3:
            problems.append(f"n_mels={self.n_mels} must be larger than 3")
        if not (0.0 <= self.low_freq < nyquist and 0.0 < high <= nyquist and self.low_freq < high):
            problems.append(f"mel range [{self.low_freq}, {high}] Hz does not fit below Nyquist {nyquist} Hz")
        if not 0.0 <= self.preemphasis <= 1.0:
            problems.append(f"preemphasis={self.preemphasis} must be in [0, 1]")
        if self.window not in ("povey", "hanning", "hamming", "rectangular"):
            problems.append(f"unknown window {self.window!r}")
        if self.layout not in ("freq_time", "time_freq"):
            problems.append(f"unknown layout {self.layout!r}")
        if self.std * self.std_factor == 0:
            problems.append("std * std_factor must not be 0")
        if problems:
            raise ConfigError("invalid Kaldi fbank options: " + "; ".join(problems))


BEATS_FBANK = KaldiFbankConfig(input_scale=2.0**15, mean=15.41663, std=6.55582)
"""BEATs: torchaudio defaults (Povey window) on the int16-scaled waveform, 128 bins."""

ASIT_FBANK = KaldiFbankConfig(window="hanning", subtract_clip_mean=True, mean=-4.2677393, std=4.5689974)
"""ASiT: Hann window, clip mean removed, waveform in [-1, 1], 128 bins."""


def kaldi_mel_banks(
    n_mels: int, n_fft: int, sample_rate: float, low_freq: float = 20.0, high_freq: float = 0.0
) -> torch.Tensor:
    """Kaldi's triangular mel filters as a matrix (n_fft // 2 + 1, n_mels), float32.

    Filter ``i`` rises linearly on the mel scale from edge ``i`` to ``i + 1`` and falls to ``i + 2``; the
    ``n_mels + 2`` edges divide ``[mel(low_freq), mel(high_freq)]`` evenly. The Nyquist bin gets weight 0.
    The arithmetic runs in float32 in the reference's order, so the matrix is bit-identical to it.
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    mel_low = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high_freq / 700.0)
    delta = (mel_high - mel_low) / (n_mels + 1)
    f32 = torch.float32
    idx = torch.arange(n_mels, dtype=f32).unsqueeze(0)  # (1, n_mels)
    left = mel_low + idx * delta
    center = mel_low + (idx + 1.0) * delta
    right = mel_low + (idx + 2.0) * delta
    bin_hz = (sample_rate / n_fft) * torch.arange(n_fft // 2, dtype=f32)
    mel = (1.0 + bin_hz / 700.0).log().mul(1127.0).unsqueeze(1)  # (n_fft // 2, 1)
    rising = (mel - left) / (center - left)
    falling = (right - mel) / (right - center)
    banks = torch.minimum(rising, falling).clamp_min(0.0)
    return torch.cat([banks, banks.new_zeros(1, n_mels)], dim=0)


def kaldi_window(kind: str, length: int) -> torch.Tensor:
    """Symmetric analysis window of ``length`` samples, float32."""
    if kind == "rectangular":
        return torch.ones(length)
    if kind == "hamming":
        return torch.hamming_window(length, periodic=False, alpha=0.54, beta=0.46)
    hann = torch.hann_window(length, periodic=False)
    return hann.pow(0.85) if kind == "povey" else hann


class KaldiFbank(Frontend):
    """Kaldi fbank front-end: waveform (B, N) -> normalised log-mel features (B, 1, F, T).

    ``T = 1 + (N - W) // H`` (see :meth:`num_frames`); inputs shorter than one window raise
    :class:`~ptsed.core.errors.AudioError`. The window and the filterbank are non-persistent buffers:
    they follow ``.to(device)`` but are not part of the state dict.
    """

    def __init__(self, config: KaldiFbankConfig | None = None, **overrides) -> None:
        super().__init__()
        config = replace(config or KaldiFbankConfig(), **overrides)
        config.validate()
        self.config = config
        self.sample_rate = config.sample_rate
        self.hop_s = config.hop_samples / config.sample_rate
        self.n_bins = config.n_mels
        self.register_buffer("window", kaldi_window(config.window, config.window_samples), persistent=False)
        self.register_buffer(
            "mel_banks",
            kaldi_mel_banks(config.n_mels, config.n_fft, config.sample_rate, config.low_freq, config.high_freq),
            persistent=False,
        )

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"sample_rate={c.sample_rate}, n_mels={c.n_mels}, window={c.window_samples} ({c.window}), "
            f"hop={c.hop_samples}, n_fft={c.n_fft}, layout={c.layout}, "
            f"normalisation (x - {c.mean:g}) / ({c.std_factor:g} * {c.std:g})"
        )

    def num_frames(self, num_samples: int) -> int:
        """``1 + (N - W) // H`` frames for N >= W samples; 0 for shorter inputs (``forward`` rejects those)."""
        w, h = self.config.window_samples, self.config.hop_samples
        return 0 if num_samples < w else 1 + (num_samples - w) // h

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Un-normalised Kaldi log filterbank: waveform (B, N) -> (B, T, F), natural log of power."""
        c = self.config
        if waveform.dim() != 2:
            raise ValueError(f"expected a waveform batch of shape (B, N), got {tuple(waveform.shape)}")
        n = waveform.shape[-1]
        if n < c.window_samples:
            raise AudioError(
                f"input of {n} samples is shorter than one {c.frame_length_ms:g} ms analysis window "
                f"({c.window_samples} samples at {c.sample_rate} Hz)"
            )
        # the reference runs in float32 even under mixed precision: keep autocast out of the FFT and the log
        with no_autocast(waveform.device.type):
            x = waveform.to(self.window.dtype)
            if c.input_scale != 1.0:
                x = x * c.input_scale
            if c.subtract_clip_mean:
                x = x - x.mean(dim=-1, keepdim=True)
            frames = x.unfold(-1, c.window_samples, c.hop_samples)  # (B, T, W), a view
            if c.remove_dc_offset:
                frames = frames - frames.mean(dim=-1, keepdim=True)
            if c.preemphasis != 0.0:
                previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
                frames = frames - c.preemphasis * previous
            frames = frames * self.window
            power = torch.fft.rfft(frames, n=c.n_fft).abs().pow(2.0)  # (B, T, n_fft // 2 + 1)
            mel = torch.matmul(power, self.mel_banks)  # (B, T, F)
            return mel.clamp_min(FLOAT32_EPS).log()

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """waveform (B, N) at ``sample_rate`` -> features (B, 1, F, T) (or (B, 1, T, F), see ``layout``)."""
        c = self.config
        fbank = (self.log_mel(waveform) - c.mean) / (c.std_factor * c.std)
        fbank = fbank.unsqueeze(1)  # (B, 1, T, F)
        return fbank.transpose(2, 3) if c.layout == "freq_time" else fbank
