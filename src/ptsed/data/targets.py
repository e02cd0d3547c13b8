"""Frame targets on a model's frame grid from strong labels (events in seconds)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def events_to_frame_targets(
    events: Iterable[tuple[float, float, str]],
    labels: Sequence[str] | Mapping[str, int],
    num_frames: int,
    hop_s: float = 0.04,
    *,
    offset_s: float = 0.0,
    ignore_unknown: bool = True,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Many-hot frame targets (K, T) from events ``(onset_s, offset_s, label)``.

    Frame t covers ``[offset_s + t * hop_s, offset_s + (t + 1) * hop_s)``; an event marks the frames from
    ``floor(x_on)`` to ``ceil(x_off)`` (exclusive), clipped to the grid, where ``x = (t - offset_s) *
    sample_rate / hop_samples`` and ``hop_samples = round(hop_s * sample_rate)``. This is the arithmetic of
    upstream's ``ManyHotEncoder`` (time * 16000 / 160 / 4, truncated for onsets, ceiled for offsets), bit for
    bit, including its float rounding (an onset at 8.04 s starts at frame 200, not 201).

    Args:
        events: (onset, offset, label) in seconds.
        labels: class names in output order, or a mapping name -> index.
        num_frames: T.
        hop_s: frame hop in seconds (0.04 for every ptsed model).
        offset_s: start time of frame 0 (for windows cut from a longer recording).
        ignore_unknown: skip labels not in ``labels`` (else raise ``KeyError``).
        sample_rate: the rate in Hz the frame positions are counted in (upstream's encoder: 16000).

    Returns:
        (K, T) float32 array of 0/1.
    """
    index = labels if isinstance(labels, Mapping) else {name: i for i, name in enumerate(labels)}
    out = np.zeros((len(index), num_frames), dtype=np.float32)
    hop_samples = round(hop_s * sample_rate)
    for onset, offset, label in events:
        k = index.get(label)
        if k is None:
            if ignore_unknown:
                continue
            raise KeyError(f"unknown label {label!r}")
        x_on = min(max((onset - offset_s) * sample_rate / hop_samples, 0.0), num_frames)
        x_off = min(max((offset - offset_s) * sample_rate / hop_samples, 0.0), num_frames)
        start, stop = int(np.floor(x_on)), int(np.ceil(x_off))
        if stop > start:
            out[k, start:stop] = 1.0
    return out
