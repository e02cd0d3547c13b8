"""Live audio sources for ``ptsed listen``: files (at full speed, paced at real time, or followed while they
grow), standard input (a container or raw PCM), URLs (PyAV) and microphones (sounddevice).

A source is iterated for items: ``(n, C)`` float32 sample blocks at :attr:`LiveSource.sample_rate`, or
:class:`Dropped` markers where a real-time source outran the processing and audio was dropped.

Two kinds of sources:

- *pulled* (a file read at full speed, a pipe, standard input): the next block is read only when the last
  one is processed, so the writer waits (back-pressure) and no audio is ever dropped;
- *real-time* (a microphone, a file paced with ``--realtime``, a live URL, i.e. one without a duration): audio
  arrives on its own clock. It is collected on a thread into a buffer; when the buffer holds more than
  ``max_lag_s`` seconds, the oldest audio is dropped and reported as a :class:`Dropped` span
  (``max_lag_s=inf`` buffers everything).

Errors are :class:`ptsed.core.errors.AudioError` with one line naming the source.
"""

from __future__ import annotations

import collections
import math
import os
import stat
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ptsed.core.errors import AudioError, ConfigError

DTYPES = {"s16": "<i2", "s32": "<i4", "f32": "<f4", "f64": "<f8", "u8": "u1", "s24": "s24"}
"""Raw PCM sample formats of ``--dtype`` (little-endian)."""

BLOCK_S = 0.1
"""Seconds of audio per block read from a source."""


@dataclass(frozen=True)
class Dropped:
    """Audio a real-time source dropped: ``[start_s, end_s)`` seconds since the source started."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def pcm_to_float(data: bytes, dtype: str, channels: int) -> np.ndarray:
    """Little-endian PCM bytes (a whole number of frames) -> (n, channels) float32 in [-1, 1]."""
    if dtype == "s24":
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        x = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8  # sign-extend 24 bits
        out = x.astype(np.float32) / 8388608.0
    else:
        x = np.frombuffer(data, DTYPES[dtype])
        if dtype == "u8":
            out = (x.astype(np.float32) - 128.0) / 128.0
        elif dtype in ("s16", "s32"):
            out = x.astype(np.float32) / np.float32(2 ** (8 * x.itemsize - 1))
        else:
            out = x.astype(np.float32)
    return out.reshape(-1, channels)


def sample_bytes(dtype: str) -> int:
    return 3 if dtype == "s24" else np.dtype(DTYPES[dtype]).itemsize


class LiveSource:
    """Base class: iterate for ``(n, C)`` float32 blocks and :class:`Dropped` markers.

    Attributes:
        name: the stream's name in outputs (the file's name, ``stdin``, ``mic``).
        sample_rate: Hz.
        channels: channels of the blocks.
        realtime: audio arrives on its own clock (drops are possible).
        warnings: one-line notes gathered while reading (a stream that ended mid-sample, ...).
    """

    name = "stream"
    sample_rate = 0
    channels = 1
    realtime = False

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def __iter__(self) -> Iterator[np.ndarray | Dropped]:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self) -> None:
        """Open the device, if any (errors here are one line, before any audio is read)."""

    def close(self) -> None:
        """Stop reading (a real-time source stops its thread or device)."""


# ----------------------------------------------------------------------------------------------------
# byte streams: raw PCM and WAV, from a pipe or a growing file
# ----------------------------------------------------------------------------------------------------
class _Bytes:
    """Reads a file descriptor as data arrives; with ``follow``, waits for a growing file."""

    def __init__(self, fh: BinaryIO, what: str, follow: bool = False, idle_s: float = 10.0) -> None:
        self.fh, self.what, self.follow, self.idle_s = fh, what, follow, idle_s
        self.fd = fh.fileno()

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, as soon as any are there; ``b""`` at the end of the stream."""
        waited = 0.0
        while True:
            data = os.read(self.fd, n)
            if data or not self.follow:
                return data
            if waited >= self.idle_s:  # the file stopped growing
                return b""
            time.sleep(0.05)
            waited += 0.05

    def exactly(self, n: int, what: str) -> bytes:
        buf = b""
        while len(buf) < n:
            data = self.read(n - len(buf))
            if not data:
                raise AudioError(f"{self.what}: the stream ended inside the WAV header ({what})")
            buf += data
        return buf


