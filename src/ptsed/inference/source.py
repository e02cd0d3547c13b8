"""The score-source seam: what the detect loop needs from anything that produces frame scores.

A score source turns inputs into frame scores and nothing else; post-processing
(:class:`ptsed.postprocess.pipeline.PostProcessor`) and writing (:mod:`ptsed.io.results`) come after it,
in :func:`ptsed.inference.detect.detect`. Two sources exist:

- :class:`ptsed.inference.predictor.Predictor`: a model or an ensemble run over audio of any length;
- :class:`ptsed.inference.replay.ScoreReplay`: frame scores saved by ``ptsed detect --format npz``.

A new one (a live stream, an ONNX Runtime session, scores from another toolkit) implements
:class:`ScoreSource` and is passed as ``ptsed.detect(inputs, scores=my_source)``; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

from ptsed.inference.types import FileResult


@runtime_checkable
class ScoreSource(Protocol):
    """Inputs -> frame scores, one :class:`FileResult` per input, in input order.

    Attributes:
        labels: the K class names of the score columns (may be empty until the first input is read).
        sample_rate: rate in Hz of the audio the scores describe (recorded with the outputs).
        channels: ``"mix"`` (one stream per input) or ``"each"`` (one per channel; results carry
            ``FrameScores.channel``).
        upstream_chunking: the scores follow upstream's chunking (zero-length padded frames at the end);
            post-processing then reports events in upstream's order and writers use upstream's layout.
        models: the models behind the scores (their checkpoints may store post-processing defaults,
            see :meth:`PostProcessor.for_model`); empty when there are none.
    """

    labels: list[str]
    sample_rate: int
    channels: str
    upstream_chunking: bool
    models: list[Any]

    def settings(self) -> dict[str, Any]:
        """Plain JSON values that determine the scores (hashed by ``--resume``)."""
        ...

    def score_many(
        self, inputs: Iterable[Any], *, progress: Callable[[float], None] | None = None
    ) -> Iterator[FileResult]:
        """Yield, per input and in order, a :class:`FileResult` whose ``scores`` hold one
        :class:`~ptsed.core.types.FrameScores` per stream ((T, K) float32 probabilities, (T + 1,) frame
        boundaries in seconds) and whose ``events`` are empty; a failed input has ``error`` set and the
        run goes on. ``progress`` is called with seconds of audio completed."""
        ...
