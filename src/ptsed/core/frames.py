"""The frame grid every ptsed model shares: its hop, frame timestamps and frame targets from events.

Every model of the zoo outputs one frame per ``FRAME_HOP_S`` seconds (40 ms; upstream's 160-sample hop at
16 kHz, pooled by 4). The frame timestamps (:func:`frame_times`) and the event-to-frame targets
(:func:`events_to_frame_targets`) are written once here and used by models, inference, post-processing,
data loaders and evaluation alike. Pure numpy: no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

FRAME_HOP_S = 0.04
"""Hop of the output frames of every ptsed model, in seconds."""


def frame_times(num: int, hop_s: float, duration_s: float | None = None, first: int = 0) -> np.ndarray:
    """Frame boundaries ``i * hop_s`` for ``i = first .. first + num - 1`` in seconds, float64, clipped to
    ``duration_s`` (``first``: a live stream's later frames).

    Each value is one correctly rounded division of integers (0.04 s frames: ``i / 25``, which equals
    upstream's ``i * 4 / 100``), so the times print as short decimals (``10.32``, not ``10.320000000000002``).
    """
    from fractions import Fraction

    frac = Fraction(hop_s).limit_denominator(1_000_000)
    t = np.arange(first, first + num, dtype=np.float64) * frac.numerator / frac.denominator
    if duration_s is not None:
        np.clip(t, 0.0, duration_s, out=t)
    return t


def events_to_frame_targets(
    events: Iterable[tuple[float, float, str]],
    labels: Sequence[str] | Mapping[str, int],
    num_frames: int,
    hop_s: float = FRAME_HOP_S,
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
