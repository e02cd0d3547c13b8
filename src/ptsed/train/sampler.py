"""Sampling for AudioSet-strong training: temporal-count balanced weights and a fixed-length, rank-aware epoch.

Upstream (``data_util/audioset_strong.py``) weights every training clip by how much of its labelled time falls
into rare classes: with ``c[i, k]`` the number of 40 ms frames of clip ``i`` where class ``k`` is active,

    n[k] = offset + sum_i c[i, k]            (offset 30 keeps rare classes from exploding)
    w[i] = sum_k c[i, k] * 1000 / n[k]

and draws a fixed number of clips per epoch (``epoch_len``, 100,000) with these weights, without replacement
(``WeightedRandomSampler(weights, epoch_len, replacement=False)``). Clips without any active frame get weight
0 and are never drawn by the balanced sampler.

:class:`BalancedEpochSampler` does the same draw from a generator seeded by ``(seed, epoch)``, identical on
every rank, and gives each rank its share (``order[rank::world]``, padded so that all ranks get the same
number of clips and therefore run the same number of steps). It yields the ``(item seed, index)`` keys of
:class:`ptsed.train.data.EpochSampler`, so it plugs into the resumable loader: a killed run resumes mid-epoch
on the same clips, and every clip's random state depends on its global position only (not on the number of
GPUs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ptsed.core.errors import ConfigError
from ptsed.train.data import EpochSampler, ResumableLoader, SeededItems, _mix_seed

DEFAULT_WEIGHT_OFFSET = 30.0
"""Upstream's ``sample_weight_offset``: added to every class's frame count before inverting it."""


def temporal_count_weights(counts: Any, offset: float = DEFAULT_WEIGHT_OFFSET) -> np.ndarray:
    """Upstream's temporal-count balanced sample weights.

    Args:
        counts: (N, K) active frames per clip and class (``targets.sum(-1)`` of each clip's (K, T) targets), a
            dense array or a ``scipy.sparse`` matrix (AudioSet: 1 M clips x 447 classes, mostly zeros).
        offset: added to each class total before inverting (upstream: 30).

    Returns:
        (N,) float64 weights ``sum_k counts[i, k] * 1000 / (offset + sum_i counts[i, k])``.
    """
    if not hasattr(counts, "tocsr"):
        counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError(f"counts must be (clips, classes), got shape {counts.shape}")
    per_class = np.asarray(counts.sum(axis=0), dtype=np.float64).ravel() + float(offset)
    if np.any(per_class <= 0):
        raise ValueError("offset + class totals must be > 0")
    return np.asarray(counts @ (1000.0 / per_class), dtype=np.float64).ravel()


class BalancedEpochSampler(EpochSampler):
    """A fixed number of clips per epoch, drawn by weight (or uniformly), split over the ranks.

    Args:
        weights: (N,) non-negative sample weights; ``None`` draws uniformly (upstream's sampler without
            ``--use_balanced_sampler``: uniform weights, no replacement).
        num_samples: clips per epoch over all ranks (upstream's ``epoch_len``).
        seed: base seed; the draw of epoch ``e`` depends only on ``(seed, e)``.
        replacement: draw with replacement (upstream: without).
        num_replicas, rank: the data-parallel world size and this process's rank.

    Without replacement, an epoch longer than the number of drawable clips (weight > 0) is made of several
    draws, each without replacement. Each rank gets ``ceil(num_samples / num_replicas)`` clips; the global
    order is padded with its own beginning to a multiple of the world size (as ``DistributedSampler`` pads).
    """

    def __init__(
        self,
        weights: np.ndarray | torch.Tensor | None,
        num_samples: int,
        *,
        size: int | None = None,
        seed: int = 0,
        replacement: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if weights is not None:
            w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
            if w.ndim != 1 or len(w) == 0:
                raise ConfigError("sample weights must be a non-empty 1-D array")
            if not torch.isfinite(w).all() or (w < 0).any():
                raise ConfigError("sample weights must be finite and >= 0")
            if float(w.sum()) <= 0:
                raise ConfigError("all sample weights are 0: no training clip has an active frame of a known class")
            n = len(w)
        else:
            if size is None:
                raise ValueError("give weights or the dataset size")
            w, n = None, int(size)
        if num_samples <= 0:
            raise ConfigError(f"epoch length must be > 0, got {num_samples}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in a world of {num_replicas}")
        super().__init__(n, seed=seed, shuffle=True, num_samples=int(num_samples))
        self.weights = w
        self.replacement = bool(replacement)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.per_rank = -(-self.num_samples // self.num_replicas)

    def __len__(self) -> int:
        return self.per_rank

    def global_order(self, epoch: int) -> list[int]:
        """The dataset indices of ``epoch`` over all ranks (``num_samples`` of them), before the split."""
        g = torch.Generator().manual_seed(_mix_seed(self.seed, epoch))
        w = self.weights if self.weights is not None else torch.ones(self.size, dtype=torch.float64)
        if self.replacement:
            return torch.multinomial(w, self.num_samples, replacement=True, generator=g).tolist()
        drawable = int((w > 0).sum())
        out: list[int] = []
        while len(out) < self.num_samples:
            take = min(drawable, self.num_samples - len(out))
            out.extend(torch.multinomial(w, take, replacement=False, generator=g).tolist())
        return out

    def order(self, epoch: int) -> list[int]:
        """The dataset indices this rank reads in ``epoch`` (``len(self)`` of them)."""
        return self._local(self.global_order(epoch))

    def _local(self, order: list[int]) -> list[int]:
        total = self.per_rank * self.num_replicas
        padded = order + order[: total - len(order)]
        return padded[self.rank : total : self.num_replicas]

    def __iter__(self):  # noqa: ANN204 - yields (item seed, index) like EpochSampler
        epoch, skip = self.epoch, self.skip
        self.skip = 0
        positions = self._local(list(range(self.num_samples)))
        order = self.global_order(epoch)
        for local, pos in enumerate(positions):
            if local >= skip:
                yield _mix_seed(self.seed, epoch, pos), order[pos]


class SampledLoader(ResumableLoader):
    """A :class:`~ptsed.train.data.ResumableLoader` over the clips a given :class:`EpochSampler` (e.g.
    :class:`BalancedEpochSampler`) picks: same item seeding, same checkpointed position, any sampler.

    Args:
        dataset: map-style dataset in the training item format.
        sampler: yields ``(item seed, index)`` keys; Lightning calls its ``set_epoch``.
        batch_size: clips per batch (on this rank).
        seed: base seed of the loader's generator.
        num_workers: DataLoader processes.
        drop_last: drop an incomplete last batch (default: keep it, as upstream).
    """

    def __init__(
        self,
        dataset: Dataset,
        sampler: EpochSampler,
        batch_size: int,
        *,
        seed: int = 0,
        num_workers: int = 0,
        drop_last: bool = False,
    ) -> None:
        # ResumableLoader builds its own EpochSampler; this one is given, the rest is the same
        DataLoader.__init__(
            self,
            SeededItems(dataset),
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(seed),
            persistent_workers=False,
        )
        self._seed = seed
        self._epoch = 0
        self._done = 0
        self._resume = 0


__all__ = ["DEFAULT_WEIGHT_OFFSET", "BalancedEpochSampler", "SampledLoader", "temporal_count_weights"]