def read_wav_header(src: _Bytes) -> tuple[int, int, str]:
    """Parse a RIFF/WAVE header up to its ``data`` chunk; returns ``(sample_rate, channels, dtype)``.

    The data size is not used (a WAV written to a pipe or still being recorded declares 0 or a maximum).
    """
    head = src.exactly(12, "RIFF header")
    if head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        raise AudioError(f"{src.what}: not a WAV stream (it does not start with RIFF....WAVE)")
    fmt: tuple[int, int, str] | None = None
    for _ in range(64):
        cid, size = struct.unpack("<4sI", src.exactly(8, "chunk header"))
        if cid == b"data":
            if fmt is None:
                raise AudioError(f"{src.what}: the WAV stream has no fmt chunk before its data")
            return fmt
        body = src.exactly(size + (size & 1), f"{cid.decode('latin-1')!r} chunk") if size < 1 << 20 else b""
        if cid == b"fmt ":
            code, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if code == 0xFFFE and len(body) >= 26:
                code = struct.unpack("<H", body[24:26])[0]
            kinds = {(1, 8): "u8", (1, 16): "s16", (1, 24): "s24", (1, 32): "s32", (3, 32): "f32", (3, 64): "f64"}
            if (code, bits) not in kinds or channels < 1 or rate < 1:
                raise AudioError(
                    f"{src.what}: unsupported WAV sample format (format code {code}, {bits} bits, {channels} "
                    "channels); send 16/24/32-bit PCM or float WAV, or raw PCM with --rate"
                )
            fmt = (rate, channels, kinds[(code, bits)])
    raise AudioError(f"{src.what}: no data chunk in the first 64 chunks of the WAV stream")


