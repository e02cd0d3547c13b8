"""Data types that travel between the stages: frame scores and events. Times are in seconds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FrameScores:
    """Frame-level scores of one audio stream.

    Attributes:
        scores: (T, K) float32, probabilities in [0, 1] (or logits where stated), time-major.
        timestamps: (T + 1,) float64, frame boundaries in seconds: frame t spans
            ``[timestamps[t], timestamps[t + 1])``. The last boundary is the end of the audio.
        labels: the K class names, in column order.
        source: the file (or stream name) the scores belong to.
        channel: channel index when channels are processed separately, else ``None``.
    """

    scores: np.ndarray
    timestamps: np.ndarray
    labels: list[str]
    source: str = ""
    channel: int | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scores.ndim != 2:
            raise ValueError(f"scores must be (T, K), got shape {self.scores.shape}")
        t, k = self.scores.shape
        if self.timestamps.shape != (t + 1,):
            raise ValueError(f"timestamps must have shape ({t + 1},) for {t} frames, got {self.timestamps.shape}")
        if len(self.labels) != k:
            raise ValueError(f"{len(self.labels)} labels for {k} score columns")

    @property
    def onsets(self) -> np.ndarray:
        """(T,) frame start times in seconds."""
        return self.timestamps[:-1]

    @property
    def offsets(self) -> np.ndarray:
        """(T,) frame end times in seconds."""
        return self.timestamps[1:]

    @property
    def duration(self) -> float:
        return float(self.timestamps[-1])

    def to_dataframe(self):  # noqa: ANN201 - pandas is optional
        """The sed_scores_eval scores DataFrame: columns ``onset, offset, *labels``."""
        import pandas as pd

        df = pd.DataFrame(self.scores, columns=list(self.labels))
        df.insert(0, "offset", self.offsets)
        df.insert(0, "onset", self.onsets)
        return df


@dataclass(frozen=True)
class Event:
    """One detected (or annotated) event: ``[onset, offset)`` in seconds."""

    onset: float
    offset: float
    label: str
    filename: str = ""
    score: float | None = None
    channel: int | None = None
