"""The one audio reader of ptsed: decode, mix to mono, resample, in blocks.

Every part of ptsed that needs samples (inference, evaluation, training, plotting) reads them here, so
files are decoded the same way everywhere and bad files fail with the same clear message.

- WAV, FLAC, OGG/Vorbis/Opus, MP3, AIFF, ... are decoded with soundfile (libsndfile).
- M4A/AAC, MP4, WebM, MKV, MOV and other compressed or video containers are decoded with PyAV
  (``pip install 'ptsed[media]'``); PyAV is also the fallback for files libsndfile does not recognise.
- Any sample rate is resampled with soxr (quality ``HQ``, the resampler ``librosa.load`` uses by
  default), through :class:`soxr.ResampleStream`, so a long file is decoded block by block and memory
  does not grow with its length. The output length is ``ceil(N * sr / sr_file)``, as ``librosa.load``.
- Any channel count: mixed to mono by the channel mean (as ``librosa.load(mono=True)``), or kept.
- Samples are float32; integer PCM is scaled by ``1 / 2**(bits - 1)`` (int16 / 32768).

Files that cannot be used raise :class:`ptsed.core.errors.AudioError` with a message naming the file:
missing, unreadable, not a regular file (a named pipe, a device), empty (0 bytes or 0 samples), truncated,
not audio, without an audio stream, or holding NaN or infinite samples (ptsed rejects such files; it does
not repair them). What a C decoder prints on stderr meanwhile goes with that file's message.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import stat
import struct
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptsed.core.errors import AudioError

SOUNDFILE_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd",
     ".w64", ".rf64", ".caf"}
)  # fmt: skip
"""Extensions decoded with soundfile (libsndfile)."""

MEDIA_EXTENSIONS = frozenset(
    {".m4a", ".m4b", ".aac", ".mp4", ".m4v", ".mov", ".webm", ".mkv", ".mka", ".wma", ".wmv", ".avi",
     ".3gp", ".amr", ".ac3", ".mpg", ".mpeg", ".ts", ".flv"}
)  # fmt: skip
"""Extensions decoded with PyAV (FFmpeg)."""

AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS | MEDIA_EXTENSIONS
"""Extensions that folder and glob inputs pick up by default."""

LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
"""Inputs with these extensions (or prefixed with ``@``) are list files: one audio path per line."""

DEFAULT_BLOCK_S = 30.0
"""Seconds of audio decoded per block by :func:`stream_audio`."""


# ----------------------------------------------------------------------------------------------------
# metadata
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioInfo:
    """What a file says about itself, before decoding.

    Attributes:
        path: the file.
        sample_rate: the file's sample rate in Hz.
        channels: number of channels.
        num_samples: samples per channel at ``sample_rate`` as declared by the file, or ``None`` when the
            container does not say (some streams); decoding may find fewer (truncated file).
        backend: ``"soundfile"`` or ``"av"``.
        format: container/codec description (``"WAV PCM_16"``, ``"mp4 aac"``).
    """

    path: str
    sample_rate: int
    channels: int
    num_samples: int | None
    backend: str
    format: str

    @property
    def duration_s(self) -> float | None:
        """Declared duration in seconds (``None`` when unknown)."""
        return None if self.num_samples is None else self.num_samples / self.sample_rate


def _file_kind(mode: int) -> str:
    """What a non-regular file is, from its ``st_mode``."""
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _not_regular(path: Path, mode: int) -> str:
    return f"{str(path)!r} is not a regular file but {_file_kind(mode)}; ptsed reads audio from regular files"


def _unreadable(path: Path, err: OSError) -> AudioError:
    why = "permission denied" if isinstance(err, PermissionError) else (err.strerror or str(err))
    return AudioError(f"cannot read audio file {str(path)!r}: {why}")


def _check_file(path: Path) -> None:
    """Raise :class:`AudioError` unless ``path`` is a non-empty regular file this process can read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise AudioError(f"audio file {str(path)!r} is a link to a file that does not exist") from None
        raise AudioError(f"audio file {str(path)!r} does not exist") from None
    except OSError as err:
        raise _unreadable(path, err) from None
    if not stat.S_ISREG(st.st_mode):
        raise AudioError(_not_regular(path, st.st_mode))
    if st.st_size == 0:
        raise AudioError(f"audio file {str(path)!r} is empty (0 bytes)")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as err:
        raise _unreadable(path, err) from None


