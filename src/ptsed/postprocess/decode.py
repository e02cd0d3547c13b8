"""From (filtered) frame scores to events: thresholds, contiguous regions, gap merging, minimum duration.

The decoding rule is upstream's (``helpers/decode.py: batched_decode_preds`` with
``helpers/encode.py: ManyHotEncoder.decode_strong``, which uses dcase_util's
``find_contiguous_regions``): a frame is active when its score is strictly greater than the threshold;
an event spans ``[first active frame, first inactive frame after it)``; its times are the frame
boundaries ``timestamps[i]`` (upstream: ``i * 0.04`` clipped to ``[0, audio length]``); events are ordered
by class index, then onset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ptsed.core.types import Event


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


def per_class(
    value: float | Sequence[float] | Mapping[str, float] | np.ndarray,
    labels: Sequence[str],
    default: float,
    what: str = "value",
) -> np.ndarray:
    """Expand a setting to one float per class: a scalar, a sequence of K, or a mapping label -> value
    (classes missing from the mapping get ``default``; unknown labels raise ``ConfigError``)."""
    from ptsed.core.errors import ConfigError

    k = len(labels)
    if isinstance(value, Mapping):
        index = {lab: i for i, lab in enumerate(labels)}
        unknown = [name for name in value if name not in index]
        if unknown:
            raise ConfigError(
                f"unknown class {unknown[0]!r} in the per-class {what}s{did_you_mean(unknown[0], labels)}"
            )
        out = np.full(k, float(default))
        for name, v in value.items():
            out[index[name]] = float(v)
        return out
    if np.ndim(value) == 0:
        return np.full(k, float(value))  # type: ignore[arg-type]
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (k,):
        raise ConfigError(f"{arr.size} {what}s given for {k} classes")
    return arr


def did_you_mean(name: str, labels: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(labels), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def find_regions(active: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contiguous runs of True in each column of ``active`` (T, K).

    Returns:
        ``(class_index, onset_frame, offset_frame)``, int64 arrays ordered by class, then onset; a run
        covers frames ``[onset_frame, offset_frame)``.
    """
    active = np.asarray(active, dtype=bool)
    t, k = active.shape
    padded = np.zeros((k, t + 2), dtype=np.int8)
    padded[:, 1:-1] = active.T
    change = np.diff(padded, axis=1)  # (K, T + 1): +1 at onsets, -1 at offsets
    cls_on, onset = np.nonzero(change == 1)
    _, offset = np.nonzero(change == -1)
    return cls_on.astype(np.int64), onset.astype(np.int64), offset.astype(np.int64)


def merge_gaps(
    cls: np.ndarray, onset: np.ndarray, offset: np.ndarray, timestamps: np.ndarray, max_gap_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join consecutive regions of the same class whose gap is at most ``max_gap_s[class]`` seconds.

    Inputs as returned by :func:`find_regions` (ordered by class, then onset); returns the same form.
    """
    if cls.size < 2 or not np.any(max_gap_s > 0):
        return cls, onset, offset
    gap = timestamps[onset[1:]] - timestamps[offset[:-1]]
    joined = (cls[1:] == cls[:-1]) & (gap <= max_gap_s[cls[1:]] + 1e-9)
    starts = np.concatenate([[True], ~joined])
    first = np.flatnonzero(starts)
    last = np.concatenate([first[1:] - 1, [cls.size - 1]])
    return cls[first], onset[first], offset[last]


def decode_events(
    scores: np.ndarray,
    timestamps: np.ndarray,
    labels: Sequence[str],
    thresholds: float | Sequence[float] | np.ndarray,
    *,
    filename: str = "",
    channel: int | None = None,
    min_duration_s: float | np.ndarray = 0.0,
    merge_gap_s: float | np.ndarray = 0.0,
    classes: Sequence[int] | np.ndarray | None = None,
    top_k: int | None = None,
    allowed: np.ndarray | None = None,
) -> list[Event]:
    """Threshold frame scores and return events, in upstream's order (class index, then onset).

    Args:
        scores: (T, K) frame scores (probabilities, already median-filtered if wanted).
        timestamps: (T + 1,) frame boundaries in seconds.
        labels: the K class names.
        thresholds: one threshold or K; a frame is active when ``score > threshold`` (strictly).
        filename: copied into each :class:`Event`.
        channel: copied into each :class:`Event`.
        min_duration_s: events shorter than this (seconds; one or K values) are dropped, after merging.
        merge_gap_s: regions of one class separated by at most this (seconds; one or K values) are joined.
        classes: indices of the classes to decode (``None``: all).
        top_k: at each frame only the ``top_k`` highest-scoring classes can be active.
        allowed: (T, K) bool, frames that may be active (e.g. a top-k mask computed over more classes).

    Returns:
        Events with ``score`` = the highest frame score inside the event.
    """
    scores = np.asarray(scores)
    t, k = scores.shape
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.shape != (t + 1,):
        raise ValueError(f"timestamps must have shape ({t + 1},), got {timestamps.shape}")
    th = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (k,))
    active = scores > th.astype(scores.dtype) if scores.dtype == np.float32 else scores > th
    if top_k is not None and 0 < top_k < k:
        keep = np.zeros_like(active)
        top = np.argpartition(-scores, top_k - 1, axis=1)[:, :top_k]
        np.put_along_axis(keep, top, True, axis=1)
        active &= keep
    if allowed is not None:
        active &= allowed
    if classes is not None:
        mask = np.zeros(k, dtype=bool)
        mask[np.asarray(classes, dtype=np.int64)] = True
        active &= mask[None, :]
    cls, on, off = find_regions(active)
    gaps = np.broadcast_to(np.asarray(merge_gap_s, dtype=np.float64), (k,))
    cls, on, off = merge_gaps(cls, on, off, timestamps, gaps)
    mins = np.broadcast_to(np.asarray(min_duration_s, dtype=np.float64), (k,))
    if np.any(mins > 0) and cls.size:
        dur = timestamps[off] - timestamps[on]
        keep_ev = dur >= mins[cls] - 1e-9
        cls, on, off = cls[keep_ev], on[keep_ev], off[keep_ev]
    events = []
    for c, a, b in zip(cls.tolist(), on.tolist(), off.tolist(), strict=True):
        events.append(
            Event(
                onset=float(timestamps[a]),
                offset=float(timestamps[b]),
                label=labels[c],
                filename=filename,
                score=float(scores[a:b, c].max()),
                channel=channel,
            )
        )
    return events
