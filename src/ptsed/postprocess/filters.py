"""Temporal median filtering of frame scores, with lengths in seconds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ptsed.core.frames import FRAME_HOP_S


def seconds_to_frames(length_s: float, hop_s: float) -> int:
    """Nearest whole number of frames for a filter length in seconds (0.36 s at 0.04 s -> 9); at least 1."""
    if length_s < 0:
        raise ValueError(f"a median filter length must be >= 0 s, got {length_s}")
    return max(1, int(np.floor(length_s / hop_s + 0.5)))


def filter_sizes(lengths_s: Sequence[float], hop_s: float) -> list[int]:
    """Filter sizes in frames for lengths in seconds (0 -> 1 frame, i.e. no filtering)."""
    return [seconds_to_frames(v, hop_s) if v > 0 else 1 for v in lengths_s]


def median_filter(
    scores: np.ndarray,
    length_s: float | Sequence[float] | Mapping[str, float] | None,
    hop_s: float = FRAME_HOP_S,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Class-wise median filter over time, as upstream (``scipy.ndimage.median_filter``, mode ``reflect``).

    Args:
        scores: (T, K) frame scores, time-major.
        length_s: filter length in seconds: one for all classes, one per class (sequence of K), or a
            mapping label -> seconds (classes not in it are not filtered); ``None`` or 0 disables it.
        hop_s: frame hop in seconds.
        labels: the K class names, needed when ``length_s`` is a mapping.

    Returns:
        (T, K) filtered scores, same dtype.
    """
    from scipy.ndimage import median_filter as _mf

    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (T, K), got shape {scores.shape}")
    if length_s is None:
        return scores.copy()
    if isinstance(length_s, Mapping):
        if labels is None:
            raise ValueError("per-class median filter lengths given by name need the labels")
        lengths = [float(length_s.get(lab, 0.0)) for lab in labels]
    elif np.ndim(length_s) == 0:
        lengths = [float(length_s)] * scores.shape[1]
    else:
        lengths = [float(v) for v in length_s]
        if len(lengths) != scores.shape[1]:
            raise ValueError(f"{len(lengths)} median filter lengths for {scores.shape[1]} classes")
    sizes = filter_sizes(lengths, hop_s)
    if len(set(sizes)) == 1:
        return scores.copy() if sizes[0] == 1 else _mf(scores, size=(sizes[0], 1))
    out = scores.copy()
    for size in set(sizes):
        if size == 1:
            continue
        cols = [k for k, s in enumerate(sizes) if s == size]
        out[:, cols] = _mf(scores[:, cols], size=(size, 1))
    return out
