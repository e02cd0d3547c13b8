"""Live detection: frame scores and events of a stream, pushed block by block, equal to the offline result.

:class:`StreamDetector` takes sample blocks of any size (1 sample, or longer than a window) and returns what
became final: the stitched frame scores, their median-filtered copy, and the events that closed. It is
built from the same pieces as :class:`ptsed.inference.predictor.Predictor`, so with the same window, hop
and stitch settings its frame scores equal those of ``ptsed detect`` on the same audio (float noise of the
batch size aside) and so do its events. Latency is the only price:

- a frame is final once the window after the one that holds it has arrived (centre stitching: about
  ``(window + hop) / 2`` after the frame; 5.25 s with 10 s windows and a 0.5 s hop), or at :meth:`flush`;
- a filtered frame needs half the median filter of right context (0.18 s by default);
- an event closes when its first inactive frame is final, and when no merge (``merge_gap_s``) can join it
  to a later one.

Memory stays bounded however long the stream runs: about one window of samples, one window of outputs,
the median filter's context and the merge gap's frames; events are handed out, never kept.

Example::

    import ptsed
    det = ptsed.StreamDetector("demo", sample_rate=44100, channels=2, hop_s=1.0)
    for block in blocks:                      # (n, 2) float32 at 44.1 kHz, any n
        for event in det.push(block).events:
            print(event.label, event.onset, event.offset)
    rest = det.flush()                        # closes open events
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptsed.core.errors import AudioError, ConfigError
from ptsed.core.types import Event, FrameScores
from ptsed.inference.windows import Stitcher, WindowCutter
from ptsed.io.audio import BlockResampler
from ptsed.postprocess.decode import find_regions, frame_times
from ptsed.postprocess.filters import filter_sizes, median_filter
from ptsed.postprocess.pipeline import PostProcessor

__all__ = ["StreamDetector", "StreamResampler", "StreamResult", "StreamingPostProcessor"]


@dataclass
class StreamResult:
    """What one :meth:`StreamDetector.push` (or :meth:`~StreamDetector.flush`) made final.

    Attributes:
        scores: raw frame probabilities (n, K) of the frames that became final, with their (n + 1,)
            boundaries in seconds since the stream started (n may be 0).
        filtered: the median-filtered scores of the frames whose filter context has passed (m, K); the
            same values ``ptsed detect --format scores_filtered`` writes.
        events: the events that closed, in time order (onset, class, offset).
    """

    scores: FrameScores
    filtered: FrameScores
    events: list[Event] = field(default_factory=list)


def _empty_scores(labels: Sequence[str], at_s: float, name: str, hop_s: float) -> FrameScores:
    return FrameScores(
        np.zeros((0, len(labels)), np.float32), np.array([at_s]), list(labels), source=name, meta={"hop_s": hop_s}
    )


# ----------------------------------------------------------------------------------------------------
# resampling and mixing
# ----------------------------------------------------------------------------------------------------
class StreamResampler(BlockResampler):
    """Mixes pushed blocks to mono and resamples them as :class:`ptsed.io.audio.AudioStream` does a file
    (the same :class:`~ptsed.io.audio.BlockResampler`), after checking their shape and values.

    Blocks are (n,) or (n, channels), samples on the first axis; output blocks are (m,) float32.

    Args:
        sr_in: the stream's rate in Hz.
        sr_out: the model's rate in Hz.
        channels: channels of the input blocks.
    """

    def __init__(self, sr_in: int, sr_out: int, channels: int = 1) -> None:
        if sr_in <= 0 or channels <= 0:
            raise ConfigError(f"sample rate ({sr_in}) and channels ({channels}) must be positive")
        super().__init__(sr_in, sr_out, channels, mono=True)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Check, mix and resample one block; returns the (m,) samples that are ready (m may be 0)."""
        x = np.asarray(block)
        if not ((x.ndim == 2 and x.shape[1] == self.channels) or (x.ndim == 1 and self.channels == 1)):
            want = "(n,) or (n, 1)" if self.channels == 1 else f"(n, {self.channels})"
            raise AudioError(f"a block of shape {x.shape} was pushed; this stream takes {want} blocks")
        if not np.isfinite(x).all():
            bad = int(np.argwhere(~np.isfinite(x))[0, 0]) + self.n_in
            raise AudioError(f"the stream holds NaN or infinite samples (first at {bad / self.sr_in:.3f} s)")
        return np.ascontiguousarray(super().push(x), dtype=np.float32)


