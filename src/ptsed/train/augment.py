"""Training augmentations of the PretrainedSED recipes, as small functions with upstream's defaults.

Waveform level (B, N):
    :func:`wavmix` mixes clips with partners at a Beta(2, 2) weight (upstream's ``MixupDataset``).
Feature level (B, 1, F, T_feat), applied in this order by :class:`Augmenter` (upstream's ``training_step``):
    :func:`frame_shift` (circular time shift, labels shifted too), :func:`mixup`, :func:`mixstyle`,
    :func:`time_mask`, :func:`filter_augment` (FilterAugment), :func:`freq_warp` (random resize crop along
    frequency).

Every function draws its randomness from a ``numpy.random.Generator`` that the caller owns, so a run can be
resumed exactly (the generator state is saved in the training checkpoint). Frame targets are (B, K, T) on the
40 ms grid; "targets" below means any list of such tensors (strong labels, teacher probabilities) that must
follow the same time shifts and mixing as the input; clip-level tensors (B, K) are mixed but pass through the
time operations unchanged.

Two deliberate differences from upstream, both documented in ``docs/training.md``:

- wavmix picks its partner from the same batch (upstream draws a random dataset item inside the data
  loader); the mixing weight and mean removal are the same.
- time masking zeroes teacher targets as well (upstream zeroes the labels twice and leaves the teacher
  targets untouched).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

Targets = Sequence[torch.Tensor | None]


def _beta_weights(rng: np.random.Generator, a: float, b: float, n: int) -> np.ndarray:
    """n mixing weights ~ Beta(a, b), folded to [0.5, 1] (the first clip always dominates)."""
    lam = rng.beta(a, b, size=n)
    return np.maximum(lam, 1.0 - lam)


def _bcast(weights: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(weights, dtype=like.dtype, device=like.device).view(-1, *([1] * (like.dim() - 1)))


def wavmix(
    waveform: torch.Tensor,
    targets: Targets,
    rng: np.random.Generator,
    p: float = 0.8,
    beta: float = 2.0,
    masks: Sequence[torch.Tensor] = (),
) -> tuple[torch.Tensor, list[torch.Tensor | None], list[torch.Tensor]]:
    """Mix each clip, with probability ``p``, with a random partner of the batch.

    For a mixed clip, ``x = lam * (x1 - mean x1) + (1 - lam) * (x2 - mean x2)``, mean removed again, with
    ``lam ~ Beta(beta, beta)`` folded to ``max(lam, 1 - lam)``; targets are mixed linearly with the same
    weight. Upstream's AudioSet-strong recipe uses ``p=0.8, beta=2``; its DCASE 2016 recipe ``p=0.5, beta=0.2``.

    Args:
        waveform: (B, N).
        targets: tensors of shape (B, ...) mixed like the waveform (``None`` entries pass through).
        rng: random generator.
        p: probability that a clip is mixed.
        beta: parameter of the Beta distribution.
        masks: boolean (B,) validity masks (e.g. ``mask_strong``); a mixed clip is valid when both are.

    Returns:
        (waveform, targets, masks), new tensors.
    """
    b = waveform.shape[0]
    chosen = rng.random(b) < p
    partner = rng.integers(0, b, size=b)
    lam = _beta_weights(rng, beta, beta, b)
    lam = np.where(chosen, lam, 1.0)
    if not chosen.any():
        return waveform, list(targets), list(masks)
    idx = torch.as_tensor(partner, device=waveform.device)
    w = _bcast(lam, waveform)
    sel = _bcast(chosen.astype(np.float64), waveform)
    x1 = waveform - waveform.mean(dim=-1, keepdim=True)
    mixed = w * x1 + (1 - w) * x1[idx]
    mixed = mixed - mixed.mean(dim=-1, keepdim=True)
    out = sel * mixed + (1 - sel) * waveform
    new_targets: list[torch.Tensor | None] = []
    for t in targets:
        if t is None:
            new_targets.append(None)
            continue
        wt = _bcast(lam, t)
        new_targets.append(wt * t + (1 - wt) * t[idx])
    chosen_t = torch.as_tensor(chosen, device=waveform.device)
    new_masks = [m & torch.where(chosen_t, m[idx], torch.ones_like(m)) for m in masks]
    return out, new_targets, new_masks


def frame_shift(
    features: torch.Tensor, targets: Targets, rng: np.random.Generator, shift_range: float = 0.125
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Roll every clip in time by a Gaussian number of feature frames; targets roll by the same time.

    The shift is ``int(N(0, T_feat * shift_range))`` feature frames (upstream: std 1.25 s for 10 s clips at the
    default 0.125); targets roll by ``round(shift * T / T_feat)`` frames (upstream's ``shift / net_pooling``).

    Args:
        features: (B, C, F, T_feat).
        targets: (B, K, T) tensors.
        rng: random generator.
        shift_range: standard deviation of the shift as a fraction of the clip length.
    """
    b, t_feat = features.shape[0], features.shape[-1]
    std = int(t_feat * shift_range)
    shifts = [int(rng.normal(0.0, std)) if std > 0 else 0 for _ in range(b)]
    feats = torch.stack([torch.roll(features[i], shifts[i], dims=-1) for i in range(b)])
    out: list[torch.Tensor | None] = []
    for t in targets:
        if t is None or t.dim() < 3:
            out.append(t)
            continue
        ratio = t.shape[-1] / t_feat
        out.append(torch.stack([torch.roll(t[i], round(shifts[i] * ratio), dims=-1) for i in range(b)]))
    return feats, out