_DECODER_NOTE = re.compile(r"^(Note|Warning|Error): |^\[[^\]]*\] (error|warning|note)", re.IGNORECASE)
"""A line that a C decoder prints on stderr (libmpg123 inside libsndfile: ``Note: Illegal Audio-MPEG-Header
0x00000000 at offset 19996.``, ``[src/libmpg123/layer3.c:...] error: ...``)."""

_STDERR_LOCK = threading.Lock()


class _DecoderNotes:
    """What C decoders print on stderr (file descriptor 2) while one file is read: captured, so that it is
    attached to that file's message instead of reaching the terminal without a file name.

    Use :meth:`capture` around each decoder call. Output of the same moments that is not a decoder's (a
    progress bar drawn by another thread) is written back to stderr unchanged.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        with _STDERR_LOCK:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError, AttributeError):  # no stderr to redirect
                yield
                return
            with tempfile.TemporaryFile() as tmp:
                os.dup2(tmp.fileno(), 2)
                try:
                    yield
                finally:
                    os.dup2(saved, 2)
                    os.close(saved)
                    tmp.seek(0)
                    self._sort(tmp.read())

    def _sort(self, data: bytes) -> None:
        other = []
        for line in data.decode("utf-8", "replace").splitlines(keepends=True):
            if _DECODER_NOTE.match(line):
                self.lines.append(line.strip())
            else:
                other.append(line)
        if other:
            with contextlib.suppress(OSError):
                os.write(2, "".join(other).encode())

    def summary(self) -> str:
        """The first line and a count of the others (``""`` when none)."""
        if not self.lines:
            return ""
        more = len(self.lines) - 1
        return self.lines[0].rstrip(".") + (f" (+{more} more line{'s' * (more > 1)})" if more else "")

    def report(self, path: Path) -> None:
        """Print what was captured as one line naming the file (for a file that was read all the same)."""
        if self.lines:
            with contextlib.suppress(OSError, ValueError):
                print(f"ptsed: {str(path)!r}: the decoder reported: {self.summary()}", file=sys.stderr)
            self.lines = []


_SOUNDFILE_GENERIC = "File does not exist or is not a regular file (possibly a pipe?)"
"""libsndfile's message for any file it fails to open through a codec library (an mp3 of random bytes)."""


def _soundfile_reason(err: Exception, path: Path, notes: _DecoderNotes) -> str:
    """Why libsndfile refused a file that exists and is readable (checked before)."""
    msg = _short_error(err, path)
    if not msg or _SOUNDFILE_GENERIC.rstrip(".") in msg:
        msg = "not a format it recognises, or corrupted data"
    if notes.lines:
        msg += f"; the decoder said: {notes.summary()}"
        notes.lines = []
    return msg


def _wav_truncation(path: Path) -> str | None:
    """For a RIFF/WAVE file: a message when the ``data`` chunk runs past the end of the file, else None.

    libsndfile silently shortens such files to what is there; ptsed reports them as truncated.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                if csize in (0, 0xFFFFFFFF):  # size unknown (streamed writer): nothing to check
                    return None
                end = pos + 8 + csize
                if end > size:
                    return f"the data chunk declares {csize} bytes but only {size - pos - 8} are present"
                return None
            pos += 8 + csize + (csize & 1)
    return None


def _soundfile_info(path: Path, notes: _DecoderNotes) -> AudioInfo:
    import soundfile as sf

    with notes.capture():
        info = sf.info(str(path))
    return AudioInfo(
        path=str(path),
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        num_samples=int(info.frames),
        backend="soundfile",
        format=f"{info.format} {info.subtype}",
    )


def _import_av(path: Path):  # noqa: ANN202 - av is optional
    try:
        import av
    except ImportError as err:
        raise AudioError(
            f"reading {str(path)!r} ({path.suffix or 'no extension'}) needs PyAV: pip install 'ptsed[media]'"
        ) from err
    return av


def _short_error(err: Exception, path: Path) -> str:
    """A decoder's error message without the file name and errno noise it repeats."""
    msg = str(err)
    for noise in (f"Error opening {str(path)!r}: ", f": {str(path)!r}"):
        msg = msg.replace(noise, "")
    if msg.startswith("[Errno") and "] " in msg:
        msg = msg.split("] ", 1)[1]
    return msg.strip().rstrip(".")


