"""Kaldi fbank front-end: reference features, an independent float64 re-derivation, frame counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conformance import fixture, read_wav, require_shared, tolerances
from ptsed.core.errors import AudioError, ConfigError
from ptsed.frontends.kaldi import ASIT_FBANK, BEATS_FBANK, KaldiFbank, KaldiFbankConfig, kaldi_mel_banks


def _numpy_fbank(wave: np.ndarray, cfg: KaldiFbankConfig) -> np.ndarray:
    """Straightforward float64 Kaldi fbank of one clip, frame by frame: (T, F), un-normalised log."""
    w, h, n_fft = cfg.window_samples, cfg.hop_samples, cfg.n_fft
    x = wave.astype(np.float64) * cfg.input_scale
    if cfg.subtract_clip_mean:
        x = x - x.mean()
    n = np.arange(w)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / (w - 1))
    win = {"povey": hann**0.85, "hanning": hann, "hamming": 0.54 - 0.46 * np.cos(2 * np.pi * n / (w - 1))}
    win["rectangular"] = np.ones(w)
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    edges = np.linspace(mel(cfg.low_freq), mel(cfg.sample_rate / 2), cfg.n_mels + 2)
    fft_mel = mel(np.arange(n_fft // 2 + 1) * cfg.sample_rate / n_fft)
    banks = np.zeros((n_fft // 2 + 1, cfg.n_mels))
    for i in range(cfg.n_mels):
        lo, c, hi = edges[i : i + 3]
        banks[:, i] = np.clip(np.minimum((fft_mel - lo) / (c - lo), (hi - fft_mel) / (hi - c)), 0, None)
    banks[-1] = 0.0
    out = []
    for t in range(1 + (len(x) - w) // h):
        fr = x[t * h : t * h + w].copy()
        fr -= fr.mean()
        fr = fr - cfg.preemphasis * np.concatenate([fr[:1], fr[:-1]])
        spec = np.abs(np.fft.rfft(fr * win[cfg.window], n=n_fft)) ** 2
        out.append(np.log(np.maximum(spec @ banks, np.finfo(np.float32).eps)))
    return np.stack(out)


@pytest.mark.parametrize("window", ["povey", "hanning", "hamming", "rectangular"])
def test_matches_independent_float64_derivation(window: str) -> None:
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(4000) + 0.3 * np.sin(np.arange(4000) * 0.3)).astype(np.float32)
    cfg = KaldiFbankConfig(window=window, input_scale=2.0**15)
    ours = KaldiFbank(cfg).log_mel(torch.from_numpy(wave)[None])[0].numpy()
    ref = _numpy_fbank(wave, cfg)
    assert ours.shape == ref.shape == (1 + (4000 - 400) // 160, 128)
    # float32 FFT rounding shows only in the few lowest-energy bins; a wrong window or filter costs ~0.5
    dev = np.abs(ours - ref)
    assert dev.max() < 2e-3 and np.quantile(dev, 0.99) < 1e-4


def test_mel_banks_shape_and_triangles() -> None:
    banks = kaldi_mel_banks(128, 512, 16000.0)
    assert banks.shape == (257, 128) and banks.dtype == torch.float32
    assert torch.all(banks[-1] == 0) and torch.all(banks >= 0) and torch.all(banks <= 1)
    # each filter is a single triangle: nonzero on a contiguous run of FFT bins; as in Kaldi, a low filter
    # narrower than the 31.25 Hz bin spacing can fall between two bins and stay empty (filter 3 here)
    empty = []
    for i in range(128):
        nz = torch.nonzero(banks[:, i]).flatten()
        if len(nz) == 0:
            empty.append(i)
        else:
            assert int(nz[-1] - nz[0]) + 1 == len(nz)
    assert empty == [3]
    # centres increase with the filter index
    peaks = banks.argmax(dim=0)[[i for i in range(128) if i not in empty]]
    assert torch.all(torch.diff(peaks) >= 0)


@pytest.mark.parametrize(("upstream", "cfg"), [("BEATs", BEATS_FBANK), ("ASIT", ASIT_FBANK)])
def test_reference_features(upstream: str, cfg: KaldiFbankConfig) -> None:
    require_shared()
    ref = fixture(upstream)["features"]
    tol = tolerances(upstream)
    ours = KaldiFbank(cfg)(read_wav()).numpy()
    assert ours.shape == ref.shape
    dev = np.abs(ours - ref)
    assert dev.max() <= tol["features"]
    assert np.quantile(dev, 0.999) <= tol["features_p999"]


def test_batch_is_per_clip_and_layouts() -> None:
    g = torch.Generator().manual_seed(1)
    wave = 0.1 * torch.randn(3, 8000, generator=g)
    wave[1] *= 0.01
    fe = KaldiFbank(BEATS_FBANK)
    batch = fe(wave)
    assert batch.shape == (3, 1, 128, 48)
    for i in range(3):
        torch.testing.assert_close(batch[i], fe(wave[i : i + 1])[0], atol=1e-5, rtol=0)
    tf = KaldiFbank(BEATS_FBANK, layout="time_freq")(wave)
    torch.testing.assert_close(tf, batch.transpose(2, 3), atol=0, rtol=0)
    # ASiT's clip mean removal makes the features invariant to a constant offset per clip
    asit = KaldiFbank(ASIT_FBANK)
    torch.testing.assert_close(asit(wave + torch.tensor([[0.5], [0.0], [-0.2]])), asit(wave), atol=1e-3, rtol=0)


@pytest.mark.parametrize("cfg", [BEATS_FBANK, KaldiFbankConfig(sample_rate=22050, frame_length_ms=20, n_mels=64)])
def test_num_frames_closed_form(cfg: KaldiFbankConfig) -> None:
    fe = KaldiFbank(cfg)
    w, h = cfg.window_samples, cfg.hop_samples
    lengths = [w, w + 1, w + h - 1, w + h, w + h + 1, 1000, 4321, 16000, 16000 + 7 * h - 1]
    for n in lengths:
        out = fe(torch.zeros(2, n) + 0.01 * torch.randn(2, n))
        assert out.shape[-1] == fe.num_frames(n) == math.floor((n - w) / h) + 1
    assert fe.num_frames(160000) == (998 if cfg == BEATS_FBANK else fe.num_frames(160000))


def test_too_short_input() -> None:
    fe = KaldiFbank(BEATS_FBANK)
    assert fe.num_frames(399) == 0 and fe.num_frames(400) == 1
    with pytest.raises(AudioError, match="shorter than one 25 ms analysis window"):
        fe(torch.zeros(1, 399))


def test_silence_is_floored_not_infinite() -> None:
    out = KaldiFbank(BEATS_FBANK).log_mel(torch.zeros(1, 1600))
    assert torch.isfinite(out).all()
    assert torch.allclose(out, torch.full_like(out, math.log(torch.finfo(torch.float32).eps)))


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="window"):
        KaldiFbank(window="blackmanish")
    with pytest.raises(ConfigError, match="mel range"):
        KaldiFbank(low_freq=9000.0)
    with pytest.raises(ConfigError, match="n_mels"):
        KaldiFbank(n_mels=2)


def test_runs_on_meta_device() -> None:
    """Shape-only runs (used for cost counting) work: no autocast or data-dependent step on ``meta``."""
    with torch.device("meta"):
        fe = KaldiFbank(BEATS_FBANK)
        out = fe(torch.zeros(2, 16000))
    assert out.device.type == "meta" and out.shape == (2, 1, 128, fe.num_frames(16000))