def mixup(
    features: torch.Tensor,
    targets: Targets,
    rng: np.random.Generator,
    alpha: float = 0.2,
    beta: float = 0.2,
    masks: Sequence[torch.Tensor] = (),
) -> tuple[torch.Tensor, list[torch.Tensor | None], list[torch.Tensor]]:
    """Mix the batch with a permutation of itself, weights ``max(c, 1 - c)``, ``c ~ Beta(alpha, beta)``.

    Features and targets are mixed with the same per-clip weight; targets are clipped to [0, 1] as upstream.
    ``masks`` (B,) become the AND of the two clips' masks.
    """
    b = features.shape[0]
    lam = _beta_weights(rng, alpha, beta, b)
    perm = torch.as_tensor(rng.permutation(b), device=features.device)
    w = _bcast(lam, features)
    feats = w * features + (1 - w) * features[perm]
    out: list[torch.Tensor | None] = []
    for t in targets:
        if t is None:
            out.append(None)
            continue
        wt = _bcast(lam, t)
        out.append((wt * t + (1 - wt) * t[perm]).clamp(0.0, 1.0))
    return feats, out, [m & m[perm] for m in masks]


def mixstyle(features: torch.Tensor, rng: np.random.Generator, alpha: float = 0.4, eps: float = 1e-6) -> torch.Tensor:
    """MixStyle on frequency-wise statistics: each clip's per-bin mean and std (over time) are replaced by a
    mix with those of a random partner, weight ``max(l, 1 - l)``, ``l ~ Beta(alpha, alpha)``.

    Args:
        features: (B, C, F, T_feat).
    """
    b = features.shape[0]
    mu = features.mean(dim=3, keepdim=True).detach()
    sig = (features.var(dim=3, keepdim=True) + eps).sqrt().detach()
    normed = (features - mu) / sig
    lam = _bcast(_beta_weights(rng, alpha, alpha, b), features)
    perm = torch.as_tensor(rng.permutation(b), device=features.device)
    mu_mix = mu * lam + mu[perm] * (1 - lam)
    sig_mix = sig * lam + sig[perm] * (1 - lam)
    return normed * sig_mix + mu_mix