class PcmSource(LiveSource):
    """Raw PCM (or the samples of a WAV stream after its header) from a pipe or a growing file.

    A stream that stalls is waited for (a pipe blocks; a followed file is polled until ``idle_s`` seconds
    pass without growth). A stream that ends inside a frame keeps the whole frames and notes the rest.
    """

    def __init__(
        self, src: _Bytes, sample_rate: int, channels: int, dtype: str, name: str, block_s: float = BLOCK_S
    ) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ConfigError(f"unknown --dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        if sample_rate <= 0 or channels <= 0:
            raise ConfigError(f"--rate ({sample_rate}) and --channels ({channels}) must be positive")
        self.src, self.sample_rate, self.channels, self.dtype, self.name = src, sample_rate, channels, dtype, name
        self.frame_bytes = sample_bytes(dtype) * channels
        self.block_bytes = max(1, int(block_s * sample_rate)) * self.frame_bytes

    def __iter__(self) -> Iterator[np.ndarray | Dropped]:
        rest = b""
        while True:
            data = self.src.read(self.block_bytes)
            if not data:
                break
            data = rest + data
            whole = len(data) - len(data) % self.frame_bytes
            rest = data[whole:]
            if whole:
                block = pcm_to_float(data[:whole], self.dtype, self.channels)
                if not np.isfinite(block).all():
                    raise AudioError(f"{self.src.what}: the stream holds NaN or infinite samples")
                yield block
        if rest:
            self.warnings.append(
                f"{self.src.what} ended inside a sample frame: {len(rest)} trailing bytes of a {self.frame_bytes}-byte "
                "frame were left out"
            )


class AvSource(LiveSource):
    """Any container or URL PyAV (FFmpeg) opens: a file object (standard input) or a URL."""

    def __init__(self, target: Any, name: str, what: str) -> None:
        super().__init__()
        from ptsed.extras import require

        require("media", what=f"ptsed listen {what}")
        import av

        try:
            self.container = av.open(target, timeout=10.0) if isinstance(target, str) else av.open(target)
            self.stream = self.container.streams.audio[0]
        except IndexError:
            raise AudioError(f"{what}: no audio stream") from None
        except Exception as err:  # noqa: BLE001 - FFmpeg's errors are many
            raise AudioError(f"{what}: cannot be opened as audio ({type(err).__name__}: {err})") from None
        self.name, self.what = name, what
        self.sample_rate = int(self.stream.rate or self.stream.codec_context.sample_rate)
        self.channels = int(self.stream.codec_context.channels or 1)

    def __iter__(self) -> Iterator[np.ndarray | Dropped]:
        from ptsed.io.audio import _av_frame_array

        try:
            for packet in self.container.demux(self.stream):
                for frame in packet.decode():
                    arr = _av_frame_array(frame, self.channels)
                    if arr.shape[1] != self.channels:
                        raise AudioError(f"{self.what}: the number of channels changes inside the stream")
                    if arr.shape[0]:
                        yield arr
        except AudioError:
            raise
        except Exception as err:  # noqa: BLE001
            raise AudioError(f"{self.what}: the stream broke off ({type(err).__name__}: {err})") from None

    def close(self) -> None:
        self.container.close()


class FileSource(LiveSource):
    """A file decoded as ``ptsed detect`` decodes it (any format), in blocks of ``block_s`` seconds.

    With ``realtime`` the blocks are released at the pace of the audio (a real-time source); without, at
    full speed (pulled, never dropping).
    """

    def __init__(self, path: str | os.PathLike, realtime: bool = False, block_s: float = BLOCK_S) -> None:
        super().__init__()
        from ptsed.io.audio import stream_audio

        self.stream = stream_audio(path, None, mono=False, block_s=block_s)
        self.name = Path(path).name
        self.sample_rate = self.stream.sample_rate
        self.channels = self.stream.channels
        self.realtime = realtime

    def __iter__(self) -> Iterator[np.ndarray | Dropped]:
        start = time.monotonic()
        done = 0
        for block in self.stream:
            if self.realtime:
                wait = start + done / self.sample_rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            done += block.shape[-1]
            yield np.ascontiguousarray(block.T)


# ----------------------------------------------------------------------------------------------------
# real-time buffering with bounded lag
# ----------------------------------------------------------------------------------------------------
class RealtimeBuffer:
    """Audio that arrives on its own clock, handed to a slower reader with at most ``max_lag_s`` of lag.

    :meth:`put` is called by the producer (a device callback or a thread); iterating yields the blocks in
    order, with :class:`Dropped` spans where the buffer held more than ``max_lag_s`` seconds and the oldest
    blocks were dropped. ``max_lag_s=inf`` never drops.

    Args:
        sample_rate: Hz, for the times of dropped spans.
        max_lag_s: the most audio held, in seconds.
        stall_s: seconds without any audio after which the source counts as stalled (an error).
        what: the source, for messages.
    """

    def __init__(self, sample_rate: int, max_lag_s: float, stall_s: float = 10.0, what: str = "source") -> None:
        self.sample_rate, self.max_lag_s, self.stall_s, self.what = sample_rate, max_lag_s, stall_s, what
        self._blocks: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self._held = 0
        self._pos = 0  # samples received
        self._drops: list[Dropped] = []
        self._ended = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self.dropped_s = 0.0
        self.drop_count = 0

    def put(self, block: np.ndarray) -> None:
        """Add a (n, C) block (producer side); drops the oldest audio beyond ``max_lag_s``."""
        with self._cond:
            self._blocks.append((self._pos, block))
            self._pos += block.shape[0]
            self._held += block.shape[0]
            limit = self.max_lag_s * self.sample_rate
            while self._held > limit and len(self._blocks) > 1:
                start, old = self._blocks.popleft()
                self._held -= old.shape[0]
                end = start + old.shape[0]
                last = self._drops[-1] if self._drops else None
                span = Dropped(start / self.sample_rate, end / self.sample_rate)
                if last is not None and abs(last.end_s - span.start_s) < 1e-9:
                    self._drops[-1] = Dropped(last.start_s, span.end_s)
                else:
                    self._drops.append(span)
            self._cond.notify()

    def note_lost(self, seconds: float) -> None:
        """Audio the device itself lost (an input overflow): counted as dropped at the current position."""
        with self._cond:
            t = self._pos / self.sample_rate
            self._drops.append(Dropped(t, t + seconds))
            self._cond.notify()

    def end(self, error: BaseException | None = None) -> None:
        """The producer is done (``error``: it failed)."""
        with self._cond:
            self._ended, self._error = True, error
            self._cond.notify()

    def __iter__(self) -> Iterator[np.ndarray | Dropped]:
        while True:
            with self._cond:
                waited = 0.0
                while not self._blocks and not self._drops and not self._ended:
                    if waited >= self.stall_s:
                        raise AudioError(f"{self.what}: no audio arrived for {self.stall_s:g} s (the source stalled)")
                    self._cond.wait(0.1)
                    waited += 0.1
                if self._drops:
                    drop = self._drops.pop(0)
                    self.dropped_s += drop.duration_s
                    self.drop_count += 1
                    item: np.ndarray | Dropped | None = drop
                elif self._blocks:
                    _, item = self._blocks.popleft()
                    self._held -= item.shape[0]
                else:
                    item = None
            if item is None:
                if self._error is not None:
                    raise self._error
                return
            yield item


class ThreadedSource(LiveSource):
    """A real-time source whose blocks come from an iterator run on a thread into a :class:`RealtimeBuffer`."""

    def __init__(self, inner: LiveSource, max_lag_s: float, stall_s: float = 10.0) -> None:
        super().__init__()
        self.inner = inner
        self.name, self.sample_rate, self.channels = inner.name, inner.sample_rate, inner.channels
        self.realtime = True
        self.buffer = RealtimeBuffer(inner.sample_rate, max_lag_s, stall_s, what=inner.name)
        self._stop = threading.Event()
        self.warnings = inner.warnings

    def _run(self) -> None:
        try:
            for item in self.inner:
                if self._stop.is_set():
                    break
                if isinstance(item, np.ndarray):
                    self.buffer.put(item)
            self.buffer.end()
        except BaseException as err:  # noqa: BLE001 - handed to the reader
            self.buffer.end(err)

    def __iter__(self) -> Iterator[np.ndarray | Dropped]:
        thread = threading.Thread(target=self._run, daemon=True, name="ptsed-listen-source")
        thread.start()
        try:
            yield from self.buffer
        finally:
            self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self.inner.close()


# ----------------------------------------------------------------------------------------------------
# microphones
# ----------------------------------------------------------------------------------------------------
class MicSource(LiveSource):
    """A microphone through sounddevice (PortAudio): ``mic`` (the default input) or ``mic:N``.

    Raises:
        AudioError: no such device, no input device, or the device is busy (one line).
    """

    def __init__(
        self,
        spec: str,
        max_lag_s: float,
        sample_rate: int | None = None,
        channels: int | None = None,
        stall_s: float = 10.0,
    ) -> None:
        super().__init__()
        from ptsed.extras import require

        require("live", what="ptsed listen mic")
        try:
            import sounddevice as sd
        except OSError as err:  # the module is there, the PortAudio library is not
            raise AudioError(f"microphone {spec!r}: sounddevice cannot load PortAudio ({_one_line(err)})") from None

        self.sd = sd
        _, _, index = spec.partition(":")
        device: int | None = None
        if index:
            try:
                device = int(index)
            except ValueError:
                raise ConfigError(f"{spec!r}: give a device number, as mic:2 (see `python -m sounddevice`)") from None
        self.name = "mic"
        self.what = f"microphone {spec!r}"
        try:
            info = sd.query_devices(device, "input")
        except (ValueError, sd.PortAudioError) as err:
            raise AudioError(f"{self.what}: no such input device ({_one_line(err)})") from None
        if int(info.get("max_input_channels", 0)) < 1:
            raise AudioError(f"{self.what}: {info.get('name', 'the device')!r} has no input channels")
        self.device = device
        self.sample_rate = int(sample_rate or info.get("default_samplerate") or 16_000)
        self.channels = int(channels or 1)
        self.realtime = True
        self.buffer = RealtimeBuffer(self.sample_rate, max_lag_s, stall_s, what=self.what)
        self.stream: Any = None

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status and getattr(status, "input_overflow", False):
            self.buffer.note_lost(frames / self.sample_rate)
        self.buffer.put(np.array(indata, dtype=np.float32, copy=True))

    def start(self) -> None:
        if self.stream is not None:
            return
        try:
            stream = self.sd.InputStream(
                device=self.device,
                channels=self.channels,
                samplerate=self.sample_rate,
                dtype="float32",
                blocksize=max(1, int(BLOCK_S * self.sample_rate)),
                callback=self._callback,
                finished_callback=self.buffer.end,  # the device went away or the stream was stopped
            )
            stream.start()
            self.stream = stream
        except (self.sd.PortAudioError, ValueError) as err:
            raise AudioError(f"{self.what}: cannot be opened, it may be busy or unplugged ({_one_line(err)})") from None

    def __iter__(self) -> Iterator[np.ndarray | Dropped]:
        self.start()
        try:
            yield from self.buffer
        finally:
            self.close()

    def close(self) -> None:
        if self.stream is not None:
            stream, self.stream = self.stream, None
            try:
                stream.stop()
                stream.close()
            except Exception:  # noqa: BLE001 - closing a device that went away
                pass


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# ----------------------------------------------------------------------------------------------------
# SOURCE -> a live source
# ----------------------------------------------------------------------------------------------------
def is_url(spec: str) -> bool:
    return "://" in spec and not Path(spec).exists()


def open_source(
    spec: str,
    *,
    rate: int | None = None,
    channels: int = 1,
    dtype: str = "s16",
    realtime: bool = False,
    follow: bool = False,
    max_lag_s: float = math.inf,
    idle_s: float = 10.0,
    stdin: BinaryIO | None = None,
) -> LiveSource:
    """The source ``ptsed listen SOURCE`` reads (see the module doc).

    Args:
        spec: ``-`` (standard input), ``mic`` / ``mic:N``, a URL (``scheme://...``) or a file.
        rate, channels, dtype: raw PCM on standard input (or a followed raw file) when ``rate`` is given.
        realtime: pace a file at real time (then it is a real-time source).
        follow: keep reading a file that grows (WAV or, with ``rate``, raw PCM), until ``idle_s`` seconds
            pass without growth.
        max_lag_s: the most audio a real-time source buffers before dropping.
        idle_s: seconds a followed file or a real-time source may stall.
        stdin: the byte stream of ``-`` (default ``sys.stdin.buffer``).
    """
    if spec == "mic" or spec.startswith("mic:"):
        return MicSource(spec, max_lag_s, sample_rate=rate, channels=None if rate is None else channels, stall_s=idle_s)
    if spec == "-":
        fh = stdin if stdin is not None else sys.stdin.buffer
        return _from_bytes(_Bytes(fh, "standard input"), "stdin", rate, channels, dtype)
    if is_url(spec):  # a live stream (no duration) is real-time; a recording behind a URL is pulled
        av_source = AvSource(spec, _url_name(spec), f"stream {spec!r}")
        av_source.realtime = av_source.container.duration is None
        return ThreadedSource(av_source, max_lag_s, idle_s) if av_source.realtime else av_source
    path = Path(spec)
    if not path.exists():
        raise AudioError(f"audio file {spec!r} does not exist")
    if stat.S_ISFIFO(path.stat().st_mode):  # a named pipe reads like standard input
        fh = open(path, "rb")  # noqa: SIM115 - closed with the process
        return _from_bytes(_Bytes(fh, f"pipe {spec!r}"), path.name, rate, channels, dtype)
    if follow:
        fh = open(path, "rb")  # noqa: SIM115 - closed with the process
        return _from_bytes(_Bytes(fh, f"file {spec!r}", follow=True, idle_s=idle_s), path.name, rate, channels, dtype)
    if rate is not None:
        raise ConfigError("--rate/--channels/--dtype describe raw PCM on standard input or a --follow file")
    source: LiveSource = FileSource(path, realtime=realtime)
    return ThreadedSource(source, max_lag_s, idle_s) if realtime else source


def _from_bytes(src: _Bytes, name: str, rate: int | None, channels: int, dtype: str) -> LiveSource:
    if rate is not None:
        return PcmSource(src, rate, channels, dtype, name)
    head = b""
    while len(head) < 4:
        data = src.read(4 - len(head))
        if not data:
            break
        head += data
    if not head:
        raise AudioError(f"{src.what} is empty (no audio arrived)")
    if head in (b"RIFF", b"RF64"):
        sr, ch, kind = read_wav_header(_Prefixed(src, head))
        return PcmSource(src, sr, ch, kind, name)
    if src.follow:
        raise ConfigError(f"--follow reads WAV files or raw PCM (--rate ...); {src.what} is neither")
    return AvSource(_PrefixedFile(src, head), name, src.what)


class _Prefixed(_Bytes):
    """A byte stream with bytes already read put back in front."""

    def __init__(self, inner: _Bytes, head: bytes) -> None:
        self.inner, self.head, self.what, self.follow = inner, head, inner.what, inner.follow

    def read(self, n: int) -> bytes:
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.inner.read(n)


class _PrefixedFile:
    """A read-only, non-seekable file object over a :class:`_Prefixed` stream, for PyAV."""

    def __init__(self, src: _Bytes, head: bytes) -> None:
        self.src = _Prefixed(src, head)

    def read(self, n: int = -1) -> bytes:
        return self.src.read(n if n and n > 0 else 1 << 16)

    def seekable(self) -> bool:
        return False


def _url_name(url: str) -> str:
    tail = url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    return tail or "stream"


__all__ = [
    "DTYPES",
    "Dropped",
    "FileSource",
    "LiveSource",
    "MicSource",
    "PcmSource",
    "RealtimeBuffer",
    "ThreadedSource",
    "open_source",
    "pcm_to_float",
]
