"""Change-detection-based sound event bounding boxes (cSEBBs), after Ebbers et al., "Sound Event Bounding
Boxes", Interspeech 2024. Written from the paper's description of the method (not from its reference code).

Per class, the frame score curve is cut into segments at its change points, and every segment becomes a
candidate box with one confidence:

1. **Step filter.** At every frame boundary ``b`` the filter gives the mean score of the ``step_filter_s / 2``
   seconds after ``b`` minus the mean of the ``step_filter_s / 2`` seconds before it (windows clipped at the
   ends of the file). A rise of the score gives a positive peak, a fall a negative one.
2. **Change points** are the local maxima of the filter's magnitude (above ``min_step``). On a flat top (a
   short event within the window) a rise is placed at the top's last boundary and a fall at its first, so
   boxes hug the high scores.
3. **Segments** between consecutive change points (and the ends of the file) are merged while two neighbours'
   mean scores differ by less than ``merge_threshold`` (the closest pair first).
4. Each segment is a **box** ``(onset, offset, confidence)``; the confidence is the segment's mean score
   (``confidence="mean"``) or its maximum (``"max"``).
5. **Detection** keeps the boxes whose confidence exceeds the class's threshold; kept boxes of one class that
   touch are joined (confidence: the larger).

The boxes of all classes, as a piecewise-constant score curve (each box's span carries its confidence), are a
sed_scores_eval score table (:meth:`CSEBB.score_table`, ``ptsed detect --format scores_sebb``), so that PSDS
is computed on the boxes as the paper does. All durations are in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptsed.core.errors import ConfigError
from ptsed.core.types import Event, FrameScores
from ptsed.postprocess.decode import per_class
from ptsed.postprocess.pipeline import _hop_of
from ptsed.postprocess.transforms import TransformingPostProcessor

Box = tuple[float, float, float]
"""(onset_s, offset_s, confidence)."""

DEFAULT_STEP_FILTER_S = 0.48
DEFAULT_MERGE_THRESHOLD = 0.15
CONFIDENCES = ("mean", "max")


def step_filter(y: np.ndarray, half: int) -> np.ndarray:
    """Difference of means right minus left of every frame boundary.

    Args:
        y: (T,) scores of one class.
        half: frames in each half of the window (>= 1).

    Returns:
        (T + 1,) float64: at boundary ``b`` (between frames ``b - 1`` and ``b``), the mean of
        ``y[b : b + half]`` minus the mean of ``y[b - half : b]``, each clipped to the file; 0 at both ends.
    """
    t = len(y)
    c = np.concatenate([[0.0], np.cumsum(np.asarray(y, dtype=np.float64))])
    b = np.arange(t + 1)
    lo, hi = np.maximum(b - half, 0), np.minimum(b + half, t)
    n_left, n_right = b - lo, hi - b
    left = (c[b] - c[lo]) / np.maximum(n_left, 1)
    right = (c[hi] - c[b]) / np.maximum(n_right, 1)
    out = right - left
    out[(n_left == 0) | (n_right == 0)] = 0.0
    return out


def change_points(delta: np.ndarray, min_step: float = 1e-3) -> np.ndarray:
    """Boundaries where ``|delta|`` has a local maximum above ``min_step`` (sorted, without the two ends).

    A flat maximum (equal values over several boundaries, to 1e-9) counts once: at its last boundary for a rise
    (``delta > 0``), at its first for a fall.
    """
    a = np.round(np.abs(delta), 9)
    sign = np.sign(np.round(delta, 9))
    key = a * sign
    starts = np.concatenate([[0], np.flatnonzero(np.diff(key) != 0) + 1])
    ends = np.concatenate([starts[1:] - 1, [len(a) - 1]])
    vals = a[starts]
    left = np.concatenate([[-np.inf], vals[:-1]])
    right = np.concatenate([vals[1:], [-np.inf]])
    peak = (vals >= left) & (vals >= right) & ((vals > left) | (vals > right)) & (vals > min_step)
    points = np.where(sign[starts] > 0, ends, starts)[peak]
    return np.unique(points[(points > 0) & (points < len(a) - 1)])


def segment(y: np.ndarray, cuts: np.ndarray, merge_threshold: float) -> list[tuple[int, int]]:
    """Frame ranges ``[start, end)`` between ``cuts``, neighbours merged while their means differ by less than
    ``merge_threshold`` (the closest pair first)."""
    bounds = [0, *[int(c) for c in cuts], len(y)]
    segs = [[a, b, float(np.sum(y[a:b]))] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    while len(segs) > 1:
        means = [s[2] / (s[1] - s[0]) for s in segs]
        diffs = np.abs(np.diff(means))
        i = int(np.argmin(diffs))
        if diffs[i] >= merge_threshold:
            break
        a, b = segs[i], segs[i + 1]
        segs[i : i + 2] = [[a[0], b[1], a[2] + b[2]]]
    return [(a, b) for a, b, _ in segs]


@dataclass
class CSEBB(TransformingPostProcessor):
    """A :class:`PostProcessor` whose events are cSEBBs (see the module docstring); thresholds, include/exclude,
    sort and a score transform (``--rollup``, ``--class-map``) work as in the median-filter decoder, whose
    ``median_filter_s`` the boxes do not use (the step filter smooths).

    Attributes:
        step_filter_s: length of the step filter window in seconds (both halves together): one for all classes,
            or a mapping label -> seconds (classes not in it use :data:`DEFAULT_STEP_FILTER_S`).
        merge_threshold: neighbouring segments whose mean scores differ by less than this are merged.
        confidence: ``"mean"`` or ``"max"`` score of a box's frames.
        min_step: smallest change the step filter must show to cut the curve.
    """

    step_filter_s: float | Mapping[str, float] = DEFAULT_STEP_FILTER_S
    merge_threshold: float = DEFAULT_MERGE_THRESHOLD
    confidence: str = "mean"
    min_step: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.confidence not in CONFIDENCES:
            raise ConfigError(f"confidence must be one of {', '.join(CONFIDENCES)}, not {self.confidence!r}")
        lengths = self.step_filter_s.values() if isinstance(self.step_filter_s, Mapping) else [self.step_filter_s]
        if not all(float(v) > 0 for v in lengths):
            raise ConfigError(f"step filter lengths must be > 0 s, not {self.step_filter_s}")
        if self.merge_threshold < 0:
            raise ConfigError(f"the merge threshold must be >= 0, not {self.merge_threshold}")

    # -- boxes ---------------------------------------------------------------------------------------
    def step_lengths(self, labels: Sequence[str]) -> np.ndarray:
        """(K,) step filter length of every class, seconds."""
        return per_class(self.step_filter_s, labels, DEFAULT_STEP_FILTER_S, "step filter length")

    def class_boxes(
        self, y: np.ndarray, timestamps: np.ndarray, hop_s: float, step_filter_s: float | None = None
    ) -> list[Box]:
        """All candidate boxes of one class's scores ``y`` (T,), frame boundaries ``timestamps`` (T + 1,);
        ``step_filter_s`` defaults to the one length of :attr:`step_filter_s`."""
        if len(y) == 0:
            return []
        length = step_filter_s if step_filter_s is not None else self.step_lengths(["_"])[0]
        half = max(1, round(length / hop_s / 2))
        cuts = change_points(step_filter(y, half), self.min_step)
        reduce = np.mean if self.confidence == "mean" else np.max
        return [(float(timestamps[a]), float(timestamps[b]), float(reduce(y[a:b]))) for a, b in segment(
            np.asarray(y, dtype=np.float64), cuts, self.merge_threshold
        )]  # fmt: skip

    def boxes(self, frame_scores: FrameScores) -> dict[str, list[Box]]:
        """Candidate boxes of every class (after the transform), label -> boxes in time order."""
        fs = self._apply(frame_scores)
        hop, steps = _hop_of(fs), self.step_lengths(fs.labels)
        return {lab: self.class_boxes(fs.scores[:, k], fs.timestamps, hop, steps[k]) for k, lab in enumerate(fs.labels)}

    def score_table(self, frame_scores: FrameScores) -> FrameScores:
        """The boxes as a sed_scores_eval score table: rows between the union of all box boundaries, each
        class's value the confidence of its box there (``timestamps`` are those boundaries, not a grid)."""
        boxes = self.boxes(frame_scores)
        edges = np.unique(np.concatenate([[frame_scores.timestamps[0], frame_scores.timestamps[-1]]] + [
            np.array([b[0] for b in bx] + [b[1] for b in bx]) for bx in boxes.values() if bx
        ]))  # fmt: skip
        table = np.zeros((len(edges) - 1, len(boxes)), dtype=np.float32)
        mids = (edges[:-1] + edges[1:]) / 2
        for k, bx in enumerate(boxes.values()):
            if bx:
                ends = np.array([b[1] for b in bx])
                idx = np.minimum(np.searchsorted(ends, mids, side="right"), len(bx) - 1)
                table[:, k] = np.array([b[2] for b in bx])[idx]
        meta = {**frame_scores.meta, "decoder": "csebb"}
        return FrameScores(table, edges, list(boxes), frame_scores.source, frame_scores.channel, meta)

    # -- the PostProcessor interface -------------------------------------------------------------------
    def events(self, frame_scores: FrameScores, filename: str | None = None, **kwargs: Any) -> list[Event]:
        fs = self._apply(frame_scores)
        r = self._resolved(fs.labels)
        classes = np.arange(len(fs.labels)) if r["classes"] is None else r["classes"]
        hop, steps = _hop_of(fs), self.step_lengths(fs.labels)
        name = fs.source if filename is None else filename
        out: list[Event] = []
        for k in classes:
            kept: list[list[float]] = []
            for on, off, conf in self.class_boxes(fs.scores[:, k], fs.timestamps, hop, steps[k]):
                if conf <= r["thresholds"][k]:
                    continue
                if kept and abs(kept[-1][1] - on) < 1e-9:
                    kept[-1][1], kept[-1][2] = off, max(kept[-1][2], conf)
                else:
                    kept.append([on, off, conf])
            out += [Event(on, off, fs.labels[k], name, conf, fs.channel) for on, off, conf in kept]
        if self.sort == "class":
            return out
        index = {lab: i for i, lab in enumerate(fs.labels)}
        out.sort(key=lambda e: (e.onset, index[e.label], e.offset))
        return out

    def filter(self, frame_scores: FrameScores, hop_s: float | None = None) -> FrameScores:
        """The transformed scores, unfiltered (the boxes need no median filter)."""
        return self._apply(frame_scores)

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "decoder": "csebb",
            "step_filter_s": dict(step) if isinstance(step := self.step_filter_s, Mapping) else step,
            "merge_threshold": self.merge_threshold,
            "confidence": self.confidence,
            "min_step": self.min_step,
        }


def as_csebb(postprocessor: Any, **settings: Any) -> CSEBB:
    """A :class:`CSEBB` with ``postprocessor``'s thresholds, include/exclude, sort (and transform)."""
    from dataclasses import fields

    values = {f.name: getattr(postprocessor, f.name) for f in fields(postprocessor) if f.init and f.name != "_cache"}
    return CSEBB(**{**values, **{k: v for k, v in settings.items() if v is not None}})


__all__: Sequence[str] = ["CSEBB", "as_csebb", "change_points", "segment", "step_filter"]
