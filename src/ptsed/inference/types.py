"""What the inference engine returns per input: frame scores, events, embeddings, or the error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptsed.core.types import Event, FrameScores


@dataclass
class Embeddings:
    """Frame embeddings of one audio stream on the model's frame grid.

    Attributes:
        values: (T, D) float32, frame t spans ``[timestamps[t], timestamps[t + 1])``.
        timestamps: (T + 1,) float64 frame boundaries in seconds.
        source: the file (or stream name).
        layer: the layer asked for (``None``: the head input).
        models: names of the models (several: their embeddings are concatenated along D).
        channel: channel index when channels are processed separately, else ``None``.
    """

    values: np.ndarray
    timestamps: np.ndarray
    source: str = ""
    layer: int | None = None
    models: list[str] = field(default_factory=list)
    channel: int | None = None

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or self.timestamps.shape != (self.values.shape[0] + 1,):
            raise ValueError(
                f"embeddings must be (T, D) with T + 1 timestamps, got {self.values.shape} and {self.timestamps.shape}"
            )


@dataclass
class FileResult:
    """Everything one run produced for one input.

    Attributes:
        source: the input path (``"<array>"`` for in-memory audio).
        name: the input's name in tables (``filename`` column; the path relative to the folder it was
            found in).
        duration_s: decoded duration in seconds.
        sample_rate: the file's own sample rate in Hz.
        channels: the file's channel count.
        scores: raw frame probabilities, one :class:`FrameScores` per processed stream (the mono mix, or
            each channel).
        filtered: the post-processed (median-filtered) scores, same layout; computed from ``scores`` by
            ``postprocessor`` when first read (long files need no filtered copy unless it is asked for).
        events: detected events of all streams.
        embeddings: one :class:`Embeddings` per stream (``ptsed embed``), else empty.
        error: why the file failed (then everything else is empty).
        elapsed_s: wall time spent on the file (decode to last window).
        input_name: the input's own relative name, which names its output files and keys it in
            ``--resume`` (default: ``name``; replayed score files keep the audio's ``name`` for tables).
    """

    source: str
    name: str
    duration_s: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    scores: list[FrameScores] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    embeddings: list[Embeddings] = field(default_factory=list)
    error: str | None = None
    elapsed_s: float = 0.0
    postprocessor: Any = field(default=None, repr=False, compare=False)
    """The :class:`ptsed.postprocess.pipeline.PostProcessor` that made ``events`` (filters ``scores``)."""
    _filtered: list[FrameScores] | None = field(default=None, repr=False, compare=False)
    input_name: str = ""

    def __post_init__(self) -> None:
        if not self.input_name:
            self.input_name = self.name

    @property
    def ok(self) -> bool:
        return self.error is None

    def add_events(self, postprocessor: Any) -> FileResult:
        """Set ``events`` from ``scores`` with ``postprocessor`` (a
        :class:`ptsed.postprocess.pipeline.PostProcessor`, which also gives ``filtered``); returns ``self``.
        A failed result stays as it is."""
        self.postprocessor = postprocessor
        self._filtered = None
        if self.error is None:
            self.events = postprocessor.stream_events(self.scores, filename=self.name)
        return self

    @property
    def filtered(self) -> list[FrameScores]:
        """Median-filtered scores, one per stream (computed on first use, then kept)."""
        if self._filtered is None:
            pp = self.postprocessor
            self._filtered = [pp.filter(fs) for fs in self.scores] if pp is not None else []
        return self._filtered

    @filtered.setter
    def filtered(self, value: list[FrameScores]) -> None:
        self._filtered = list(value)