def _av_open(path: Path):  # noqa: ANN202
    av = _import_av(path)
    try:
        container = av.open(str(path))
    except Exception as err:  # av.error.* and OSError
        raise AudioError(
            f"{str(path)!r} is not an audio or video file ptsed can read (PyAV: {_short_error(err, path)})"
        ) from err
    if not container.streams.audio:
        container.close()
        raise AudioError(f"{str(path)!r} has no audio stream")
    return container


def _av_stream_info(path: Path, container, reasons: Sequence[str] = ()) -> AudioInfo:  # noqa: ANN001
    stream = container.streams.audio[0]
    rate = int(stream.codec_context.sample_rate or stream.rate or 0)
    if rate <= 0:  # what FFmpeg's probe makes of random bytes with an audio extension
        why = "; ".join([*reasons, f"PyAV: a {stream.codec_context.name} stream without a sample rate"])
        raise AudioError(f"{str(path)!r} is not an audio file ptsed can read, or its data is corrupted ({why})")
    channels = int(stream.codec_context.channels or 0) if hasattr(stream.codec_context, "channels") else 0
    if not channels:
        channels = len(stream.layout.channels)
    num = None
    if stream.duration is not None and stream.time_base is not None:
        num = int(round(float(stream.duration * stream.time_base) * rate))
    elif container.duration is not None:
        num = int(round(container.duration / 1_000_000 * rate))
    fmt = f"{container.format.name} {stream.codec_context.name}"
    return AudioInfo(str(path), rate, channels, num, "av", fmt)