# ----------------------------------------------------------------------------------------------------
# post-processing on a stream
# ----------------------------------------------------------------------------------------------------
class StreamingPostProcessor:
    """:meth:`PostProcessor.events` on frames that arrive in pieces, with the same events.

    Frames pass through the median filter once their right context (half the longest filter) is there;
    then thresholds, top-k and the class lists mark active frames, and runs of active frames become events
    when they end. An event is handed out when it can no longer change: its end is known, and no later run
    of its class can start within ``merge_gap_s`` of it. :meth:`finish` closes everything at the stream's
    end (its duration clips the last frame, as offline).

    Args:
        postprocess: the settings (a :class:`PostProcessor`).
        labels: the K class names.
        hop_s: frame hop in seconds.
        name: the ``filename`` of the events.
    """

    def __init__(self, postprocess: PostProcessor, labels: Sequence[str], hop_s: float, name: str = "") -> None:
        self.pp, self.labels, self.hop, self.name = postprocess, list(labels), float(hop_s), name
        r = postprocess._resolved(self.labels)
        k = len(self.labels)
        self.lengths = r["median"]
        sizes = [1] if self.lengths is None else filter_sizes(list(self.lengths), self.hop)
        self.left = max(sizes) // 2  # frames of context each side of a filtered frame
        self.thresholds = r["thresholds"]
        self.min_duration = r["min_duration"]
        self.merge_gap = r["merge_gap"]
        self.classes = np.ones(k, bool)
        if r["classes"] is not None:
            self.classes[:] = False
            self.classes[r["classes"]] = True
        self.top_k = postprocess.top_k if postprocess.top_k is not None and postprocess.top_k < k else None
        gap_frames = int(math.ceil(float(self.merge_gap.max(initial=0.0)) / self.hop + 1e-9)) + 1
        self.keep_frames = gap_frames  # filtered frames kept for the scores of merged gaps
        self._raw = np.zeros((0, k), np.float32)  # raw frames [raw_start, raw_start + len)
        self._raw_start = 0
        self._next = 0  # next frame to filter
        self._hist = np.zeros((0, k), np.float32)  # filtered frames [next - len, next)
        self._open_on = np.full(k, -1, np.int64)  # onset frame of the active run (-1: none)
        self._open_max = np.full(k, -np.inf, np.float64)
        self._pend: dict[int, tuple[int, int, float]] = {}  # class -> closed run (on, off, score) awaiting merges
        from fractions import Fraction

        frac = Fraction(self.hop).limit_denominator(1_000_000)  # the times of frame_times, to the bit
        self._num, self._den = frac.numerator, frac.denominator

    def _t(self, i: int) -> float:
        return i * self._num / self._den

    def push(self, raw: np.ndarray) -> tuple[np.ndarray, int, list[Event]]:
        """Add raw frames (n, K); returns ``(filtered frames, index of the first, closed events)``."""
        return self._run(raw, end=False, duration=None)

    def finish(self, duration_s: float) -> tuple[np.ndarray, int, list[Event]]:
        """End of the stream at ``duration_s`` seconds: filter the rest, close every event."""
        return self._run(np.zeros((0, len(self.labels)), np.float32), end=True, duration=duration_s)

    def _run(self, raw: np.ndarray, end: bool, duration: float | None) -> tuple[np.ndarray, int, list[Event]]:
        if raw.shape[0]:
            self._raw = np.concatenate([self._raw, raw.astype(np.float32, copy=False)])
        total = self._raw_start + self._raw.shape[0]
        upto = total if end else total - self.left  # frames whose right context is there
        first = self._next
        k = len(self.labels)
        if upto <= first:
            filtered = np.zeros((0, k), np.float32)
        else:
            lo = first - self._raw_start  # >= left context, or the stream's start (reflected, as offline)
            block = self._raw
            if self.lengths is not None:
                block = median_filter(block, list(self.lengths), self.hop)
            filtered = np.ascontiguousarray(block[lo : lo + upto - first], dtype=np.float32)
            self._next = upto
            drop = max(0, self._next - self.left - self._raw_start)
            self._raw = self._raw[drop:]
            self._raw_start += drop
        events = self._decode(filtered, first, end, duration)
        return filtered, first, events

    def _decode(self, filt: np.ndarray, a: int, end: bool, duration: float | None) -> list[Event]:
        n, k = filt.shape
        out: list[Event] = []
        hist_start = a - self._hist.shape[0]
        hist = np.concatenate([self._hist, filt]) if n else self._hist
        if n:
            active = filt > self.thresholds.astype(np.float32)
            if self.top_k is not None:
                keep = np.zeros_like(active)
                top = np.argpartition(-filt, self.top_k - 1, axis=1)[:, : self.top_k]
                np.put_along_axis(keep, top, True, axis=1)
                active &= keep
            active &= self.classes[None, :]
            cls, on, off = find_regions(active)
            # runs open before this block that end at its first frame
            for c in np.flatnonzero((self._open_on >= 0) & ~active[0]).tolist():
                self._close(c, a)
            for c, o, f in zip(cls.tolist(), on.tolist(), off.tolist(), strict=True):
                if not (o == 0 and self._open_on[c] >= 0):
                    self._onset(c, a + o, out, hist, hist_start)
                self._open_max[c] = max(self._open_max[c], float(filt[o:f, c].max()))
                if f < n:
                    self._close(c, a + f)
        b = a + n
        if end:
            for c in np.flatnonzero(self._open_on >= 0).tolist():
                self._close(c, b)
            for c in list(self._pend):
                self._final(c, out, duration, b)
        else:
            for c in list(self._pend):  # no later run can start within the merge gap
                if self._t(b) - self._t(self._pend[c][1]) > self.merge_gap[c] + 1e-9 and self._open_on[c] < 0:
                    self._final(c, out, None, b)
        self._hist = hist[-self.keep_frames :] if hist.shape[0] > self.keep_frames else hist
        return self.pp._sorted(out, self.labels)

    def _onset(self, c: int, i: int, out: list[Event], hist: np.ndarray, hist_start: int) -> None:
        pend = self._pend.get(c)
        if pend is not None:
            on, off, score = pend
            if self._t(i) - self._t(off) <= self.merge_gap[c] + 1e-9:  # joined, gap frames included
                gap = hist[off - hist_start : i - hist_start, c]
                self._open_on[c] = on
                self._open_max[c] = max(score, float(gap.max()) if gap.size else -np.inf)
                del self._pend[c]
                return
            self._final(c, out, None, i)
        self._open_on[c] = i
        self._open_max[c] = -np.inf

    def _close(self, c: int, i: int) -> None:
        """The active run of class ``c`` ends before frame ``i``: it waits for merges (:meth:`_onset`)."""
        self._pend[c] = (int(self._open_on[c]), i, float(self._open_max[c]))
        self._open_on[c] = -1
        self._open_max[c] = -np.inf

    def _final(self, c: int, out: list[Event], duration: float | None, total: int) -> None:
        on, off, score = self._pend.pop(c)
        t_on, t_off = self._t(on), self._t(off)
        if duration is not None and off == total:
            t_off = min(t_off, duration)
        if t_off - t_on < self.min_duration[c] - 1e-9:
            return
        out.append(Event(onset=t_on, offset=t_off, label=self.labels[c], filename=self.name, score=score))


