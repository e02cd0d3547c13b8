"""Log-mel front-end of fPaSST and the frame-level MobileNets (plain torch, no torchaudio).

Pipeline for a waveform batch (B, N) at 16 kHz:

1. pre-emphasis ``y[n] = x[n + 1] - 0.97 x[n]`` (a 2-tap convolution without padding: N - 1 samples);
2. STFT with ``n_fft`` 512, a Hann window of 400 samples (centred in the 512-point frame), hop 160
   (10 ms), centre padding by reflection;
3. power spectrum ``re^2 + im^2``;
4. Kaldi-style triangular mel filterbank (128 bins, ``fmin`` 0 Hz, ``fmax`` 7 kHz in eval mode);
5. ``log(max(x, 1e-7))`` and the fast normalisation ``(x + 4.5) / 5``.

In training mode the mel range is jittered (``fmin + U{0..fmin_aug_range-1}``,
``fmax + fmax_aug_range // 2 - U{0..fmax_aug_range-1}``) and optional frequency / time masks are applied
(one mask interval per batch). In eval mode the front-end is deterministic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ptsed.core.errors import AudioError, ConfigError
from ptsed.frontends.base import Frontend, no_autocast
from ptsed.frontends.kaldi import kaldi_mel_banks

LOG_FLOOR = 1e-7
"""Power floor before the logarithm."""


class MelSTFT(Frontend):
    """Pre-emphasis + STFT + Kaldi mel filterbank + log + fast normalisation.

    Args:
        n_mels: number of mel bins F.
        sample_rate: input sample rate in Hz.
        n_fft: FFT size in samples.
        win_length: Hann window length in samples (centred in the FFT frame).
        hop_length: hop in samples.
        fmin: lowest mel edge in Hz (eval mode).
        fmax: highest mel edge in Hz; ``None`` means ``sample_rate // 2 - fmax_aug_range // 2``.
        fmin_aug_range: training-mode jitter range of ``fmin`` in Hz (1: none).
        fmax_aug_range: training-mode jitter range of ``fmax`` in Hz (1: none).
        periodic_window: periodic (True, fPaSST) or symmetric (False, frame_mn) Hann window.
        preemphasis: pre-emphasis coefficient (0: none).
        freqm: maximal frequency-mask width in bins (training only; 0: none).
        timem: maximal time-mask width in frames (training only; 0: none).
        fast_norm: apply ``(x + 4.5) / 5``.

    Input (B, N) float waveforms; output (B, 1, n_mels, 1 + (N - 1) // hop_length) features.
    """

    def __init__(
        self,
        n_mels: int = 128,
        sample_rate: int = 16_000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        fmin: float = 0.0,
        fmax: float | None = None,
        fmin_aug_range: int = 10,
        fmax_aug_range: int = 2000,
        periodic_window: bool = True,
        preemphasis: float = 0.97,
        freqm: int = 0,
        timem: int = 0,
        fast_norm: bool = True,
    ) -> None:
        super().__init__()
        if fmin_aug_range < 1 or fmax_aug_range < 1:
            raise ConfigError("fmin_aug_range and fmax_aug_range must be >= 1 (1 means no jitter)")
        if win_length > n_fft:
            raise ConfigError(f"win_length {win_length} exceeds n_fft {n_fft}")
        self.sample_rate = sample_rate
        self.n_bins = n_mels
        self.hop_s = hop_length / sample_rate
        self.n_mels = n_mels
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.fmin = float(fmin)
        self.fmax = float(fmax if fmax is not None else sample_rate // 2 - fmax_aug_range // 2)
        self.fmin_aug_range = fmin_aug_range
        self.fmax_aug_range = fmax_aug_range
        self.preemphasis = preemphasis
        self.freqm = freqm
        self.timem = timem
        self.fast_norm = fast_norm
        self.register_buffer("window", torch.hann_window(win_length, periodic=periodic_window), persistent=False)
        self.register_buffer("preemphasis_kernel", torch.tensor([[[-preemphasis, 1.0]]]), persistent=False)
        self.register_buffer("mel_basis", self._banks(self.fmin, self.fmax), persistent=False)

    def extra_repr(self) -> str:
        return (
            f"n_mels={self.n_mels}, n_fft={self.n_fft}, win_length={self.win_length}, hop={self.hop_length}, "
            f"fmin={self.fmin:g}, fmax={self.fmax:g}, preemphasis={self.preemphasis}, fast_norm={self.fast_norm}"
        )

    def num_frames(self, num_samples: int) -> int:
        """Number of feature frames for ``num_samples`` input samples (1000 for 160000)."""
        n = num_samples - 1 if self.preemphasis else num_samples
        return 1 + n // self.hop_length

    def _banks(self, fmin: float, fmax: float) -> torch.Tensor:
        """Kaldi mel filters (n_mels, n_fft // 2 + 1) for the range [fmin, fmax] Hz, float32."""
        if not 0.0 <= fmin < fmax <= self.sample_rate / 2:
            raise ConfigError(f"bad mel range [{fmin}, {fmax}] Hz for sample rate {self.sample_rate} Hz")
        return kaldi_mel_banks(self.n_mels, self.n_fft, self.sample_rate, fmin, fmax).T.contiguous()

    def _mel_basis(self) -> torch.Tensor:
        if not self.training or (self.fmin_aug_range == 1 and self.fmax_aug_range == 1):
            return self.mel_basis
        fmin = self.fmin + int(torch.randint(self.fmin_aug_range, (1,)))
        fmax = self.fmax + self.fmax_aug_range // 2 - int(torch.randint(self.fmax_aug_range, (1,)))
        return self._banks(fmin, fmax).to(self.mel_basis.device)

    @staticmethod
    def _mask(x: torch.Tensor, width: int, dim: int) -> torch.Tensor:
        """Zero one random interval of at most ``width`` bins along ``dim`` (same for the whole batch)."""
        size = x.shape[dim]
        value = float(torch.rand(1)) * width
        start = int(float(torch.rand(1)) * (size - value))
        stop = start + int(value)
        if stop <= start:
            return x
        keep = torch.ones(size, dtype=torch.bool, device=x.device)
        keep[start:stop] = False
        shape = [1] * x.dim()
        shape[dim] = size
        return x.masked_fill(~keep.view(shape), 0.0)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """waveform (B, N) -> log-mel features (B, 1, n_mels, 1 + (N - 1) // hop_length), float32.

        Runs in the module's dtype (float32) with autocast off, as upstream does under mixed precision.
        """
        if waveform.dim() != 2:
            raise ValueError(f"expected a waveform batch (B, N), got shape {tuple(waveform.shape)}")
        needed = self.n_fft // 2 + 1 + int(bool(self.preemphasis))
        if waveform.shape[-1] < needed:
            raise AudioError(
                f"input of {waveform.shape[-1]} samples is too short for a {self.n_fft}-point STFT with "
                f"centre padding (needs at least {needed} samples)"
            )
        with no_autocast(waveform.device.type):
            x = waveform.to(self.window.dtype)
            if self.preemphasis:
                x = F.conv1d(x.unsqueeze(1), self.preemphasis_kernel).squeeze(1)
            spec = torch.stft(
                x,
                self.n_fft,
                hop_length=self.hop_length,
                win_length=self.win_length,
                window=self.window,
                center=True,
                pad_mode="reflect",
                normalized=False,
                return_complex=True,
            )
            power = torch.view_as_real(spec).pow(2).sum(-1)  # (B, n_fft // 2 + 1, T)
            mel = torch.matmul(self._mel_basis().to(power.dtype), power)
            mel = torch.log(torch.clamp(mel, min=LOG_FLOOR)).unsqueeze(1)
            if self.training:
                if self.freqm:
                    mel = self._mask(mel, self.freqm, 2)
                if self.timem:
                    mel = self._mask(mel, self.timem, 3)
            if self.fast_norm:
                mel = (mel + 4.5) / 5.0
        return mel
