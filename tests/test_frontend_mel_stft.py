"""The pre-emphasis / STFT / Kaldi-mel front-end of fPaSST and frame_mn (``ptsed.frontends.mel_stft``).

Bit-exactness against upstream's features is checked by ``test_parity.py``; here the pipeline is checked
against an independent float64 numpy computation, plus frame counts, errors and the training-mode
augmentations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ptsed.core.errors import AudioError, ConfigError
from ptsed.frontends.mel_stft import MelSTFT


def _numpy_reference(wave: np.ndarray, periodic: bool, fmin: float = 0.0, fmax: float = 7000.0) -> np.ndarray:
    """Float64 log-mel of one waveform, written from the formulas (no torch), (F, T)."""
    sr, n_fft, win, hop, n_mels = 16000, 512, 400, 160, 128
    x = wave[1:] - 0.97 * wave[:-1]
    x = np.pad(x, n_fft // 2, mode="reflect")
    denom = win if periodic else win - 1
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / denom)
    lpad = (n_fft - win) // 2
    window = np.pad(window, (lpad, n_fft - win - lpad))
    n_frames = 1 + (len(x) - n_fft) // hop
    frames = np.stack([x[i * hop : i * hop + n_fft] for i in range(n_frames)]) * window
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2  # (T, 257)

    def mel(f: np.ndarray | float) -> np.ndarray:
        return 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)

    edges = mel(fmin) + np.arange(n_mels + 2) * (mel(fmax) - mel(fmin)) / (n_mels + 1)
    fft_mel = mel(np.arange(n_fft // 2) * sr / n_fft)
    banks = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        up = (fft_mel - edges[m]) / (edges[m + 1] - edges[m])
        down = (edges[m + 2] - fft_mel) / (edges[m + 2] - edges[m + 1])
        banks[m, :-1] = np.maximum(0.0, np.minimum(up, down))
    return (np.log(np.maximum(banks @ power.T, 1e-7)) + 4.5) / 5.0


@pytest.fixture(scope="module")
def noisy() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.arange(24_000) / 16_000
    tone = 0.3 * torch.sin(2 * math.pi * 1000 * t)
    return (tone + 0.05 * torch.randn(24_000, generator=g)).unsqueeze(0)


@pytest.mark.parametrize("periodic", [True, False])
def test_matches_float64_formula(noisy: torch.Tensor, periodic: bool) -> None:
    fe = MelSTFT(periodic_window=periodic).eval()
    with torch.no_grad():
        ours = fe(noisy)[0, 0].double().numpy()
    ref = _numpy_reference(noisy[0].double().numpy(), periodic)
    assert ours.shape == ref.shape == (128, fe.num_frames(noisy.shape[-1]))
    # float32 vs float64 rounding only (a wrong window or mel range moves bins by > 0.1)
    assert np.abs(ours - ref).max() < 5e-4


def test_window_choice_matters(noisy: torch.Tensor) -> None:
    with torch.no_grad():
        a = MelSTFT(periodic_window=True)(noisy)
        b = MelSTFT(periodic_window=False)(noisy)
    assert a.shape == b.shape and not torch.equal(a, b)


@pytest.mark.parametrize("preemphasis", [0.97, 0.0])
def test_num_frames_closed_form(preemphasis: float) -> None:
    fe = MelSTFT(preemphasis=preemphasis).eval()
    lengths = list(range(258, 2300, 13)) + [3199, 3200, 3201, 3360, 3361, 160_000, 160_001, 160_160, 160_161]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n in lengths:
            out = fe(torch.randn(1, n, generator=g))
            assert out.shape[-1] == fe.num_frames(n), n
    assert fe.num_frames(160_000) == (1000 if preemphasis else 1001)


def test_errors() -> None:
    fe = MelSTFT()
    with pytest.raises(AudioError, match="too short"):
        fe(torch.zeros(1, 200))
    with pytest.raises(ValueError, match="batch"):
        fe(torch.zeros(16_000))
    with pytest.raises(ConfigError):
        MelSTFT(fmin=5000.0, fmax=4000.0)
    with pytest.raises(ConfigError):
        MelSTFT(win_length=600)


def test_buffers_not_in_state_dict_and_batch_independent(noisy: torch.Tensor) -> None:
    fe = MelSTFT().eval()
    assert fe.state_dict() == {}
    other = 10.0 * torch.flip(noisy, dims=[1])
    with torch.no_grad():
        alone = fe(noisy)
        batched = fe(torch.cat([noisy, other]))
    assert torch.allclose(batched[:1], alone, atol=1e-5)
    assert fe.n_bins == 128 and fe.hop_s == pytest.approx(0.01) and fe.fmax == 7000.0


def test_training_jitters_mel_range(noisy: torch.Tensor) -> None:
    fe = MelSTFT()
    with torch.no_grad():
        ref = fe.eval()(noisy)
        fe.train()
        torch.manual_seed(3)
        a = fe(noisy)
        torch.manual_seed(4)
        b = fe(noisy)
        torch.manual_seed(3)
        a2 = fe(noisy)
    assert torch.equal(a, a2)
    assert not torch.equal(a, b) and not torch.equal(a, ref)
    assert torch.equal(fe.eval()(noisy), ref)


def test_training_masks() -> None:
    fe = MelSTFT(freqm=20, timem=30, fmin_aug_range=1, fmax_aug_range=1)
    g = torch.Generator().manual_seed(5)
    wave = 0.1 * torch.randn(2, 32_000, generator=g)
    with torch.no_grad():
        clean = fe.eval()(wave)
        fe.train()
        masked_any = False
        for seed in range(6):
            torch.manual_seed(seed)
            out = fe(wave)
            changed = out != clean
            assert torch.all(out[changed] == 0.9), "masked bins hold log-mel 0, i.e. 0.9 after normalisation"
            rows = changed.all(dim=3, keepdim=True)  # masked mel bins
            cols = changed.all(dim=2, keepdim=True)  # masked frames
            assert torch.equal(changed, rows | cols)
            assert rows[0].sum() < 20 and cols[0].sum() < 30
            assert torch.equal(changed[0], changed[1]), "one mask interval for the whole batch"
            masked_any |= bool(changed.any())
    assert masked_any


def test_float32_under_autocast(noisy: torch.Tensor) -> None:
    fe = MelSTFT().eval()
    with torch.no_grad():
        ref = fe(noisy)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = fe(noisy)
    assert mixed.dtype == torch.float32 and torch.equal(mixed, ref)


def test_shortest_input() -> None:
    fe = MelSTFT().eval()
    assert fe(torch.randn(1, 258)).shape == (1, 1, 128, fe.num_frames(258)) == (1, 1, 128, 2)
    with pytest.raises(AudioError):
        fe(torch.randn(1, 257))
