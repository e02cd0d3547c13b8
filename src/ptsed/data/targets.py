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
) -> np.ndarray:
    """Many-hot frame targets (K, T) from events ``(onset_s, offset_s, label)``.

    Frame t covers ``[offset_s + t * hop_s, offset_s + (t + 1) * hop_s)``; an event marks every frame it
    overlaps, from ``floor((onset - offset_s) / hop_s)`` to ``ceil((offset - offset_s) / hop_s)``
    (exclusive), clipped to the grid, as upstream's ``ManyHotEncoder`` rounds outward.

    Args:
        events: (onset, offset, label) in seconds.
        labels: class names in output order, or a mapping name -> index.
        num_frames: T.
        hop_s: frame hop in seconds (0.04 for every ptsed model).
        offset_s: start time of frame 0 (for windows cut from a longer recording).
        ignore_unknown: skip labels not in ``labels`` (else raise ``KeyError``).

    Returns:
        (K, T) float32 array of 0/1.
    """
    index = labels if isinstance(labels, Mapping) else {name: i for i, name in enumerate(labels)}
    out = np.zeros((len(index), num_frames), dtype=np.float32)
    for onset, offset, label in events:
        k = index.get(label)
        if k is None:
            if ignore_unknown:
                continue
            raise KeyError(f"unknown label {label!r}")
        start = int(np.floor((onset - offset_s) / hop_s + 1e-9))
        stop = int(np.ceil((offset - offset_s) / hop_s - 1e-9))
        start, stop = max(start, 0), min(stop, num_frames)
        if stop > start:
            out[k, start:stop] = 1.0
    return out
