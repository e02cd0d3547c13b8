"""Data loading for training that can be resumed exactly after a kill.

:class:`ResumableLoader` is a ``DataLoader`` whose position (epoch, batches done) is saved in Lightning
checkpoints (Lightning saves any loader with ``state_dict`` / ``load_state_dict``). Its order depends only on
``(seed, epoch)``, and every item is produced under a random state seeded from ``(seed, epoch, position)``, so
random crops inside a dataset repeat exactly with any number of workers, and a resumed run sees the same
batches as an uninterrupted one.

Dataset items follow the agreed format: ``{"waveform" (N,), "strong" (K, T), "weak" (K,), "mask_strong"
bool, "filename" str, "offset_s" float, "duration_s" float}`` plus optional ``"mask_weak"`` bool and
``"pseudo_strong"`` (K, T) teacher probabilities.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def _mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (SplitMix64 steps), stable across processes and platforms."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return x & 0x7FFFFFFFFFFFFFFF


class EpochSampler(Sampler):
    """Yields ``(item_seed, index)`` keys: a permutation (or the identity) fixed by ``(seed, epoch)``.

    Args:
        size: dataset length.
        seed: base seed.
        shuffle: shuffle every epoch.
        num_samples: items per epoch (default ``size``); longer epochs repeat fresh permutations.
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, num_samples: int | None = None) -> None:
        if size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.num_samples = num_samples or size
        self.epoch = 0
        self.skip = 0
        """Items to skip at the start of the next iteration (set when resuming mid-epoch)."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def order(self, epoch: int) -> list[int]:
        """Dataset indices of ``epoch``."""
        if not self.shuffle:
            reps = -(-self.num_samples // self.size)
            return (list(range(self.size)) * reps)[: self.num_samples]
        g = torch.Generator().manual_seed(_mix_seed(self.seed, epoch))
        out: list[int] = []
        while len(out) < self.num_samples:
            out.extend(torch.randperm(self.size, generator=g).tolist())
        return out[: self.num_samples]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = self.epoch, self.skip
        self.skip = 0
        for pos, idx in enumerate(self.order(epoch)):
            if pos >= skip:
                yield _mix_seed(self.seed, epoch, pos), idx


class SeededItems(Dataset):
    """Wraps a map-style dataset: item ``(seed, i)`` is ``dataset[i]`` computed under RNG states seeded with
    ``seed`` (torch, numpy and ``random``; the caller's states are restored afterwards)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        if isinstance(key, int):
            return self.dataset[key]
        seed, index = key
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                random.seed(seed)
                np.random.seed(seed % 2**32)
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class ResumableLoader(DataLoader):
    """A ``DataLoader`` that Lightning can checkpoint and resume mid-epoch.

    Args:
        dataset: a map-style dataset of the agreed item format.
        batch_size: clips per batch.
        shuffle: new order every epoch (fixed by ``seed`` and the epoch).
        seed: base seed of the order and of the items' random states.
        epoch_len: items per epoch (default: the dataset length).
        drop_last: drop the last incomplete batch.
        num_workers: DataLoader worker processes.
        sampler: an :class:`EpochSampler` (or subclass, e.g. weighted or rank-aware) to use instead of the
            default one built from ``shuffle``, ``seed`` and ``epoch_len``.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        epoch_len: int | None = None,
        drop_last: bool = True,
        num_workers: int = 0,
        sampler: EpochSampler | None = None,
        **kwargs: Any,
    ) -> None:
        if sampler is None:
            sampler = EpochSampler(len(dataset), seed=seed, shuffle=shuffle, num_samples=epoch_len)  # type: ignore[arg-type]
        self._seed = sampler.seed
        super().__init__(
            SeededItems(dataset),
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(seed),
            persistent_workers=False,
            **kwargs,
        )
        self._epoch = 0
        self._done = 0
        self._resume = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler: EpochSampler = self.sampler  # type: ignore[assignment]
        self._epoch = sampler.epoch
        skip, self._resume = self._resume, 0
        sampler.skip = skip * self.batch_size  # type: ignore[operator]
        self.generator.manual_seed(_mix_seed(self._seed, self._epoch, 1))  # type: ignore[union-attr]
        self._done = skip
        for batch in super().__iter__():
            self._done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """Position: the epoch and the batches of it already handed out."""
        return {"epoch": self._epoch, "batches": self._done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume after ``state["batches"]`` batches of the epoch (a finished epoch starts the next afresh)."""
        done = int(state.get("batches", 0))
        self._resume = done if done < len(self) else 0
