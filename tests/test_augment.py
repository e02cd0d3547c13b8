"""Training augmentations: upstream's definitions and defaults, label consistency, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptsed.train import augment as A
from train_fixtures import single_thread

_one_thread = pytest.fixture(autouse=True)(single_thread)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _feats(b: int = 4, f: int = 32, t: int = 400, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 1, f, t, generator=torch.Generator().manual_seed(seed))


def test_defaults_are_upstreams_audioset_strong_recipe():
    c = A.AugmentConfig()
    assert (c.wavmix_p, c.wavmix_beta) == (0.8, 2.0)
    assert (c.freq_warp_p, c.filter_augment_p, c.frame_shift_range) == (0.8, 0.8, 0.125)
    assert (c.mixup_p, c.mixup_alpha, c.mixstyle_p, c.mixstyle_alpha) == (0.3, 0.2, 0.3, 0.4)
    assert c.max_time_mask_size == 0.0
    off = A.AugmentConfig.none()
    x = _feats()
    y = torch.rand(4, 3, 100)
    aug = A.Augmenter(off)
    feats, (y2,), _ = aug.features(x, [y])
    wave, (y3,), _ = aug.waveform(torch.randn(4, 800), [y])
    assert torch.equal(feats, x) and torch.equal(y2, y) and torch.equal(y3, y)


def test_wavmix_mixes_waveforms_and_targets_with_the_same_weight():
    wave = torch.randn(6, 1000) + 3.0  # non-zero mean, removed by mixing
    y = torch.zeros(6, 2, 10)
    y[torch.arange(6), 0] = torch.arange(6, dtype=torch.float).unsqueeze(1)
    mask = torch.tensor([True, True, True, False, True, True])
    out, (ym,), (m,) = A.wavmix(wave, [y], _rng(1), p=1.0, beta=2.0, masks=[mask])
    assert torch.allclose(out.mean(-1), torch.zeros(6), atol=1e-5)
    # recover each weight from the targets and check the waveform agrees
    rng = _rng(1)
    chosen = rng.random(6) < 1.0
    partner = rng.integers(0, 6, size=6)
    lam = rng.beta(2.0, 2.0, size=6)
    lam = np.maximum(lam, 1 - lam)
    assert chosen.all() and (lam >= 0.5).all()
    x0 = wave - wave.mean(-1, keepdim=True)
    for i in range(6):
        expect = lam[i] * x0[i] + (1 - lam[i]) * x0[partner[i]]
        assert torch.allclose(out[i], expect - expect.mean(), atol=1e-5)
        assert torch.allclose(ym[i, 0], torch.tensor(lam[i] * i + (1 - lam[i]) * partner[i], dtype=torch.float))
        assert bool(m[i]) == bool(mask[i] and mask[partner[i]])


def test_wavmix_probability_zero_and_one():
    wave, y = torch.randn(8, 100), torch.rand(8, 3, 5)
    out, (y2,), _ = A.wavmix(wave, [y], _rng(0), p=0.0)
    assert torch.equal(out, wave) and torch.equal(y2, y)
    fractions = []
    for seed in range(20):
        out, _, _ = A.wavmix(wave, [y], _rng(seed), p=0.5)
        fractions.append((out - wave).abs().amax(-1).gt(1e-6).float().mean().item())
    assert 0.3 < float(np.mean(fractions)) < 0.7


def test_frame_shift_keeps_labels_aligned_with_features():
    b, t_feat, t = 5, 400, 100
    feats = torch.zeros(b, 1, 8, t_feat)
    labels = torch.zeros(b, 1, t)
    for i in range(b):  # an "event" at label frames 40..50 <-> feature frames 160..200
        feats[i, :, :, 160:200] = 1.0
        labels[i, :, 40:50] = 1.0
    out, (y,) = A.frame_shift(feats, [labels], _rng(3), shift_range=0.125)
    for i in range(b):
        on_feat = int(torch.nonzero(out[i, 0, 0] > 0)[0]) if out[i, 0, 0, 0] == 0 else None
        on_lab = int(torch.nonzero(y[i, 0] > 0)[0]) if y[i, 0, 0] == 0 else None
        if on_feat is not None and on_lab is not None:
            assert abs(on_feat / 4 - on_lab) <= 0.5 + 1e-9
        assert y[i].sum() == labels[i].sum() and out[i].sum() == feats[i].sum()  # circular roll
    shifts = [int((torch.nonzero(out[i, 0, 0])[0] - 160).item()) for i in range(b)]
    assert len(set(shifts)) > 1  # per-clip shifts


def test_frame_shift_std_follows_shift_range():
    feats = torch.arange(1000.0).view(1, 1, 1, 1000).repeat(200, 1, 1, 1)
    out, _ = A.frame_shift(feats, [], _rng(0), shift_range=0.125)
    shifts = ((out[:, 0, 0, 0] * -1) % 1000).numpy()
    shifts = np.where(shifts > 500, shifts - 1000, shifts)
    assert 95 < shifts.std() < 155  # std 125 feature frames


def test_mixup_weights_and_clipping():
    x = _feats(b=6)
    y = torch.rand(6, 3, 100)
    mask = torch.tensor([True] * 5 + [False])
    out, (ym,), (m,) = A.mixup(x, [y], _rng(2), masks=[mask])
    rng = _rng(2)
    lam = rng.beta(0.2, 0.2, size=6)
    lam = np.maximum(lam, 1 - lam)
    perm = rng.permutation(6)
    for i in range(6):
        assert torch.allclose(out[i], lam[i] * x[i] + (1 - lam[i]) * x[perm[i]], atol=1e-6)
        assert bool(m[i]) == bool(mask[i] and mask[perm[i]])
    assert ym.min() >= 0 and ym.max() <= 1


def test_mixstyle_mixes_frequency_statistics():
    x = _feats(b=4) * torch.linspace(0.5, 3.0, 4).view(4, 1, 1, 1) + torch.arange(4.0).view(4, 1, 1, 1)
    out = A.mixstyle(x, _rng(0))
    assert out.shape == x.shape
    # identical clips keep their statistics: the output equals the input
    same = x[:1].repeat(4, 1, 1, 1)
    assert torch.allclose(A.mixstyle(same, _rng(0)), same, atol=1e-4)
    # per-bin means move towards the partner's (between the two)
    mu_in = x.mean(-1)
    mu_out = out.mean(-1)
    assert not torch.allclose(mu_in, mu_out)


def test_time_mask_zeroes_matching_spans():
    feats = torch.ones(2, 1, 8, 400)
    y = torch.ones(2, 3, 100)
    y_weak = torch.ones(2, 3)
    out, (ym, yw) = A.time_mask(feats, [y, y_weak], _rng(4), min_mask_ratio=0.05, max_mask_ratio=0.2)
    masked = torch.nonzero(ym[0, 0] == 0).flatten()
    width = len(masked)
    assert 5 <= width < 20 and (masked.diff() == 1).all()
    start = int(masked[0])
    assert (out[..., start * 4 : (start + width) * 4] == 0).all()
    assert out.sum() == 2 * 8 * (400 - 4 * width)
    assert torch.equal(yw, y_weak)  # clip-level targets pass through


def test_filter_augment_is_a_bounded_smooth_frequency_response():
    x = torch.ones(3, 1, 64, 10) * 2.0
    out = A.filter_augment(x, _rng(5))
    gain_db = 20 * torch.log10(out / x)
    assert gain_db.abs().max() <= 6.0 + 1e-4
    assert torch.allclose(gain_db, gain_db[..., :1].expand_as(gain_db))  # constant over time
    assert not torch.allclose(gain_db[0], gain_db[1])  # per-clip gains
    steps = gain_db[0, 0, :, 0].diff().abs()
    assert steps.max() < 12.0 / 5  # piecewise linear over bands of >= 6 bins


def test_freq_warp_stretches_a_frequency_band():
    x = torch.arange(64.0).view(1, 1, 64, 1).repeat(2, 1, 1, 5)
    out = A.freq_warp(x, _rng(6))
    assert out.shape == x.shape
    col = out[0, 0, :, 0]
    assert (col.diff() >= -1e-4).all()  # a monotone ramp stays monotone
    assert col[-1] - col[0] <= 63 + 1e-4 and col[-1] - col[0] >= 0.6 * 64 - 2
    assert torch.allclose(out[0], out[1])  # same crop for the batch
    assert torch.allclose(A.freq_warp(x, _rng(0), scale=(1.0, 1.0)), x, atol=1e-4)


def test_augmenter_state_round_trip_repeats_the_draws():
    cfg = A.AugmentConfig(mixup_p=0.5, mixstyle_p=0.5, max_time_mask_size=0.2)
    aug = A.Augmenter(cfg, seed=3)
    x, y = _feats(), torch.rand(4, 3, 100)
    aug.features(x, [y])
    state = aug.state_dict()
    a, (ya,), _ = aug.features(x, [y])
    aug2 = A.Augmenter(cfg, seed=99)
    aug2.load_state_dict(state)
    b, (yb,), _ = aug2.features(x, [y])
    assert torch.equal(a, b) and torch.equal(ya, yb)


def test_unknown_setting_is_rejected():
    from ptsed.core.errors import ConfigError

    with pytest.raises(ConfigError, match="mixupp"):
        A.AugmentConfig.from_dict({"mixupp": 0.1})
