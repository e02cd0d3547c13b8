"""Cutting recordings of any length into fixed training windows, with their labels on the frame grid.

:class:`WindowedDataset` is the shared engine of :class:`~ptsed.data.dcase.DCASEDataset`,
:class:`~ptsed.data.hear.HEARDataset` and :class:`~ptsed.data.desed.DESEDDataset`: each of them only turns its
metadata into :class:`AudioRecord` items. Every item it returns has the same keys (see
:meth:`WindowedDataset.__getitem__`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ptsed.core.errors import ConfigError
from ptsed.core.frames import FRAME_HOP_S, events_to_frame_targets
from ptsed.inference.windows import window_starts
from ptsed.io.audio import load_audio


@dataclass
class AudioRecord:
    """One recording and its labels, as a dataset knows it.

    Attributes:
        path: the audio file.
        name: the file name as the metadata spells it (relative to the audio folder).
        duration_s: length in seconds.
        events: strong labels ``(onset_s, offset_s, label)``, clipped to ``[0, duration_s]``.
        weak: clip-level labels (used when there are no strong labels).
        has_strong: the recording has strong labels (an empty ``events`` then means "no event").
        has_weak: the recording has clip-level labels (implied by ``has_strong``).
    """

    path: Path
    name: str
    duration_s: float
    events: list[tuple[float, float, str]] = field(default_factory=list)
    weak: tuple[str, ...] = ()
    has_strong: bool = False
    has_weak: bool = False


class WindowedDataset(torch.utils.data.Dataset):
    """Fixed-length windows cut from labelled recordings of any length.

    Each recording of ``duration_s`` is cut into windows of ``window_s`` at hop ``window_hop_s``, as
    inference cuts them (:func:`ptsed.inference.windows.window_starts`: one more window, on the frame grid,
    ends at the end of the recording when the regular ones stop short of it); recordings shorter than a
    window give one zero-padded window. With ``train=True`` each item is a random crop of its recording
    instead (start uniform over the recording, on the frame grid; drawn from torch's generator so that
    DataLoader workers differ).

    Args:
        records: the recordings.
        labels: class names in target order.
        sample_rate: sample rate of the returned waveforms in Hz (files are resampled on reading).
        window_s: window length in seconds.
        window_hop_s: hop between windows in seconds (``None``: ``window_s``, no overlap).
        frame_hop_s: hop of the target frames in seconds (0.04 for every ptsed model).
        train: random crops instead of fixed windows.
    """

    def __init__(
        self,
        records: Sequence[AudioRecord],
        labels: Sequence[str],
        *,
        sample_rate: int = 16000,
        window_s: float = 10.0,
        window_hop_s: float | None = None,
        frame_hop_s: float = FRAME_HOP_S,
        train: bool = False,
    ) -> None:
        if window_s <= 0 or frame_hop_s <= 0 or sample_rate <= 0:
            raise ConfigError("window_s, frame_hop_s and sample_rate must be positive")
        if window_hop_s is not None and window_hop_s <= 0:
            raise ConfigError(f"window_hop_s must be positive, got {window_hop_s}")
        num_frames = window_s / frame_hop_s
        if abs(num_frames - round(num_frames)) > 1e-6:
            raise ConfigError(f"window_s={window_s} is not a whole number of frames of {frame_hop_s} s")
        self.records = list(records)
        self.labels = list(labels)
        self.label_index = {name: i for i, name in enumerate(self.labels)}
        self.sample_rate = int(sample_rate)
        self.window_s = float(window_s)
        self.window_hop_s = float(window_hop_s if window_hop_s is not None else window_s)
        self.frame_hop_s = float(frame_hop_s)
        self.num_frames = round(num_frames)
        self.num_samples = round(window_s * sample_rate)
        self.train = train
        self.windows: list[tuple[int, int]] = []
        """(record index, start sample) of every item."""
        hop = max(1, round(self.window_hop_s * sample_rate))
        frame = max(1, round(self.frame_hop_s * sample_rate))
        for i, rec in enumerate(self.records):
            total = max(1, round(rec.duration_s * sample_rate))
            self.windows.extend((i, s) for s in window_starts(total, self.num_samples, hop, frame))

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def filenames(self) -> list[str]:
        """Names of all recordings, in order."""
        return [r.name for r in self.records]

    def _random_start(self, rec: AudioRecord) -> int:
        step = max(1, round(self.frame_hop_s * self.sample_rate))
        room = round(rec.duration_s * self.sample_rate) - self.num_samples
        if room <= 0:
            return 0
        return int(torch.randint(room // step + 1, ()).item()) * step

    def encode_weak(self, labels: Sequence[str]) -> np.ndarray:
        """(K,) float32 many-hot vector of ``labels`` (names outside :attr:`labels` are ignored)."""
        out = np.zeros(len(self.labels), dtype=np.float32)
        for name in labels:
            k = self.label_index.get(name)
            if k is not None:
                out[k] = 1.0
        return out

    def __getitem__(self, i: int) -> dict:
        """One window.

        Returns:
            ``waveform`` (N,) float32, N = ``window_s * sample_rate`` (zero-padded past the recording's end);
            ``strong`` (K, T) float32 0/1 frame targets, T = ``window_s / frame_hop_s``;
            ``weak`` (K,) float32 clip targets (for strong labels: classes active anywhere in the window);
            ``mask_strong`` bool (strong labels exist), ``mask_weak`` bool (clip labels exist);
            ``filename`` str; ``offset_s`` float (window start in the recording);
            ``duration_s`` float (seconds of real audio in the window).
        """
        rec_idx, start = self.windows[i]
        rec = self.records[rec_idx]
        if self.train:
            start = self._random_start(rec)
        offset_s = start / self.sample_rate
        wave, _ = load_audio(rec.path, self.sample_rate, offset_s=offset_s, duration_s=self.window_s)
        wave = wave[: self.num_samples]
        real = len(wave)
        if real < self.num_samples:
            wave = np.pad(wave, (0, self.num_samples - real))
        if rec.has_strong:
            strong = events_to_frame_targets(
                rec.events, self.label_index, self.num_frames, self.frame_hop_s, offset_s=offset_s
            )
            weak = strong.max(axis=1) if self.num_frames else np.zeros(len(self.labels), np.float32)
        else:
            strong = np.zeros((len(self.labels), self.num_frames), dtype=np.float32)
            weak = self.encode_weak(rec.weak) if rec.has_weak else np.zeros(len(self.labels), np.float32)
        return {
            "waveform": torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)),
            "strong": torch.from_numpy(strong),
            "weak": torch.from_numpy(np.asarray(weak, dtype=np.float32)),
            "mask_strong": bool(rec.has_strong),
            "mask_weak": bool(rec.has_strong or rec.has_weak),
            "filename": rec.name,
            "offset_s": float(offset_s),
            "duration_s": real / self.sample_rate,
        }


def clip_events(events: Sequence[tuple[float, float, str]], duration_s: float) -> list[tuple[float, float, str]]:
    """Events clipped to ``[0, duration_s]``; events left with no length are dropped."""
    out = []
    for onset, offset, label in events:
        onset, offset = max(0.0, onset), min(duration_s, offset)
        if offset > onset:
            out.append((onset, offset, label))
    return out