def _use_av_first(path: Path) -> bool:
    return path.suffix.lower() in MEDIA_EXTENSIONS


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, channels and declared length of an audio file, without decoding it.

    Raises:
        AudioError: missing, empty or unreadable file.
    """
    path = Path(path)
    _check_file(path)
    reasons: list[str] = []
    if _use_av_first(path):
        container = _av_open(path)
    else:
        notes = _DecoderNotes()  # on success dropped: decoding opens the file again and reports them
        try:
            return _soundfile_info(path, notes)
        except Exception as sf_err:
            reasons = [f"soundfile: {_soundfile_reason(sf_err, path, notes)}"]
            try:
                av = _import_av(path)
            except AudioError:
                av = None
                reasons.append("PyAV, which reads more formats, is not installed")
            container = None
            if av is not None:
                try:
                    container = av.open(str(path))
                except Exception as av_err:
                    reasons.append(f"PyAV: {_short_error(av_err, path)}")
            if container is None:
                why = "; ".join(reasons)
                raise AudioError(f"{str(path)!r} is not an audio file ptsed can read ({why})") from sf_err
            if not container.streams.audio:
                container.close()
                raise AudioError(f"{str(path)!r} has no audio stream") from sf_err
    try:
        return _av_stream_info(path, container, reasons)
    finally:
        container.close()


# ----------------------------------------------------------------------------------------------------
# decoding
# ----------------------------------------------------------------------------------------------------
def _soundfile_blocks(
    path: Path, info: AudioInfo, block: int, start: int = 0, stop: int | None = None
) -> Iterator[np.ndarray]:
    """(n, C) float32 blocks of samples ``[start, stop)``; AudioError on decoder errors and truncation."""
    import soundfile as sf

    reason = _wav_truncation(path)
    if reason:
        raise AudioError(f"audio file {str(path)!r} is truncated: {reason}")
    total = 0
    notes = _DecoderNotes()
    decoder = ""
    try:
        with notes.capture():
            fh = sf.SoundFile(str(path))
        with fh:
            if start > 0:
                with notes.capture():
                    fh.seek(min(start, fh.frames))
            pos = fh.tell()
            while stop is None or pos < stop:
                with notes.capture():
                    data = fh.read(block if stop is None else min(block, stop - pos), dtype="float32", always_2d=True)
                if len(data) == 0:
                    break
                total += len(data)
                pos += len(data)
                yield data
    except AudioError:
        raise
    except Exception as err:
        decoder = f"; the decoder said: {notes.summary()}" if notes.lines else ""
        raise AudioError(
            f"audio file {str(path)!r} is truncated or corrupted: decoding failed after "
            f"{(start + total) / info.sample_rate:.2f} s ({err}{decoder})"
        ) from err
    declared = info.num_samples or 0
    if start == 0 and stop is None and declared - total > max(2048, 0.005 * declared):
        decoder = f" (the decoder said: {notes.summary()})" if notes.lines else ""
        raise AudioError(
            f"audio file {str(path)!r} is truncated: its header declares {declared / info.sample_rate:.2f} s "
            f"but only {total / info.sample_rate:.2f} s could be decoded{decoder}"
        )
    notes.report(path)


_AV_SCALE = {"u8": None, "s16": 1 / 32768.0, "s32": 1 / 2147483648.0, "s64": 1 / 9223372036854775808.0}


def _av_frame_array(frame, channels: int) -> np.ndarray:  # noqa: ANN001
    """A decoded PyAV audio frame as (n, C) float32."""
    arr = frame.to_ndarray()
    name = frame.format.name.rstrip("p")
    arr = arr.T if frame.format.is_planar else arr.reshape(-1, channels)  # -> (n, C)
    if name == "u8":
        out = (arr.astype(np.float32) - 128.0) / 128.0
    elif name in _AV_SCALE:
        out = arr.astype(np.float32) * np.float32(_AV_SCALE[name])
    else:  # flt, dbl
        out = arr.astype(np.float32, copy=False)
    return np.ascontiguousarray(out)


def _av_blocks(
    path: Path, info: AudioInfo, block: int, start: int = 0, stop: int | None = None
) -> Iterator[np.ndarray]:
    """(n, C) float32 blocks of samples ``[start, stop)`` from PyAV, trimmed to the declared stream length
    (samples before ``start`` are decoded and skipped)."""
    container = _av_open(path)
    try:
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        pending: list[np.ndarray] = []
        pending_n = 0
        total = 0
        limit = info.num_samples if info.num_samples else None
        if stop is not None:
            limit = stop if limit is None else min(limit, stop)
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    arr = _av_frame_array(frame, info.channels)
                    if arr.shape[1] != info.channels:
                        raise AudioError(f"{str(path)!r}: the number of channels changes inside the stream")
                    if limit is not None and total + arr.shape[0] > limit:  # encoder padding past the end
                        arr = arr[: max(0, limit - total)]
                    if total < start:
                        skip = min(start - total, arr.shape[0])
                        total += skip
                        arr = arr[skip:]
                    total += arr.shape[0]
                    if arr.shape[0]:
                        pending.append(arr)
                        pending_n += arr.shape[0]
                    if pending_n >= block:
                        yield np.concatenate(pending)
                        pending, pending_n = [], 0
                    if limit is not None and total >= limit:
                        break
                if limit is not None and total >= limit:
                    break
        except AudioError:
            raise
        except Exception as err:
            raise AudioError(
                f"audio file {str(path)!r} is truncated or corrupted: decoding failed after "
                f"{total / info.sample_rate:.2f} s ({err})"
            ) from err
        if pending:
            yield np.concatenate(pending)
        if start == 0 and stop is None and limit and limit - total > max(0.01 * limit, info.sample_rate):
            raise AudioError(
                f"audio file {str(path)!r} is truncated: the container declares {limit / info.sample_rate:.2f} s "
                f"but only {total / info.sample_rate:.2f} s could be decoded"
            )
    finally:
        container.close()


class BlockResampler:
    """Mix blocks of samples to mono (optional) and resample them, so that a stream of blocks gives what the
    whole signal gives: soxr's ``ResampleStream`` (quality ``HQ``), and a total length of
    ``ceil(n_in * sr_out / sr_in)`` (what ``librosa.load`` gives) once :meth:`finish` adds the tail.

    The one streaming resampler of ptsed: :class:`AudioStream` (files) and the live
    :class:`ptsed.inference.stream.StreamDetector` use it.

    Args:
        sr_in: the input rate in Hz.
        sr_out: the output rate in Hz.
        channels: channels of the (n, channels) input blocks.
        mono: mix to mono (the channel mean): output blocks (m,); else (m, channels).
    """

    def __init__(self, sr_in: int, sr_out: int, channels: int = 1, mono: bool = True) -> None:
        self.sr_in, self.sr_out, self.channels, self.mono = int(sr_in), int(sr_out), int(channels), mono
        self._soxr = None
        if self.sr_in != self.sr_out:
            import soxr

            width = 1 if mono else self.channels
            self._soxr = soxr.ResampleStream(self.sr_in, self.sr_out, width, dtype="float32", quality="HQ")
        self.n_in = 0
        self.n_out = 0

    def _nothing(self) -> np.ndarray:
        return np.zeros((0,) if self.mono else (0, self.channels), np.float32)

    def push(self, block: np.ndarray) -> np.ndarray:
        """One block, (n,) mono or (n, channels), in time order; returns the samples that are ready."""
        x = block.mean(axis=1, dtype=np.float32) if self.mono and block.ndim == 2 else block
        x = x.astype(np.float32, copy=False)
        self.n_in += x.shape[0]
        y = x if self._soxr is None else self._soxr.resample_chunk(x)
        self.n_out += y.shape[0]
        return y

    @property
    def target(self) -> int:
        """``ceil(n_in * sr_out / sr_in)``: the length of the whole signal at the output rate."""
        return -(-self.n_in * self.sr_out // self.sr_in)

    def finish(self) -> np.ndarray:
        """The rest (the resampler's delay), trimmed or zero-padded so that the total is :attr:`target`."""
        tail = self._nothing() if self._soxr is None else self._soxr.resample_chunk(self._nothing(), last=True)
        need = self.target - self.n_out
        if need < 0:
            raise AssertionError("resampler returned more samples than expected")  # pragma: no cover
        if tail.shape[0] > need:
            tail = tail[:need]
        elif tail.shape[0] < need:
            tail = np.concatenate([tail, np.zeros((need - tail.shape[0], *tail.shape[1:]), np.float32)])
        self.n_out += tail.shape[0]
        return np.asarray(tail, dtype=np.float32)


class AudioStream:
    """Decoded audio of one file, block by block, mixed and resampled on the fly.

    Iterate to get float32 blocks: (n,) when ``mono`` else (C, n), at ``sample_rate``. Blocks hold about
    ``block_s`` seconds (the last one less). After the iteration, :attr:`num_samples` is the total number of
    output samples per channel (``ceil(N_file * sample_rate / sr_file)``).

    Args:
        path: the audio file.
        sample_rate: output rate in Hz; ``None`` keeps the file's rate.
        mono: mix all channels to one (channel mean); otherwise keep them.
        block_s: seconds decoded per block.
        check_finite: raise :class:`AudioError` on NaN or infinite samples.
        offset_s: start reading here (seconds; soundfile formats seek, others decode and skip).
        duration_s: read at most this many seconds (``None``: to the end). A segment past the end is empty.

    Raises (while iterating, or on construction for missing/unreadable files):
        AudioError: with a message naming the file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sample_rate: int | None = None,
        *,
        mono: bool = True,
        block_s: float = DEFAULT_BLOCK_S,
        check_finite: bool = True,
        offset_s: float = 0.0,
        duration_s: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.info = audio_info(self.path)
        self.sample_rate = int(sample_rate or self.info.sample_rate)
        self.mono = mono
        self.channels = 1 if mono else self.info.channels
        self.block_s = float(block_s)
        self.check_finite = check_finite
        sr_file = self.info.sample_rate
        self._start = max(0, int(round(offset_s * sr_file)))
        self._stop = None if duration_s is None else self._start + max(0, int(round(duration_s * sr_file)))
        self.num_samples: int | None = None
        self.num_file_samples: int | None = None

    @property
    def duration_s(self) -> float | None:
        """Decoded duration in seconds after the iteration, else the declared duration."""
        if self.num_samples is not None:
            return self.num_samples / self.sample_rate
        return self.info.duration_s

    def _raw_blocks(self) -> Iterator[np.ndarray]:
        block = max(1, int(round(self.block_s * self.info.sample_rate)))
        reader = _soundfile_blocks if self.info.backend == "soundfile" else _av_blocks
        return reader(self.path, self.info, block, self._start, self._stop)

    def __iter__(self) -> Iterator[np.ndarray]:
        sr_in = self.info.sample_rate
        resampler = BlockResampler(sr_in, self.sample_rate, self.channels, mono=self.mono)
        held: np.ndarray | None = None  # the last block is held back and yielded with the tail
        for raw in self._raw_blocks():
            if self.check_finite and not np.isfinite(raw).all():
                bad = int(np.argwhere(~np.isfinite(raw))[0, 0]) + resampler.n_in
                raise AudioError(
                    f"audio file {str(self.path)!r} holds NaN or infinite samples (first at "
                    f"{bad / sr_in:.3f} s); ptsed does not repair audio, fix or remove the file"
                )
            data = resampler.push(raw)
            if data.shape[0] == 0:
                continue
            if held is not None:
                yield self._shape(held)
            held = data
        if resampler.n_in == 0 and self._start == 0 and self._stop is None:
            raise AudioError(f"audio file {str(self.path)!r} holds no audio samples (0 s)")
        tail = resampler.finish()
        held = tail if held is None else np.concatenate([held, tail])
        self.num_samples = resampler.target
        self.num_file_samples = resampler.n_in
        if held.shape[0]:
            yield self._shape(held)

    def _empty(self) -> np.ndarray:
        return np.zeros((0,) if self.mono else (0, self.channels), np.float32)

    def _shape(self, data: np.ndarray) -> np.ndarray:
        if self.mono:
            return np.ascontiguousarray(data, dtype=np.float32)
        return np.ascontiguousarray(data.T, dtype=np.float32)


def stream_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    mono: bool = True,
    block_s: float = DEFAULT_BLOCK_S,
    check_finite: bool = True,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> AudioStream:
    """Decode a file block by block; see :class:`AudioStream` (iterate it for (n,) or (C, n) blocks)."""
    return AudioStream(
        path,
        sample_rate,
        mono=mono,
        block_s=block_s,
        check_finite=check_finite,
        offset_s=offset_s,
        duration_s=duration_s,
    )


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    mono: bool = True,
    check_finite: bool = True,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Decode a whole file, or the segment ``[offset_s, offset_s + duration_s)`` of it.

    Args:
        path: the audio file (any format :func:`audio_info` reads).
        sample_rate: output rate in Hz (``None``: the file's rate).
        mono: mix channels to one (channel mean).
        check_finite: reject files with NaN or infinite samples.
        offset_s: start of the segment in seconds (soundfile formats seek there without decoding the rest).
        duration_s: length of the segment in seconds (``None``: to the end of the file).

    Returns:
        ``(samples, sample_rate)``: float32 (N,) when ``mono`` else (C, N).

    Raises:
        AudioError: missing, empty, truncated or non-audio file, or non-finite samples.
    """
    stream = stream_audio(
        path, sample_rate, mono=mono, check_finite=check_finite, offset_s=offset_s, duration_s=duration_s
    )
    blocks = list(stream)
    if not blocks:
        return np.zeros((0,) if mono else (stream.channels, 0), np.float32), stream.sample_rate
    return np.concatenate(blocks, axis=-1), stream.sample_rate


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample an in-memory signal (N,) or (C, N) exactly as :func:`stream_audio` would a file.

    Returns float32 of length ``ceil(N * sr_out / sr_in)`` along the last axis.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if sr_in == sr_out:
        return samples
    import soxr

    x = samples.T if samples.ndim == 2 else samples
    y = soxr.resample(x, sr_in, sr_out, quality="HQ")
    target = -(-samples.shape[-1] * sr_out // sr_in)
    if y.shape[0] < target:
        y = np.concatenate([y, np.zeros((target - y.shape[0], *y.shape[1:]), np.float32)])
    y = y[:target]
    return np.ascontiguousarray(y.T if samples.ndim == 2 else y, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------
# in-memory audio: the same checks, mix and resampler as files
# ----------------------------------------------------------------------------------------------------
def prepare_samples(
    samples: np.ndarray, sr_in: int, sr_out: int | None = None, *, mono: bool = True, name: str = "<array>"
) -> np.ndarray:
    """An in-memory signal, checked, mixed and resampled as :func:`stream_audio` does a file.

    Args:
        samples: (N,) or (C, N) samples (any float or int dtype; taken as float32).
        sr_in: their rate in Hz.
        sr_out: the rate wanted (``None``: ``sr_in``).
        mono: mix the channels to one by the channel mean; otherwise (C, N) (a (N,) signal gets C = 1).
        name: what the messages call the signal.

    Returns:
        float32 (N',) when ``mono`` else (C, N'), ``N' = ceil(N * sr_out / sr_in)``.

    Raises:
        AudioError: not (N,) or (C, N), no samples, or NaN or infinite samples.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim not in (1, 2):
        raise AudioError(f"{name}: expected a signal of shape (N,) or (C, N), got {x.shape}")
    if x.shape[-1] == 0:
        raise AudioError(f"{name} holds no samples")
    if not np.isfinite(x).all():
        raise AudioError(f"{name} holds NaN or infinite samples; ptsed does not repair audio")
    if mono and x.ndim == 2:
        x = x.mean(axis=0, dtype=np.float32)
    elif not mono and x.ndim == 1:
        x = x[None]
    return resample(x, sr_in, sr_out or sr_in)


def decode_bytes(
    data: bytes, sample_rate: int | None = None, *, mono: bool = True, name: str = "<bytes>"
) -> tuple[np.ndarray, int]:
    """Decode an encoded file held in memory (wav, flac, ogg, mp3: what soundfile reads).

    Returns:
        ``(samples, sample_rate)`` as :func:`prepare_samples` gives them (float32 (N,) or (C, N)).

    Raises:
        AudioError: not audio soundfile can decode, no samples, NaN or infinite samples (naming ``name``).
    """
    import io

    import soundfile as sf

    try:
        samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError / RuntimeError
        raise AudioError(f"cannot decode {name}: {err}") from err
    return prepare_samples(samples.T, sr, sample_rate, mono=mono, name=name), int(sample_rate or sr)


class ArrayStream:
    """An in-memory signal (N,) or (C, N) with the interface of :class:`AudioStream`: iterate it for
    float32 blocks of about ``block_s`` seconds, (n,) when ``mono`` else (C, n), at ``sr_out``
    (:func:`prepare_samples` checks, mixes and resamples it once)."""

    def __init__(
        self,
        samples: np.ndarray,
        sr_in: int,
        sr_out: int,
        mono: bool,
        name: str,
        block_s: float = DEFAULT_BLOCK_S,
    ) -> None:
        self.channels_in = 1 if np.ndim(samples) == 1 else int(np.shape(samples)[0])
        self.samples = prepare_samples(samples, sr_in, sr_out, mono=mono, name=name)
        self.sample_rate = sr_out
        self.file_sample_rate = sr_in
        self.num_samples = self.samples.shape[-1]
        self.block = max(1, int(block_s * sr_out))

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(0, self.num_samples, self.block):
            yield self.samples[..., i : i + self.block]


# ----------------------------------------------------------------------------------------------------
# finding inputs
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioSource:
    """One input file and the name its results are written under.

    Attributes:
        path: the file.
        name: the path relative to the folder it was found in (its base name when given directly), with
            forward slashes; output files are named after it and it is the ``filename`` column of tables.
    """

    path: Path
    name: str


def _norm_extensions(extensions: Iterable[str] | None) -> frozenset[str]:
    if extensions is None:
        return AUDIO_EXTENSIONS
    return frozenset(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)


def _scan_folder(root: Path, extensions: frozenset[str], recursive: bool) -> list[AudioSource]:
    it = root.rglob("*") if recursive else root.glob("*")
    found = [p for p in it if p.suffix.lower() in extensions and p.is_file()]
    return [AudioSource(p, p.relative_to(root).as_posix()) for p in sorted(found)]


def _read_list_file(path: Path) -> list[AudioSource]:
    from ptsed.io.tables import read_lines

    out = []
    for line in read_lines(path, "list file", error=AudioError):
        entry = Path(line).expanduser()
        name = entry.name if entry.is_absolute() else entry.as_posix()
        out.append(AudioSource(entry if entry.is_absolute() else path.parent / entry, name))
    return out


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    root: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def _glob_files(pattern: str) -> tuple[Path, list[Path]]:
    """(the pattern's literal root, the files that match it, sorted).

    ``**`` does not follow symbolic links to folders (pathlib's rule; ``glob.glob`` follows them, and a
    link loop then never ends), as folder scans do not. As in ``glob.glob``, names starting with ``.``
    match only a pattern part that starts with ``.``.
    """
    root = _glob_root(pattern)
    rel = Path(*Path(pattern).parts[len(root.parts) :])
    hidden_ok = any(part.startswith(".") for part in rel.parts)
    found = []
    for p in root.glob(rel.as_posix()):
        if not hidden_ok and any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if p.is_file():
            found.append(p)
    return root, sorted(found)


def list_audio_files(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    extensions: Iterable[str] | None = None,
    recursive: bool = True,
) -> list[AudioSource]:
    """Expand inputs into audio files, each with the name its results are written under.

    Args:
        inputs: files (taken as they are, whatever their extension), folders (searched for files with
            ``extensions``, recursively unless ``recursive=False``), glob patterns (``"rec/**/*.flac"``)
            and list files (``@files.txt``, or any ``.txt``/``.lst``/``.list`` file: one path per line,
            relative to the list file, ``#`` starts a comment).
        extensions: extensions picked up in folders and globs (default :data:`AUDIO_EXTENSIONS`).
        recursive: search folders recursively.

    Returns:
        The sources in input order (folder contents sorted); a file found twice is listed once.
        When two sources would get the same name, both get their path relative to their common folder.

    Raises:
        AudioError: an input that does not exist, a glob or folder that matches nothing.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    exts = _norm_extensions(extensions)
    out: list[AudioSource] = []
    for item in inputs:
        text = os.fspath(item)
        if text.startswith("@"):
            out.extend(_read_list_file(Path(text[1:]).expanduser()))
            continue
        path = Path(text).expanduser()
        if path.is_dir():
            found = _scan_folder(path, exts, recursive)
            if not found:
                raise AudioError(f"folder {text!r} holds no files with the extensions {', '.join(sorted(exts))}")
            out.extend(found)
        elif path.is_file():
            if path.suffix.lower() in LIST_EXTENSIONS:
                out.extend(_read_list_file(path))
            else:
                out.append(AudioSource(path, path.name))
        elif path.exists():  # a named pipe, a device: not something to read audio from
            raise AudioError(_not_regular(path, path.stat().st_mode))
        elif glob.has_magic(text):
            root, matches = _glob_files(text)
            matches = [p for p in matches if p.suffix.lower() in exts]
            if not matches:
                raise AudioError(f"the pattern {text!r} matches no audio files")
            out.extend(AudioSource(p, p.relative_to(root).as_posix()) for p in matches)
        else:
            raise AudioError(f"input {text!r} does not exist")
    return _dedupe(out)


def _dedupe(sources: list[AudioSource]) -> list[AudioSource]:
    seen: set[Path] = set()
    unique: list[AudioSource] = []
    for s in sources:
        key = s.path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(s)
    by_name: dict[str, list[int]] = {}
    for i, s in enumerate(unique):
        by_name.setdefault(s.name, []).append(i)
    clashes = [i for idx in by_name.values() if len(idx) > 1 for i in idx]
    if clashes:
        paths = [unique[i].path.resolve() for i in clashes]
        common = Path(os.path.commonpath(paths))
        for i, p in zip(clashes, paths, strict=True):
            unique[i] = AudioSource(unique[i].path, p.relative_to(common).as_posix())
    return unique


__all__ = [
    "AUDIO_EXTENSIONS",
    "MEDIA_EXTENSIONS",
    "SOUNDFILE_EXTENSIONS",
    "AudioInfo",
    "AudioSource",
    "AudioStream",
    "audio_info",
    "list_audio_files",
    "load_audio",
    "resample",
    "stream_audio",
]