def time_mask(
    features: torch.Tensor,
    targets: Targets,
    rng: np.random.Generator,
    min_mask_ratio: float = 0.05,
    max_mask_ratio: float = 0.2,
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Zero one random time span (the same for the whole batch) in the features and the targets.

    The span is ``[low, low + width)`` target frames, ``width`` drawn from ``[T * min, T * max)``; in feature
    frames it is scaled by ``T_feat / T`` (upstream's ``net_pooling`` of 4).

    Args:
        features: (B, C, F, T_feat).
        targets: (B, K, T) tensors; the first non-``None`` one defines T.
    """
    ref = next((t for t in targets if t is not None and t.dim() >= 3), None)
    n = ref.shape[-1] if ref is not None else features.shape[-1]
    lo, hi = int(n * min_mask_ratio), int(n * max_mask_ratio)
    width = int(rng.integers(lo, hi)) if hi > lo else lo
    if width <= 0:
        return features, list(targets)
    start = int(rng.integers(0, n - width)) if n > width else 0
    pool = features.shape[-1] / n
    feats = features.clone()
    feats[..., round(start * pool) : round((start + width) * pool)] = 0
    out: list[torch.Tensor | None] = []
    for t in targets:
        if t is None or t.dim() < 3:
            out.append(t)
            continue
        t = t.clone()
        t[..., start : start + width] = 0
        out.append(t)
    return feats, out


def filter_augment(
    features: torch.Tensor,
    rng: np.random.Generator,
    db_range: tuple[float, float] = (-6.0, 6.0),
    n_band: tuple[int, int] = (3, 6),
    min_bw: int = 6,
) -> torch.Tensor:
    """FilterAugment (Nam et al., ICASSP 2022, "linear" type): multiply the features by a random piecewise
    linear frequency response.

    The number of bands is drawn from ``[n_band[0], n_band[1])``, band edges at random with at least
    ``min_bw`` bins per band (same edges for the batch); the gain at each edge is drawn per clip from
    ``db_range`` dB and interpolated linearly inside each band. As upstream, the gain multiplies the features
    as they are (log-mel for every ptsed front-end).

    Args:
        features: (B, C, F, T_feat).
    """
    b, _, n_freq, _ = features.shape
    bands = int(rng.integers(n_band[0], n_band[1]))
    if bands <= 1:
        return features
    while n_freq - bands * min_bw + 1 < 0:
        min_bw -= 1
    inner = np.sort(rng.integers(0, n_freq - bands * min_bw + 1, size=bands - 1)) + np.arange(1, bands) * min_bw
    edges = np.concatenate([[0], inner, [n_freq]]).astype(int)
    gains_db = torch.as_tensor(
        rng.random((b, bands + 1)) * (db_range[1] - db_range[0]) + db_range[0], dtype=features.dtype
    ).to(features.device)
    response = torch.ones(b, n_freq, dtype=features.dtype, device=features.device)
    for i in range(bands):
        lo, hi = edges[i], edges[i + 1]
        if hi <= lo:
            continue
        ramp = torch.linspace(0.0, 1.0, hi - lo, dtype=features.dtype, device=features.device)
        response[:, lo:hi] = gains_db[:, i : i + 1] + (gains_db[:, i + 1 : i + 2] - gains_db[:, i : i + 1]) * ramp
    return features * (10 ** (response / 20)).view(b, 1, n_freq, 1)


def freq_warp(
    features: torch.Tensor, rng: np.random.Generator, scale: tuple[float, float] = (0.6, 1.0)
) -> torch.Tensor:
    """Random resize crop along frequency (upstream's ``RandomResizeCrop((1, 1.0), time_scale=(1.0, 1.0))``).

    A band of ``int(U(scale) * F)`` bins at a random position (the same for the batch) is stretched back to F
    bins with bicubic interpolation (``align_corners=True``); time is unchanged.

    Args:
        features: (B, C, F, T_feat).
    """
    n_freq, n_time = features.shape[-2:]
    h = int(np.clip(int(rng.uniform(*scale) * n_freq), 1, n_freq))
    i = int(rng.integers(0, n_freq - h + 1)) if n_freq > h else 0
    crop = features[..., i : i + h, :]
    shape = features.shape
    flat = crop.reshape(-1, 1, h, n_time).float()
    out = F.interpolate(flat, size=(n_freq, n_time), mode="bicubic", align_corners=True)
    return out.reshape(shape).to(features.dtype)


@dataclass
class AugmentConfig:
    """Probabilities and settings of the training augmentations.

    The defaults are upstream's AudioSet-strong recipe (``ex_audioset_strong.py``); its DCASE 2016 fine-tuning
    recipe uses ``wavmix_p=0.5, wavmix_beta=0.2, mixup_p=0.5`` and switches the others off.

    Attributes:
        wavmix_p: probability per clip of waveform mixing; ``wavmix_beta`` its Beta parameter.
        frame_shift_p: probability per batch of frame shifting; ``frame_shift_range`` the std of the shift as
            a fraction of the clip (0 disables it).
        mixup_p: probability per batch of feature mixup (Beta(``mixup_alpha``, ``mixup_alpha``)).
        mixstyle_p: probability per batch of MixStyle (Beta(``mixstyle_alpha``, ``mixstyle_alpha``)).
        time_mask_p: probability per batch of time masking; ``max_time_mask_size`` the largest span as a
            fraction of the clip (0 disables it, upstream's default), ``min_time_mask_size`` the smallest.
        filter_augment_p: probability per batch of FilterAugment.
        freq_warp_p: probability per batch of frequency warping.
    """

    wavmix_p: float = 0.8
    wavmix_beta: float = 2.0
    frame_shift_p: float = 1.0
    frame_shift_range: float = 0.125
    mixup_p: float = 0.3
    mixup_alpha: float = 0.2
    mixstyle_p: float = 0.3
    mixstyle_alpha: float = 0.4
    time_mask_p: float = 1.0
    min_time_mask_size: float = 0.05
    max_time_mask_size: float = 0.0
    filter_augment_p: float = 0.8
    freq_warp_p: float = 0.8

    @classmethod
    def none(cls) -> AugmentConfig:
        """All augmentations off."""
        return cls(
            wavmix_p=0.0,
            frame_shift_p=0.0,
            mixup_p=0.0,
            mixstyle_p=0.0,
            time_mask_p=0.0,
            filter_augment_p=0.0,
            freq_warp_p=0.0,
        )

    @classmethod
    def from_dict(cls, d: dict) -> AugmentConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            from ptsed.core.errors import ConfigError

            raise ConfigError(f"unknown augmentation settings: {', '.join(sorted(unknown))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


class Augmenter:
    """Applies the augmentations of an :class:`AugmentConfig` in upstream's order, with one owned generator.

    ``state_dict()`` / ``load_state_dict()`` save and restore the generator, for exact resumption.
    """

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0) -> None:
        self.config = config or AugmentConfig()
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]

    def _draw(self, p: float) -> bool:
        return p > 0 and self.rng.random() < p

    def waveform(
        self, waveform: torch.Tensor, targets: Targets, masks: Sequence[torch.Tensor] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor | None], list[torch.Tensor]]:
        """Waveform-level augmentation (wavmix) of a batch (B, N)."""
        c = self.config
        if c.wavmix_p <= 0:
            return waveform, list(targets), list(masks)
        return wavmix(waveform, targets, self.rng, p=c.wavmix_p, beta=c.wavmix_beta, masks=masks)

    def features(
        self, features: torch.Tensor, targets: Targets, masks: Sequence[torch.Tensor] = ()
    ) -> tuple[torch.Tensor, list[torch.Tensor | None], list[torch.Tensor]]:
        """Feature-level augmentations of (B, 1, F, T_feat) with their (B, K, T) targets and (B,) masks."""
        c = self.config
        targets, masks = list(targets), list(masks)
        if c.frame_shift_range > 0 and self._draw(c.frame_shift_p):
            features, targets = frame_shift(features, targets, self.rng, c.frame_shift_range)
        if self._draw(c.mixup_p):
            features, targets, masks = mixup(
                features, targets, self.rng, alpha=c.mixup_alpha, beta=c.mixup_alpha, masks=masks
            )
        if self._draw(c.mixstyle_p):
            features = mixstyle(features, self.rng, alpha=c.mixstyle_alpha)
        if c.max_time_mask_size > 0 and self._draw(c.time_mask_p):
            features, targets = time_mask(features, targets, self.rng, c.min_time_mask_size, c.max_time_mask_size)
        if self._draw(c.filter_augment_p):
            features = filter_augment(features, self.rng)
        if self._draw(c.freq_warp_p):
            features = freq_warp(features, self.rng)
        return features, targets, masks
