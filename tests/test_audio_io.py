"""ptsed.io.audio: decoding, resampling, mixing, streaming, bad files, input discovery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ptsed.core.errors import AudioError
from ptsed.io.audio import audio_info, list_audio_files, load_audio, resample, stream_audio


def _sine(sr: int, seconds: float, freq: float = 440.0, amp: float = 0.3, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    x = np.stack([amp * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)], axis=1)
    return x.astype(np.float32) if channels > 1 else x[:, 0].astype(np.float32)


def _write_av(path: Path, fmt: str, codec: str, sr: int, seconds: float, video: bool = False) -> np.ndarray:
    """Encode a stereo sine with PyAV (optionally with a video stream); returns the (2, N) signal."""
    av = pytest.importorskip("av")
    x = _sine(sr, seconds, channels=2).T.copy()
    with av.open(str(path), "w", format=fmt) as c:
        if video:
            v = c.add_stream("mpeg4", rate=10)
            v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        s = c.add_stream(codec, rate=sr)
        s.layout = "stereo"
        step = 1024
        for i in range(0, x.shape[1], step):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, i : i + step]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = sr, i
            for p in s.encode(frame):
                c.mux(p)
            if video and (i // step) % 4 == 0:
                vf = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                for p in v.encode(vf):
                    c.mux(p)
        for p in s.encode(None):
            c.mux(p)
        if video:
            for p in v.encode(None):
                c.mux(p)
    return x


def _corr_at_lag(a: np.ndarray, b: np.ndarray) -> float:
    """Best normalised correlation of two signals over small lags (codecs shift by their delay)."""
    n = min(a.size, b.size) - 2000
    best = 0.0
    for lag in range(0, 1500, 1):
        x, y = a[lag : lag + n], b[:n]
        best = max(best, float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12)))
        x, y = a[:n], b[lag : lag + n]
        best = max(best, float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12)))
        if best > 0.99:
            break
    return best


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_soundfile_formats_decode_and_resample(tmp_path: Path, ext: str) -> None:
    sr = 22_050
    x = _sine(sr, 1.5)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, sr)
    y, out_sr = load_audio(path, 16_000)
    assert out_sr == 16_000 and y.dtype == np.float32 and y.ndim == 1
    assert y.size == -(-x.size * 16_000 // sr)  # ceil, as librosa.load
    ref = resample(x, sr, 16_000)
    if ext in ("wav", "flac"):
        np.testing.assert_allclose(y, ref, atol=1e-4)  # PCM_16 quantisation only
    else:
        assert _corr_at_lag(y, ref) > 0.98
    info = audio_info(path)
    assert info.sample_rate == sr and info.channels == 1 and info.backend == "soundfile"


def test_96khz_8_channels_mixed_and_kept(tmp_path: Path) -> None:
    sr = 96_000
    x = _sine(sr, 0.5, channels=8) * 0.2
    path = tmp_path / "multi.wav"
    sf.write(path, x, sr, subtype="FLOAT")
    mono, _ = load_audio(path, 16_000)
    assert mono.shape == (-(-x.shape[0] // 6),)
    np.testing.assert_allclose(mono, resample(x.mean(axis=1), sr, 16_000), atol=1e-6)
    multi, _ = load_audio(path, 16_000, mono=False)
    assert multi.shape == (8, mono.size)
    np.testing.assert_allclose(multi.mean(axis=0), mono, atol=1e-5)
    assert audio_info(path).channels == 8


def test_streaming_equals_whole_file_and_blocks_are_bounded(tmp_path: Path) -> None:
    sr = 44_100
    x = np.random.default_rng(0).standard_normal(sr * 7 + 123).astype(np.float32) * 0.1
    path = tmp_path / "long.wav"
    sf.write(path, x, sr, subtype="FLOAT")
    stream = stream_audio(path, 16_000, block_s=0.5)
    blocks = list(stream)
    assert len(blocks) > 10
    assert max(b.size for b in blocks) <= 16_000  # about block_s of output (+ one held-back block)
    whole = np.concatenate(blocks)
    np.testing.assert_array_equal(whole, resample(x, sr, 16_000))  # soxr's stream equals its one-shot
    assert stream.num_samples == whole.size == -(-x.size * 16_000 // sr)


def test_segment_reading(tmp_path: Path) -> None:
    x = np.arange(16_000 * 3, dtype=np.float32) / 1e5
    path = tmp_path / "ramp.wav"
    sf.write(path, x, 16_000, subtype="FLOAT")
    seg, _ = load_audio(path, offset_s=1.0, duration_s=0.5)
    np.testing.assert_array_equal(seg, x[16_000:24_000])
    assert load_audio(path, offset_s=10.0)[0].size == 0


@pytest.mark.parametrize(
    ("fmt", "codec", "ext", "video"),
    [("mp4", "aac", "m4a", False), ("mp4", "aac", "mp4", True), ("webm", "libopus", "webm", False)],
)
def test_pyav_containers(tmp_path: Path, fmt: str, codec: str, ext: str, video: bool) -> None:
    sr = 48_000 if codec == "libopus" else 44_100
    path = tmp_path / f"clip.{ext}"
    x = _write_av(path, fmt, codec, sr, 1.0, video=video)
    info = audio_info(path)
    assert info.backend == "av" and info.channels == 2 and info.sample_rate == sr
    y, _ = load_audio(path, 16_000)
    assert abs(y.size - 16_000) <= 0.03 * 16_000
    ref = resample(x.mean(axis=0), sr, 16_000)
    assert _corr_at_lag(y, ref) > 0.95
    both, _ = load_audio(path, 16_000, mono=False)
    assert both.shape == (2, y.size)


def test_short_clip(tmp_path: Path) -> None:
    path = tmp_path / "short.wav"
    sf.write(path, _sine(8_000, 0.1), 8_000)
    y, _ = load_audio(path, 16_000)
    assert y.size == 1600


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    x = (_sine(16_000, 2.0) * 0.5).astype(np.float32)
    good = tmp_path / "good.wav"
    sf.write(good, x, 16_000)
    data = good.read_bytes()
    cases: dict[str, tuple[Path, str]] = {}

    def add(name: str, content: bytes, expect: str) -> None:
        p = tmp_path / name
        p.write_bytes(content)
        cases[name] = (p, expect)

    add("empty.wav", b"", "empty")
    add("header_only.wav", data[:44], "truncated")
    add("truncated.wav", data[: len(data) // 2], "truncated")
    add("text.wav", b"this is not audio\n" * 20, "not an audio file")
    add("text.m4a", b"this is not audio\n" * 20, "not an audio or video file")
    flac = tmp_path / "full.flac"
    sf.write(flac, x, 16_000)
    add("truncated.flac", flac.read_bytes()[: flac.stat().st_size // 2], "truncated")
    mp3 = tmp_path / "full.mp3"
    sf.write(mp3, x, 16_000)
    add("truncated.mp3", mp3.read_bytes()[: mp3.stat().st_size // 2], "truncated")
    sf.write(tmp_path / "zero_samples.wav", np.zeros(0, np.float32), 16_000)
    cases["zero_samples.wav"] = (tmp_path / "zero_samples.wav", "no audio samples")
    nan = x.copy()
    nan[1000] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16_000, subtype="FLOAT")
    cases["nan.wav"] = (tmp_path / "nan.wav", "NaN")
    inf = x.copy()
    inf[5] = np.inf
    sf.write(tmp_path / "inf.wav", inf, 16_000, subtype="FLOAT")
    cases["inf.wav"] = (tmp_path / "inf.wav", "infinite")
    cases["missing.wav"] = (tmp_path / "missing.wav", "does not exist")
    return cases


def test_bad_files_raise_clear_errors(tmp_path: Path) -> None:
    for name, (path, expect) in _bad_files(tmp_path).items():
        with pytest.raises(AudioError) as info:
            load_audio(path, 16_000)
        msg = str(info.value)
        assert name in msg, msg
        assert expect in msg, f"{name}: {msg}"


def test_list_audio_files(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    (root / "site1").mkdir(parents=True)
    (root / "site2").mkdir()
    for rel in ["a.wav", "site1/b.flac", "site2/c.mp3", "site2/notes.txt", "site1/d.WAV"]:
        (root / rel).write_bytes(b"x")
    names = [s.name for s in list_audio_files(root)]
    assert names == ["a.wav", "site1/b.flac", "site1/d.WAV", "site2/c.mp3"]
    assert [s.name for s in list_audio_files(root, recursive=False)] == ["a.wav"]
    assert [s.name for s in list_audio_files(root, extensions=["flac"])] == ["site1/b.flac"]
    assert [s.name for s in list_audio_files(str(root / "**" / "*.mp3"))] == ["site2/c.mp3"]
    assert [s.name for s in list_audio_files(root / "site1" / "b.flac")] == ["b.flac"]
    lst = tmp_path / "files.txt"
    lst.write_text("# two files\nrec/a.wav\n\nrec/site2/c.mp3\n")
    from_list = list_audio_files([f"@{lst}"])
    assert [s.name for s in from_list] == ["rec/a.wav", "rec/site2/c.mp3"]
    assert from_list[0].path == lst.parent / "rec/a.wav"
    assert [s.name for s in list_audio_files([lst])] == ["rec/a.wav", "rec/site2/c.mp3"]
    # the same file twice is listed once; equal base names from different folders are told apart
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.wav").write_bytes(b"x")
    both = list_audio_files([root / "a.wav", root / "a.wav", tmp_path / "other" / "a.wav"])
    assert [s.name for s in both] == ["rec/a.wav", "other/a.wav"]
    with pytest.raises(AudioError, match="does not exist"):
        list_audio_files(tmp_path / "nope")
    with pytest.raises(AudioError, match="matches no audio"):
        list_audio_files(str(tmp_path / "*.ogg"))


# -- issue 17 ------------------------------------------------------------------------------------------------
def test_a_glob_does_not_follow_folder_links(tmp_path: Path) -> None:
    """``**`` over a folder link loop once never ended (glob.glob follows links: 2^depth paths)."""
    import signal

    root = tmp_path / "rec"
    (root / "sub").mkdir(parents=True)
    for rel in ["a.wav", "sub/b.wav", ".hidden.wav", "sub/.c.wav"]:
        (root / rel).write_bytes(b"x")
    (root / "sub" / "up").symlink_to("..", target_is_directory=True)
    (root / "sub" / "self").symlink_to(".", target_is_directory=True)

    class TooLong(Exception):  # not TimeoutError: glob.glob swallows OSErrors
        pass

    def too_long(*_: object) -> None:
        raise TooLong("the glob did not finish in 10 s")

    old = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(10)
    try:
        names = [s.name for s in list_audio_files(str(root / "**" / "*.wav"))]
        hidden = [s.name for s in list_audio_files(str(root / "**" / ".*.wav"))]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert names == ["a.wav", "sub/b.wav"]  # as glob.glob: names starting with '.' need a pattern part with '.'
    assert hidden == [".hidden.wav", "sub/.c.wav"]


def _random_bytes(path: Path, n: int = 20_000) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def test_random_bytes_are_not_called_a_pipe_or_a_stream_without_sample_rate(tmp_path: Path, capfd) -> None:  # noqa: ANN001
    for ext in (".mp3", ".flac", ".wav", ".ogg"):
        path = _random_bytes(tmp_path / f"random{ext}")
        with pytest.raises(AudioError) as info:
            load_audio(path)
        msg = str(info.value)
        assert f"random{ext}" in msg and "not an audio file ptsed can read" in msg, msg
        assert "pipe" not in msg and "does not exist" not in msg and "has no sample rate" not in msg, msg
    # libmpg123's chatter goes with the file's message, not bare to stderr
    with pytest.raises(AudioError, match=r"random\.mp3.*the decoder said: Note: Illegal Audio-MPEG-Header"):
        audio_info(tmp_path / "random.mp3")
    assert "Illegal Audio-MPEG-Header" not in capfd.readouterr().err


def test_decoder_chatter_of_a_file_that_decodes_is_one_line_naming_it(tmp_path: Path, capfd) -> None:  # noqa: ANN001
    mp3 = tmp_path / "tail.mp3"
    sf.write(mp3, _sine(16_000, 3.0), 16_000)
    mp3.write_bytes(mp3.read_bytes() + _random_bytes(tmp_path / "junk", 3000).read_bytes())
    y, _ = load_audio(mp3, 16_000)
    assert y.size >= 3 * 16_000
    err = capfd.readouterr().err.splitlines()
    assert err and all(line.startswith(f"ptsed: {str(mp3)!r}: the decoder reported: ") for line in err), err


def test_a_fifo_is_not_a_regular_file_not_a_missing_one(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "live.wav"
    os.mkfifo(fifo)
    for call in (lambda: load_audio(fifo), lambda: list_audio_files([fifo])):
        with pytest.raises(AudioError) as info:
            call()
        assert (
            str(info.value)
            == f"{str(fifo)!r} is not a regular file but a named pipe (FIFO); ptsed reads audio from regular files"
        )
    with pytest.raises(AudioError, match="is not a regular file but a folder"):
        load_audio(tmp_path)


def test_an_unreadable_file_says_so_not_that_it_is_not_audio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run as root, who reads every file: the denial is simulated where Python opens files."""
    import builtins

    import ptsed.io.audio as audio

    path = tmp_path / "locked.wav"
    sf.write(path, _sine(16_000, 1.0), 16_000)
    real_open = builtins.open

    def deny(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(audio, "open", deny, raising=False)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert str(info.value) == f"cannot read audio file {str(path)!r}: permission denied"


def test_one_decode_path_for_files_bytes_and_arrays(tmp_path: Path) -> None:
    """Bytes (AudioSet HDF5), arrays (Predictor) and files are checked, mixed and resampled the same way."""
    import io

    from ptsed.data.audioset import decode_audio_bytes
    from ptsed.io.audio import ArrayStream, decode_bytes, prepare_samples

    rng = np.random.default_rng(0)
    stereo = (rng.standard_normal((2, 8000)) * 0.1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, stereo.T, 8000, format="WAV", subtype="FLOAT")
    path = tmp_path / "s.wav"
    path.write_bytes(buf.getvalue())
    from_file, _ = load_audio(path, 16000)
    from_bytes, sr = decode_bytes(buf.getvalue(), 16000)
    assert sr == 16000
    np.testing.assert_allclose(from_bytes, from_file, atol=1e-6)
    np.testing.assert_array_equal(decode_audio_bytes(buf.getvalue(), 16000), from_bytes)
    np.testing.assert_array_equal(prepare_samples(stereo, 8000, 16000), from_bytes)
    stream = ArrayStream(stereo, 8000, 16000, mono=False, name="x", block_s=0.25)
    assert stream.channels_in == 2 and [b.shape for b in stream] == [(2, 4000)] * 4
    bad = stereo.copy()
    bad[1, 5] = np.nan
    for call in (lambda: prepare_samples(bad, 8000), lambda: ArrayStream(bad, 8000, 8000, True, "<array>")):
        with pytest.raises(AudioError, match="holds NaN or infinite samples; ptsed does not repair audio"):
            call()
    with pytest.raises(AudioError, match="cannot decode the audio of Ya"):
        decode_audio_bytes(b"not audio" * 10, 16000, name="Ya")
