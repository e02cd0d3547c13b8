"""Cutting long audio into model windows and stitching the window outputs back on the frame grid.

Every ptsed model sees windows of ``window_s`` seconds (10 s) and returns frames of ``hop_s`` seconds
(40 ms, 250 per window). Window starts are whole frames, so every window output lies exactly on the
file's frame grid and stitching never interpolates.

Two window plans:

- ``overlap`` (default): windows start every ``hop`` frames (5 s by default); when the last regular window
  does not reach the end of the audio, one more window is placed as late as the frame grid allows, so it
  ends at the audio's end (at most one frame of zero padding). Only audio shorter than one window is
  zero-padded; frames past the end of the audio are dropped.
- ``upstream``: upstream ``inference.py``: non-overlapping windows, the last one zero-padded to the full
  window, and every frame kept, the padded tail included.

Two ways to stitch overlapping outputs (:class:`Stitcher`):

- ``centre`` (default): each frame is taken from the window whose centre is nearest to it, so every
  frame keeps at least ``(window - hop) / 2`` of context on both sides (2.5 s with the defaults) wherever
  the audio allows. Frames near a window edge, where the model sees one-sided context (and where the
  BiGRU of teacher models and the per-window normalisation of some front-ends behave differently), are
  never used when a more central window exists.
- ``mean``: the mean over all windows that contain the frame. Smoother at the seams, but it mixes those
  edge frames in.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

STITCH_MODES = ("centre", "mean")


def default_hop_frames(window_frames: int) -> int:
    """The hop between windows that ``ptsed detect`` uses unless told otherwise: half a window, in whole
    frames (125 frames = 5 s for a 10 s window)."""
    return max(1, int(window_frames) // 2)


def output_frames(duration_s: float, frame_hop_s: float) -> int:
    """Frames of the stitched scores of ``duration_s`` seconds of audio: every frame that starts inside the
    audio (``ceil(duration / hop)``; the last one may be partial; its end time is then the audio's end)."""
    return max(0, math.ceil(round(float(duration_s) / float(frame_hop_s), 6)))


class WindowCutter:
    """Cuts a stream of sample blocks into windows, without holding more than about two windows.

    Args:
        window: window length in samples.
        hop: hop between window starts in samples (a multiple of ``frame``); ``window`` for upstream mode.
        frame: samples per output frame (640 at 16 kHz).
        upstream: upstream's plan (non-overlapping, last window zero-padded, see module doc).

    Use :meth:`feed` for every block (1-D (n,) or 2-D (C, n), samples on the last axis) and
    :meth:`finish` with the total number of samples; both yield ``(start_sample, window)`` pairs, the
    window shaped like the blocks with ``window`` samples on the last axis.
    """

    def __init__(self, window: int, hop: int, frame: int, *, upstream: bool = False) -> None:
        if window <= 0 or hop <= 0 or frame <= 0:
            raise ValueError("window, hop and frame must be positive")
        if window % frame or hop % frame:
            raise ValueError(f"window ({window}) and hop ({hop}) must be whole multiples of the frame ({frame})")
        if hop > window:
            raise ValueError(f"the hop ({hop} samples) must not exceed the window ({window} samples)")
        self.window, self.hop, self.frame = window, hop, frame
        self.upstream = upstream
        self._buf: np.ndarray | None = None
        self._buf_start = 0  # absolute index of _buf[..., 0]
        self._next = 0  # next regular window start
        self._last: int | None = None  # start of the last window given out

    @property
    def _buf_end(self) -> int:
        return self._buf_start + (0 if self._buf is None else self._buf.shape[-1])

    def _take(self, start: int) -> np.ndarray:
        assert self._buf is not None
        lo = start - self._buf_start
        piece = self._buf[..., lo : lo + self.window]
        if piece.shape[-1] < self.window:
            pad = [(0, 0)] * (piece.ndim - 1) + [(0, self.window - piece.shape[-1])]
            piece = np.pad(piece, pad)
        self._last = start
        return np.ascontiguousarray(piece)

    def _trim(self) -> None:
        keep_from = self._next if self._last is None else min(self._next, self._last + self.frame)
        drop = keep_from - self._buf_start
        if self._buf is not None and drop > 0:
            self._buf = self._buf[..., drop:]
            self._buf_start += drop

    def feed(self, block: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Append a block; yield every window that is now complete."""
        self._buf = block if self._buf is None else np.concatenate([self._buf, block], axis=-1)
        while self._next + self.window <= self._buf_end:
            yield self._next, self._take(self._next)
            self._next += self.hop
        self._trim()

    def finish(self, total: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield the windows that cover the end of ``total`` samples (zero-padded where needed)."""
        if total <= 0:
            return
        if self._buf is None or self._buf_end < total:
            raise ValueError(f"finish({total}) called with only {self._buf_end} samples fed")
        if self.upstream:
            while self._next < total:
                yield self._next, self._take(self._next)
                self._next += self.window
            return
        if self._last is None:
            yield 0, self._take(0)
        elif self._last + self.window < total:
            late = -(-(total - self.window) // self.frame) * self.frame  # latest frame-aligned start
            yield late, self._take(late)


def window_starts(total: int, window: int, hop: int, frame: int, *, upstream: bool = False) -> list[int]:
    """The window starts (samples) that :class:`WindowCutter` gives for ``total`` samples."""
    if total <= 0:
        return []
    if upstream:
        return list(range(0, total, window))
    starts = list(range(0, total - window + 1, hop)) if total >= window else []
    if not starts:
        return [0]
    if starts[-1] + window < total:
        starts.append(-(-(total - window) // frame) * frame)
    return starts


class Stitcher:
    """Stitches per-window frame outputs (F, D), added in order of their start frame, into (T, D).

    Args:
        frames_per_window: F, frames of one window (250).
        mode: ``"centre"`` or ``"mean"`` (see the module doc).
        expected_frames: the number of frames the output will have, if known (from the file's declared
            length): the output array is allocated once at that size. Without it (or when it is exceeded)
            the array grows by doubling.
        keep: store the stitched output (``True``). With ``False`` (a live stream) nothing is stored:
            :meth:`take` hands out the frames that became final since the last call, and :meth:`finish`
            returns the frames not yet taken.

    Memory stays at about one window beyond the stitched output: frames are final once a later window
    starts after them, and are copied into the output array at once.
    """

    def __init__(
        self, frames_per_window: int, mode: str = "centre", expected_frames: int | None = None, *, keep: bool = True
    ) -> None:
        if mode not in STITCH_MODES:
            raise ValueError(f"unknown stitch mode {mode!r}; expected one of {STITCH_MODES}")
        self.frames = frames_per_window
        self.mode = mode
        self._expected = max(int(expected_frames or 0), 0)
        self._out: np.ndarray | None = None  # frames [0, _done) are final and stored here
        self._done = 0  # frames [0, _done) are final
        self._pending: tuple[int, np.ndarray] | None = None  # centre: last window
        self._acc: np.ndarray | None = None  # mean: sums of frames [_done, _done + len)
        self._cnt: np.ndarray | None = None
        self._last_start = -1
        self._keep = keep
        self._taken: list[np.ndarray] = []  # keep=False: final frames not yet taken

    @property
    def final_frames(self) -> int:
        """Frames that are final so far (stored, or handed out by :meth:`take`)."""
        return self._done

    def take(self) -> np.ndarray | None:
        """``keep=False``: the (n, D) float32 frames that became final since the last call (``None``: none)."""
        if not self._taken:
            return None
        out = self._taken[0] if len(self._taken) == 1 else np.concatenate(self._taken)
        self._taken = []
        return out

    def add(self, start: int, values: np.ndarray) -> None:
        """Add the output (F, D) of the window that starts at frame ``start``."""
        if values.shape[0] != self.frames:
            raise ValueError(f"a window output has {values.shape[0]} frames, expected {self.frames}")
        if start <= self._last_start:
            raise ValueError("windows must be added in increasing order of their start")
        if start > max(self._done, self._last_start + self.frames):
            raise ValueError(f"frames before {start} are not covered by any window")
        self._last_start = start
        if self.mode == "centre":
            if self._pending is not None:
                prev, pv = self._pending
                split = (prev + start + self.frames) // 2  # frames nearer to the earlier centre stay with it
                split = min(max(split, start, self._done), prev + self.frames)
                self._emit(pv[self._done - prev : split - prev])
            self._pending = (start, values)
            return
        if self._acc is None:
            self._acc = np.zeros((0, values.shape[1]), np.float64)
            self._cnt = np.zeros((0,), np.int32)
        assert self._cnt is not None
        # frames before `start` are final: no later window reaches them
        final = start - self._done
        if final > 0:
            self._emit(self._acc[:final] / self._cnt[:final, None])
            self._acc, self._cnt = self._acc[final:], self._cnt[final:]
        need = start - self._done + self.frames
        if need > self._acc.shape[0]:
            grow = need - self._acc.shape[0]
            self._acc = np.concatenate([self._acc, np.zeros((grow, values.shape[1]), np.float64)])
            self._cnt = np.concatenate([self._cnt, np.zeros((grow,), np.int32)])
        lo = start - self._done
        self._acc[lo : lo + self.frames] += values
        self._cnt[lo : lo + self.frames] += 1

    def finish(self, total_frames: int) -> np.ndarray:
        """The stitched (total_frames, D) float32 array; frames past ``total_frames`` are dropped."""
        if self.mode == "centre":
            if self._pending is not None:
                prev, pv = self._pending
                end = min(total_frames, prev + self.frames)
                if end > self._done:
                    self._emit(pv[self._done - prev : end - prev])
                self._pending = None
        elif self._acc is not None:
            assert self._cnt is not None
            end = min(total_frames - self._done, self._acc.shape[0])
            if end > 0:
                if (self._cnt[:end] == 0).any():
                    raise ValueError("some frames are not covered by any window")
                self._emit(self._acc[:end] / self._cnt[:end, None])
            self._acc = self._cnt = None
        if not self._keep:
            if self._last_start < 0:
                raise ValueError("no window was added")
            rest = self.take()
            excess = self._done - total_frames  # frames past the end (never stored by the offline path)
            if rest is None:
                return np.zeros((0, 0), np.float32)
            return rest[: max(0, rest.shape[0] - max(0, excess))]
        if self._out is None:
            raise ValueError("no window was added")
        if self._done < total_frames:
            raise ValueError(f"the windows cover {self._done} frames, {total_frames} were asked for")
        if self._out.shape[0] > total_frames:  # a smaller array, not a view that pins the larger one
            self._out = self._out[:total_frames].copy() if self._out.shape[0] > 1.1 * total_frames else self._out
        return self._out[:total_frames]

    def _emit(self, values: np.ndarray) -> None:
        """Store final frames ``[_done, _done + len(values))`` in the output array."""
        n, d = values.shape
        need = self._done + n
        if not self._keep:
            self._taken.append(np.asarray(values, np.float32))
            self._done = need
            return
        if self._out is None:
            self._out = np.empty((max(need, self._expected, 4 * self.frames), d), np.float32)
        elif need > self._out.shape[0]:
            grown = np.empty((max(need, 2 * self._out.shape[0]), d), np.float32)
            grown[: self._done] = self._out[: self._done]
            self._out = grown
        self._out[self._done : need] = values
        self._done = need
