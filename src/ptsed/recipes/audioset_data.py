"""AudioSet-strong clips as training items, on the readers of :mod:`ptsed.data.audioset`.

- :class:`ForkSafeAudio`: a clip folder or PaSST-style HDF5 file(s) that reopens HDF5 files in each process
  (h5py handles must not cross a ``fork`` into DataLoader workers, and cannot be pickled for ``spawn``).
- :class:`StrongClips`: a map-style dataset of 10 s clips in the training item format of
  :mod:`ptsed.train.data` (``waveform``, ``strong``, ``mask_strong``, ``filename``, ``offset_s``, ``duration_s``
  and, with teacher logits, ``pseudo_strong`` = sigmoid of the logits, as upstream's
  ``AddPseudoLabelsTransform``).
- :func:`class_frame_counts` / :func:`balanced_sample_weights`: the inputs of upstream's temporal-count
  balanced sampler, computed from the labels alone (no audio is decoded), cached in a file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptsed.core.errors import ConfigError
from ptsed.data.audioset import CLIP_S, AudioSetHDF5, AudioSetStrong, frame_targets, open_audio
from ptsed.io.annotations import Events

AudioPaths = str | Path | Sequence[str | Path]


class ForkSafeAudio:
    """Clip-id-addressed audio (a folder of ``Y<id>.<ext>`` files, or PaSST-style HDF5 files) usable from
    DataLoader worker processes.

    Args:
        source: a folder of audio files, an HDF5 file, a folder of HDF5 files, or a list of HDF5 files.
        kind: ``"auto"`` (:func:`ptsed.data.audioset.open_audio` decides), ``"folder"`` or ``"hdf5"``.
    """

    def __init__(self, source: AudioPaths, kind: str = "auto") -> None:
        from ptsed.data.audioset import AudioFolder

        if isinstance(source, (list, tuple)) and len(source) == 1:
            source = source[0]
        self.source = source
        if isinstance(source, (list, tuple)):
            kind = "hdf5"
        if kind == "hdf5":
            opened: Any = AudioSetHDF5(source)  # type: ignore[arg-type]
        elif kind == "folder":
            if not Path(source).is_dir():  # type: ignore[arg-type]
                raise ConfigError(f"audio folder {str(source)!r} does not exist")
            opened = AudioFolder(source)  # type: ignore[arg-type]
        elif kind == "auto":
            opened = open_audio(source)  # type: ignore[arg-type]
        else:
            raise ValueError(f"kind must be auto, folder or hdf5, not {kind!r}")
        self.is_hdf5 = isinstance(opened, AudioSetHDF5)
        self._ids = opened.clip_ids()
        self._set = set(self._ids)
        if self.is_hdf5:
            opened.close()
            opened = None
        self._opened = opened
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.is_hdf5:
            state["_opened"] = None
        return state

    def _collection(self) -> Any:
        if self.is_hdf5 and (self._opened is None or self._pid != os.getpid()):
            self._opened = AudioSetHDF5(self.source)  # type: ignore[arg-type]
            self._pid = os.getpid()
        return self._opened

    def clip_ids(self) -> list[str]:
        return list(self._ids)

    def __contains__(self, clip: str) -> bool:
        return clip in self._set

    def __len__(self) -> int:
        return len(self._ids)

    def load(self, clip: str, sample_rate: int) -> np.ndarray:
        """Mono float32 samples (N,) of ``clip`` at ``sample_rate``."""
        return self._collection().load(clip, sample_rate)

    def close(self) -> None:
        if self.is_hdf5 and self._opened is not None:
            self._opened.close()
            self._opened = None

    def __repr__(self) -> str:
        return f"{'HDF5' if self.is_hdf5 else 'folder'} {self.source} ({len(self)} clips)"


class StrongClips(torch.utils.data.Dataset):
    """AudioSet-strong clips with audio, frame targets and optional teacher probabilities.

    Args:
        events: clip id -> events (class names), e.g. from :func:`ptsed.data.audioset.read_strong_labels`.
        audio: the clips' audio.
        classes: the K target classes (the model's labels).
        sample_rate: Hz of the returned waveforms.
        pseudo: teacher logits (:class:`ptsed.recipes.ensemble.LogitsFile`); clips without logits are left
            out and listed in ``missing_pseudo``.
        clip_s: clip length in seconds (cut / zero-padded).

    Clips with labels but no audio are left out and listed in ``missing_audio``.
    """

    def __init__(
        self,
        events: Mapping[str, Events],
        audio: ForkSafeAudio,
        classes: Sequence[str],
        sample_rate: int,
        *,
        pseudo: Any = None,
        clip_s: float = CLIP_S,
    ) -> None:
        self.strong = AudioSetStrong(events, audio, classes=classes, sample_rate=sample_rate, clip_s=clip_s)
        self.classes = list(classes)
        self.clip_s = float(clip_s)
        self.pseudo = pseudo
        self.missing_audio = list(self.strong.missing_audio)
        self.missing_pseudo: list[str] = []
        keep = []
        for i, clip in enumerate(self.strong.clip_ids):
            if pseudo is not None and clip not in pseudo:
                self.missing_pseudo.append(clip)
            else:
                keep.append(i)
        self._index = keep
        self.clip_ids = [self.strong.clip_ids[i] for i in keep]
        if pseudo is not None and pseudo.num_classes != len(self.classes):
            raise ConfigError(
                f"teacher logits {pseudo.path} have {pseudo.num_classes} classes, the model has {len(self.classes)}"
            )

    @property
    def events(self) -> dict[str, Events]:
        """clip id -> events of the clips of this dataset."""
        return {c: self.strong.events[c] for c in self.clip_ids}

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.strong[self._index[i]]
        out = {
            "waveform": torch.from_numpy(np.ascontiguousarray(item["audio"], dtype=np.float32)),
            "strong": torch.from_numpy(item["targets"]),
            "mask_strong": True,
            "filename": item["clip"],
            "offset_s": 0.0,
            "duration_s": self.clip_s,
        }
        if self.pseudo is not None:
            probs = self.pseudo.probabilities(item["clip"])
            if probs.shape != item["targets"].shape:
                raise ConfigError(
                    f"teacher logits of {item['clip']} in {self.pseudo.path} have shape {probs.shape}, "
                    f"the targets {item['targets'].shape}"
                )
            out["pseudo_strong"] = torch.from_numpy(probs)
        return out


def class_frame_counts(dataset: StrongClips) -> Any:
    """(N, K) ``scipy.sparse`` CSR matrix (int32): per clip and class, the number of active 40 ms frames of its
    targets (upstream's ``event_count``), from the labels alone."""
    from scipy import sparse

    index = {c: k for k, c in enumerate(dataset.classes)}
    hop = dataset.strong.hop_s
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for clip in dataset.clip_ids:
        frames = frame_targets(dataset.strong.events[clip], index, dataset.clip_s, hop).sum(axis=1)
        nz = np.flatnonzero(frames)
        cols.append(nz)
        vals.append(frames[nz].astype(np.int32))
    indptr = np.concatenate([[0], np.cumsum([len(c) for c in cols])]).astype(np.int64)
    data = np.concatenate(vals) if vals else np.zeros(0, np.int32)
    indices = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(dataset), len(index)))


def balanced_sample_weights(dataset: StrongClips, offset: float, cache: str | Path | None = None) -> np.ndarray:
    """Upstream's temporal-count balanced weights (N,) of ``dataset``'s clips, cached in ``cache`` (an
    ``.npz`` keyed by the clip list, the classes and the offset; recomputed when any of them changes)."""
    from ptsed.train.sampler import temporal_count_weights

    h = hashlib.sha256()
    for part in (*dataset.clip_ids, "|", *dataset.classes, "|", repr(float(offset))):
        h.update(part.encode("utf-8") + b"\0")
    key = h.hexdigest()
    if cache is not None and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return np.asarray(z["weights"], dtype=np.float64)
    weights = temporal_count_weights(class_frame_counts(dataset), offset)
    if cache is not None:
        from ptsed.core.files import atomic_write

        with atomic_write(Path(cache)) as tmp:
            np.savez(tmp, key=np.array(key), weights=weights)
    return weights


__all__ = ["ForkSafeAudio", "StrongClips", "balanced_sample_weights", "class_frame_counts"]