# ----------------------------------------------------------------------------------------------------
# the detector
# ----------------------------------------------------------------------------------------------------
class StreamDetector:
    """Frame-level sound event detection on a live stream, with the offline results.

    Args:
        model: what :class:`ptsed.inference.predictor.Predictor` takes (an :class:`SEDModel`, a zoo name,
            ``(name, checkpoint_path)``, or a list of these: an ensemble), or a ready ``Predictor`` (its
            window, hop, stitch and post-processing are then used unless given here).
        sample_rate: the stream's sample rate in Hz (resampled to the model's on the fly).
        channels: channels of the pushed blocks (mixed to mono by the channel mean, as ``detect``).
        window_s: window length in seconds (default: the model's, 10 s).
        hop_s: hop between windows in seconds (default: half a window, as ``detect``; a live stream
            wants less: latency is about ``(window + hop) / 2``).
        stitch: ``"centre"`` or ``"mean"`` (see :mod:`ptsed.inference.windows`).
        postprocess: a :class:`PostProcessor`, or a dict of its fields, or ``None`` (the defaults, with
            the per-class values stored in a fine-tuned checkpoint), exactly as ``Predictor`` and ``detect``.
        transform: a :class:`ptsed.postprocess.transforms.ScoreTransform` (``--rollup``, ``--class-map``)
            applied to each block of final raw frame scores before the streaming post-processing, so the
            filtered scores and events are of its classes, as ``detect`` with the same options; a
            post-processor made by :func:`~ptsed.postprocess.transforms.with_transform` brings its own (this one
            is applied after it). Class names are checked here, before any audio is pushed.
        name: the stream's name (``filename`` of its events, ``source`` of its scores).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        batch_size: windows per forward pass when a block brings several.
        **options: further ``Predictor`` options (``precision``, ``int8``).

    Attributes:
        labels: class names of the filtered scores and events (the transform's, if any).
        model_labels: class names of the raw scores (the model's).
        predictor: the underlying :class:`Predictor` (models, window plan, post-processing).
        samples_in: samples pushed so far (at the stream's rate).
        frames_out: raw frames handed out so far.
    """

    def __init__(
        self,
        model: Any,
        sample_rate: int,
        channels: int = 1,
        window_s: float | None = None,
        hop_s: float | None = None,
        stitch: str = "centre",
        postprocess: PostProcessor | dict | None = None,
        *,
        transform: Any = None,
        name: str = "stream",
        device: str | None = "auto",
        batch_size: int | None = None,
        **options: Any,
    ) -> None:
        from ptsed.inference.predictor import Predictor

        if isinstance(model, Predictor):
            if window_s is not None or hop_s is not None or options:
                raise ConfigError("give window, hop and other options to the Predictor, not to StreamDetector")
            self.predictor = model
            if postprocess is not None:  # a dict is completed by PostProcessor.for_model, as in detect
                self.predictor.postprocess = postprocess
        else:
            specs = model if isinstance(model, list) else [model]
            self.predictor = Predictor(
                specs,
                window_s=window_s,
                hop_s=hop_s,
                stitch=stitch,
                postprocess=postprocess,
                device=device,
                batch_size=batch_size,
                **options,
            )
        p = self.predictor
        if p.upstream_chunking:
            raise ConfigError("upstream chunking needs the whole file; a stream uses overlapping windows")
        if p.channels != "mix":
            raise ConfigError("a stream is mixed to mono (channels='mix')")
        if not p.labels:
            raise ConfigError(f"model {p.models[0].name!r} has no classification head")
        self.model_labels = list(p.labels)
        self.postprocess, self.transform = _split_transform(p.postprocess, transform)
        # unknown class names (map, --include/--exclude, per-class values): before any audio is read
        self.labels = self.model_labels if self.transform is None else self.transform.output_labels(p.labels)
        if self.transform is not None:
            from ptsed.postprocess.transforms import keep_stored_classes

            self.postprocess = keep_stored_classes(self.postprocess, self.labels)
        self.postprocess.class_indices(self.labels)
        self.name = name
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.frame_hop_s = p.frame_hop_s
        self._resampler = StreamResampler(self.sample_rate, p.sample_rate, self.channels)
        self._cutter = WindowCutter(p.window_samples, p.hop_frames * p.frame_samples, p.frame_samples)
        self._stitcher = Stitcher(p.window_frames, p.stitch, keep=False)
        self._post = StreamingPostProcessor(self.postprocess, self.labels, self.frame_hop_s, name)
        self._fed = 0  # samples at the model's rate given to the cutter
        self.frames_out = 0
        self.closed = False

    @property
    def samples_in(self) -> int:
        return self._resampler.n_in

    @property
    def duration_s(self) -> float:
        """Seconds of audio pushed so far."""
        return self._resampler.n_in / self.sample_rate

    @property
    def final_s(self) -> float:
        """Seconds up to which the raw frame scores are final."""
        return self.frames_out * self.frame_hop_s

    def warmup(self) -> None:
        """Run the model once on a silent window, so the first real window does not pay for the lazy set-up
        of the framework (seconds on a CPU): a real-time source then does not fall behind at its start."""
        p = self.predictor
        p._forward(np.zeros((1, p.window_samples), np.float32), "detect", None)

    def push(self, samples: np.ndarray) -> StreamResult:
        """Add a block of samples, (n,) or (n, channels) at the stream's rate; returns what became final.

        Raises:
            AudioError: a block of the wrong shape, or NaN/infinite samples.
        """
        if self.closed:
            raise ConfigError("the stream was flushed; make a new StreamDetector")
        block = self._resampler.push(samples)
        return self._process(block, end=False)

    def flush(self) -> StreamResult:
        """End the stream: the last windows (placed as offline), the remaining frames, every open event."""
        if self.closed:
            raise ConfigError("the stream was already flushed")
        self.closed = True
        return self._process(self._resampler.finish(), end=True)

    def _process(self, block: np.ndarray, end: bool) -> StreamResult:
        p = self.predictor
        windows = list(self._cutter.feed(block)) if block.shape[0] else []
        self._fed += block.shape[0]
        total = self._fed
        if end and total > 0:
            windows += list(self._cutter.finish(total))
        for i in range(0, len(windows), p.batch_size):
            part = windows[i : i + p.batch_size]
            out = p._forward(np.stack([w for _, w in part]), "detect", None)
            if not np.isfinite(out).all():
                raise ConfigError(
                    f"{self.name}: the model gave NaN or infinite scores (window at {part[0][0] / p.sample_rate:.2f} s)"
                )
            for (start, _), values in zip(part, out, strict=True):
                self._stitcher.add(start // p.frame_samples, values)
        k = len(self.model_labels)
        raw: np.ndarray | None
        if end:
            raw = self._stitcher.finish(math.ceil(total / p.frame_samples)) if total > 0 else None
            duration: float | None = total / p.sample_rate
        else:
            raw, duration = self._stitcher.take(), None
        if raw is None or raw.shape[0] == 0:
            raw = np.zeros((0, k), np.float32)
        first = self.frames_out
        self.frames_out += raw.shape[0]
        final = raw
        if self.transform is not None:
            final = self.transform(FrameScores(raw, np.zeros(raw.shape[0] + 1), self.model_labels)).scores
        filtered, f_first, events = self._post.push(final)
        if end:
            rest, _, more = self._post.finish(duration or 0.0)
            filtered = np.concatenate([filtered, rest])
            events = self.postprocess._sorted(events + more, self.labels)
        return StreamResult(
            self._frames(raw, first, duration, self.model_labels),
            self._frames(filtered, f_first, duration, self.labels),
            events,
        )

    def _frames(self, values: np.ndarray, first: int, duration: float | None, labels: list[str]) -> FrameScores:
        ts = frame_times(values.shape[0] + 1, self.frame_hop_s, duration, first=first)
        return FrameScores(values, ts, labels, source=self.name, meta={"hop_s": self.frame_hop_s})


def _split_transform(postprocess: PostProcessor, transform: Any) -> tuple[PostProcessor, Any]:
    """The median-filter post-processing and the score transform (``transform`` after the post-processor's
    own) that a stream applies in two steps.

    Raises:
        ConfigError: a decoder other than the median filter (cSEBB needs a whole clip).
    """
    from dataclasses import fields

    from ptsed.postprocess.transforms import ScoreTransform, TransformingPostProcessor

    if transform is not None and not isinstance(transform, ScoreTransform):
        raise ConfigError(f"transform must be a ScoreTransform, not {type(transform).__name__}")
    if type(postprocess) not in (PostProcessor, TransformingPostProcessor):
        raise ConfigError(
            f"a stream decodes with the median filter; {type(postprocess).__name__} post-processing needs "
            "whole clips (use ptsed detect)"
        )
    if isinstance(postprocess, TransformingPostProcessor):
        own = postprocess.transform
        values = {f.name: getattr(postprocess, f.name) for f in fields(PostProcessor) if f.init and f.name != "_cache"}
        postprocess = PostProcessor(**values)
        if own is not None:
            transform = own if transform is None else own | transform
    return postprocess, transform
