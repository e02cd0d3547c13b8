"""``ptsed listen`` end to end with the demo model: files, pipes, standard input, URLs, a fake microphone;
partial files while running, final files at the end and on Ctrl-C; faults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ptsed.cli.main import main
from ptsed.io.results import read_events

REPO = Path(__file__).resolve().parents[1]
SOUNDSCAPE = REPO / "examples" / "soundscape.wav"
HOP = ["--hop", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ptsed detect`` on the example soundscape with the same window and hop."""
    out = tmp_path_factory.mktemp("detect")
    args = ["detect", str(SOUNDSCAPE), "--model", "demo", *HOP, "--output", str(out), "-q"]
    assert main([*args, "--format", "tsv,csv,audacity,raven,scores,scores_filtered"]) == 0
    return out


def _events(path: Path) -> list[tuple]:
    return [(e.onset, e.offset, e.label) for e in read_events(path)]


def _no_partial(out: Path) -> None:
    assert not [p for p in out.rglob("*") if ".partial" in p.name or p.name.endswith(".tmp")]


def _pcm16(path: Path) -> bytes:
    x, _ = sf.read(path, dtype="int16")
    return x.tobytes()


def _stdin_from(monkeypatch: pytest.MonkeyPatch, data: bytes, pause_after: int | None = None) -> None:
    """Standard input as a real pipe fed by a thread (``pause_after``: a stall of 0.3 s after that many bytes)."""
    r, w = os.pipe()

    def feed() -> None:
        view = memoryview(data)
        cut = len(data) if pause_after is None else pause_after
        os.write(w, view[:cut]) if cut else None
        if pause_after is not None:
            time.sleep(0.3)
        for i in range(cut, len(data), 4096):
            os.write(w, view[i : i + 4096])
        os.close(w)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=os.fdopen(r, "rb")))


def _same_table(a: Path, b: Path) -> None:
    """Equal tables, numbers within 1e-5 (a score's last printed digit depends on the batch of windows)."""
    rows_a, rows_b = a.read_text().splitlines(), b.read_text().splitlines()
    assert len(rows_a) == len(rows_b), a.name
    for ra, rb in zip(rows_a, rows_b, strict=True):
        cells_a, cells_b = ra.replace(",", "\t").split("\t"), rb.replace(",", "\t").split("\t")
        assert len(cells_a) == len(cells_b), (a.name, ra, rb)
        for x, y in zip(cells_a, cells_b, strict=True):
            try:
                assert abs(float(x) - float(y)) <= 1e-5, (a.name, ra, rb)
            except ValueError:
                assert x == y, (a.name, ra, rb)


def test_a_file_gives_detects_files_and_prints_events(reference: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "live"
    fmts = "jsonl,tsv,csv,audacity,raven,scores,scores_filtered"
    assert main(["listen", str(SOUNDSCAPE), "--model", "demo", *HOP, "--output", str(out), "--format", fmts]) == 0
    printed = capsys.readouterr()
    for name in ("events.tsv", "events.csv", "audacity/soundscape.txt", "raven/soundscape.selections.txt"):
        _same_table(out / name, reference / name)
    for name in ("scores/soundscape.tsv", "scores_filtered/soundscape.tsv"):
        a = np.loadtxt(out / name, skiprows=1)
        b = np.loadtxt(reference / name, skiprows=1)
        np.testing.assert_allclose(a, b, atol=1e-5)
    lines = (out / "events.jsonl").read_text().splitlines()
    assert len(lines) == len(_events(reference / "events.tsv")) > 0
    ref = _events(reference / "events.tsv")
    for onset, offset, label in ref:  # each event printed as a line: label, onset, offset, score
        assert any(ln.startswith(label) and f"{onset:9.2f} {offset:9.2f}" in ln for ln in printed.out.splitlines())
    assert "listened to 20.00 s of soundscape.wav: " in printed.err
    _no_partial(out)


def test_stdin_wav_through_a_pipe_with_a_stall(reference: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """A WAV stream on standard input (a real pipe) that stalls mid-way: the same events, named ``stdin``,
    no audio dropped (back-pressure)."""
    _stdin_from(monkeypatch, SOUNDSCAPE.read_bytes(), pause_after=50_001)
    out = tmp_path / "o"
    assert main(["listen", "-", "--model", "demo", *HOP, "--output", str(out), "--format", "tsv,scores", "-q"]) == 0
    assert _events(out / "events.tsv") == _events(reference / "events.tsv")
    assert {e.filename for e in read_events(out / "events.tsv")} == {"stdin"}
    assert (out / "scores" / "stdin.tsv").exists()
    _no_partial(out)


def test_tables_grow_under_partial_names_while_the_stream_runs(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Standard input stalls after 16 s: meanwhile the tables exist under partial names only; at the end of
    the stream they get their final names and no partial file is left."""
    out = tmp_path / "o"
    data = _pcm16(SOUNDSCAPE)
    seen: dict[str, object] = {}
    r, w = os.pipe()

    def feed() -> None:
        os.write(w, data[: 16 * 32000])
        partial = out / "scores" / "stdin.partial.tsv"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (partial.exists() and len(partial.read_text().splitlines()) > 50):
            time.sleep(0.05)
        seen["partial"] = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*") if p.name != ".ptsed.lock")
        os.write(w, data[16 * 32000 :])
        os.close(w)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=os.fdopen(r, "rb")))
    args = ["listen", "-", "--rate", "16000", "--model", "demo", *HOP, "-q"]
    assert main([*args, "--output", str(out), "--format", "jsonl,tsv,csv,audacity,scores"]) == 0
    thread.join()
    assert seen["partial"] == [
        "audacity/stdin.partial.txt",
        "events.partial.csv",
        "events.partial.jsonl",
        "events.partial.tsv",
        "scores/stdin.partial.tsv",
    ]
    final = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*"))
    assert final == ["audacity/stdin.txt", "events.csv", "events.jsonl", "events.tsv", "scores/stdin.tsv"]
    assert len((out / "scores" / "stdin.tsv").read_text().splitlines()) == 501


def test_raw_pcm_on_stdin_ending_mid_sample(reference: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    _stdin_from(monkeypatch, _pcm16(SOUNDSCAPE) + b"\x01")
    out = tmp_path / "o"
    args = ["listen", "-", "--rate", "16000", "--dtype", "s16", "--model", "demo", *HOP, "--output", str(out)]
    assert main(args) == 0
    assert _events(out / "events.tsv") == _events(reference / "events.tsv")
    err = capsys.readouterr().err
    assert "ended inside a sample frame: 1 trailing bytes" in err


def test_malformed_stdin_is_one_line(monkeypatch, capsys) -> None:  # noqa: ANN001
    _stdin_from(monkeypatch, b"this is not audio at all, just some text " * 50)
    assert main(["listen", "-", "--model", "demo", *HOP]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "standard input" in err[0] and "Traceback" not in err[0]


def test_bad_samples_mid_stream_keep_the_events_already_emitted(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    """float32 PCM with a NaN at 18 s: a clear error, exit 1, and the final tables hold the events before it."""
    x, _ = sf.read(SOUNDSCAPE, dtype="float32")
    x[18 * 16000] = np.nan
    _stdin_from(monkeypatch, x.tobytes())
    out = tmp_path / "o"
    args = ["listen", "-", "--rate", "16000", "--dtype", "f32", "--model", "demo", *HOP, "--output", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and "the events before it are written" in err and "Traceback" not in err
    events = _events(out / "events.tsv")
    assert events and all(offset <= 18.0 for _, offset, _ in events)
    _no_partial(out)


def test_a_named_pipe_reads_like_stdin(reference: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "live.fifo"
    os.mkfifo(fifo)
    data = SOUNDSCAPE.read_bytes()

    def write() -> None:
        with open(fifo, "wb") as fh:
            for i in range(0, len(data), 32_000):
                fh.write(data[i : i + 32_000])

    thread = threading.Thread(target=write)
    thread.start()
    out = tmp_path / "o"
    assert main(["listen", str(fifo), "--model", "demo", *HOP, "--output", str(out), "-q"]) == 0
    thread.join()
    assert _events(out / "events.tsv") == _events(reference / "events.tsv")


def test_a_url_through_pyav(reference: Path, tmp_path: Path) -> None:
    flac = tmp_path / "a.flac"
    x, sr = sf.read(SOUNDSCAPE, dtype="float32")
    sf.write(flac, x, sr, subtype="PCM_24")
    out = tmp_path / "o"
    assert main(["listen", flac.as_uri(), "--model", "demo", *HOP, "--output", str(out), "-q"]) == 0
    assert _events(out / "events.tsv") == _events(reference / "events.tsv")


def test_follow_a_file_that_grows(reference: Path, tmp_path: Path) -> None:
    data = SOUNDSCAPE.read_bytes()
    growing = tmp_path / "rec.wav"
    growing.write_bytes(data[:20_000])

    def write_rest() -> None:
        with open(growing, "ab") as fh:
            for i in range(20_000, len(data), 160_000):
                time.sleep(0.2)
                fh.write(data[i : i + 160_000])
                fh.flush()

    thread = threading.Thread(target=write_rest)
    thread.start()
    out = tmp_path / "o"
    args = ["listen", str(growing), "--follow", "--idle-timeout", "1", "--model", "demo", *HOP, "--output", str(out)]
    assert main([*args, "-q"]) == 0
    thread.join()
    assert _events(out / "events.tsv") == _events(reference / "events.tsv")


# ----------------------------------------------------------------------------------------------------
# a fake microphone
# ----------------------------------------------------------------------------------------------------
class _PortAudioError(Exception):
    pass


def _fake_sounddevice(samples: np.ndarray, *, devices: int = 1, busy: bool = False, speed: float = 50.0):
    """A stand-in for the sounddevice module: ``devices`` input devices at 16 kHz; the stream's callback
    delivers ``samples`` in 0.1 s blocks, ``speed`` times faster than real time."""
    import importlib.machinery

    mod = types.ModuleType("sounddevice")
    mod.__spec__ = importlib.machinery.ModuleSpec("sounddevice", None)  # installed, as far as the extra check sees
    mod.PortAudioError = _PortAudioError

    def query_devices(device=None, kind=None):  # noqa: ANN001, ANN202
        if device is not None and not 0 <= device < devices:
            raise ValueError(f"No input device matching {device!r}")
        if devices == 0:
            raise _PortAudioError("Error querying device -1")
        return {"name": "fake mic", "max_input_channels": 1, "default_samplerate": 16000.0}

    class InputStream:
        def __init__(self, *, callback, blocksize, finished_callback, **kw) -> None:  # noqa: ANN001
            self.callback, self.blocksize, self.running = callback, blocksize, False
            self.finished = finished_callback

        def start(self) -> None:
            if busy:
                raise _PortAudioError("Error opening InputStream: Device unavailable [PaErrorCode -9985]")
            self.running = True
            threading.Thread(target=self._run, daemon=True).start()

        def _run(self) -> None:
            for i in range(0, len(samples), self.blocksize):
                if not self.running:
                    return
                self.callback(samples[i : i + self.blocksize, None], self.blocksize, None, None)
                time.sleep(self.blocksize / 16000 / speed)
            self.finished()  # the end of the recording (a real device: unplugged or stopped)

        def stop(self) -> None:
            self.running = False

        def close(self) -> None:
            self.running = False

    mod.query_devices = query_devices
    mod.InputStream = InputStream
    return mod


def test_missing_and_busy_microphones_are_one_line(monkeypatch, capsys) -> None:  # noqa: ANN001
    x = np.zeros(16000, np.float32)
    monkeypatch.setitem(sys.modules, "sounddevice", _fake_sounddevice(x))
    assert main(["listen", "mic:3", "--model", "demo", *HOP]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "microphone 'mic:3': no such input device" in err[0]
    monkeypatch.setitem(sys.modules, "sounddevice", _fake_sounddevice(x, busy=True))
    assert main(["listen", "mic", "--model", "demo", *HOP, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be opened, it may be busy" in err[0] and "Device unavailable" in err[0]


def test_microphone_that_outruns_processing_drops_and_reports(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    """A fake microphone 400x faster than real time: with --max-lag 1 s audio is dropped, each span is
    reported with its times and counted in the summary; with --max-lag inf nothing is dropped."""
    x, _ = sf.read(SOUNDSCAPE, dtype="float32", frames=12 * 16000)
    monkeypatch.setitem(sys.modules, "sounddevice", _fake_sounddevice(x, speed=400.0))
    out = tmp_path / "drop"
    assert main(["listen", "mic", "--model", "demo", *HOP, "--max-lag", "1", "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "dropped" in err and "processing fell behind by more than --max-lag 1 s" in err
    assert "s of audio in" in err.splitlines()[-2]  # the summary counts the spans
    _no_partial(out)
    monkeypatch.setitem(sys.modules, "sounddevice", _fake_sounddevice(x, speed=400.0))
    out = tmp_path / "keep"
    assert main(["listen", "mic", "--model", "demo", *HOP, "--max-lag", "inf", "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "dropped" not in err and "listened to 12.00 s of mic" in err


@pytest.mark.slow
def test_partial_files_while_running_and_final_files_after_ctrl_c(tmp_path: Path) -> None:
    """A paced file in a subprocess: tables grow under partial names; Ctrl-C makes them final."""
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "ptsed", "listen", str(SOUNDSCAPE), "--model", "demo", "--hop", "0.5",
           "--device", "cpu", "--realtime", "--output", str(out), "--format", "jsonl,tsv,scores", "-q"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = out / "scores" / "soundscape.partial.tsv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and len(partial.read_text().splitlines()) > 5:
            break
        time.sleep(0.1)
    assert partial.exists() and not (out / "scores" / "soundscape.tsv").exists()
    assert (out / "events.partial.jsonl").exists()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    rows = (out / "scores" / "soundscape.tsv").read_text().splitlines()
    assert 5 < len(rows) < 501  # what was heard before Ctrl-C, flushed
    assert (out / "events.tsv").exists() and (out / "events.jsonl").exists()
    _no_partial(out)


def test_realtime_file_is_paced(tmp_path: Path) -> None:
    from ptsed.io.sources import open_source

    wav = tmp_path / "short.wav"
    sf.write(wav, np.zeros(8000, np.float32), 16000)
    source = open_source(str(wav), realtime=True)
    start = time.monotonic()
    n = sum(b.shape[0] for b in source if isinstance(b, np.ndarray))
    assert n == 8000 and time.monotonic() - start >= 0.4
    source = open_source(str(wav))
    start = time.monotonic()
    assert sum(b.shape[0] for b in source) == 8000 and time.monotonic() - start < 0.4


def test_realtime_buffer_drops_the_oldest_audio_and_reports_spans() -> None:
    from ptsed.io.sources import Dropped, RealtimeBuffer

    buf = RealtimeBuffer(100, max_lag_s=0.25)
    for _ in range(6):
        buf.put(np.zeros((10, 1), np.float32))  # 0.6 s arrive before the reader reads
    buf.end()
    items = list(buf)
    drops = [i for i in items if isinstance(i, Dropped)]
    assert drops == [Dropped(0.0, 0.4)] and sum(i.shape[0] for i in items if isinstance(i, np.ndarray)) == 20
    assert buf.drop_count == 1 and buf.dropped_s == pytest.approx(0.4)
    keep = RealtimeBuffer(100, max_lag_s=float("inf"))
    for _ in range(6):
        keep.put(np.zeros((10, 1), np.float32))
    keep.end()
    assert sum(i.shape[0] for i in keep) == 60


def test_listen_refuses_formats_that_need_the_whole_stream(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main(["listen", str(SOUNDSCAPE), "--model", "demo", "--output", str(tmp_path), "--format", "npz"]) == 2
    assert "unknown output format" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------
# vocabulary options and the ONNX backend (issues 13 and 14): as in detect
# ----------------------------------------------------------------------------------------------------
DEMO_MAP = (
    "Speech\tvoice\nMusic\tmusic\nBeep, bleep\tbeep\nCattle, bovinae\tanimal\nHorse\tanimal\nChicken, rooster\tanimal\n"
)


@pytest.mark.parametrize("vocabulary", ["rollup", "class_map", "rollup_include"])
def test_vocabulary_options_give_the_events_of_detect(tmp_path: Path, vocabulary: str) -> None:
    """``--rollup``, ``--class-map`` (merging classes) and ``--include`` of a rolled-up parent: the streamed
    events and filtered scores equal ``ptsed detect``'s with the same options; raw scores stay the model's."""
    cmap = tmp_path / "map.tsv"
    cmap.write_text(DEMO_MAP)
    opts = {
        "rollup": ["--rollup"],
        "class_map": ["--class-map", str(cmap)],
        "rollup_include": ["--rollup", "--include", "Human voice", "--include", "Animal"],
    }[vocabulary]
    fmt = ["--format", "tsv,scores,scores_filtered", "-q"]
    det, live = tmp_path / "detect", tmp_path / "listen"
    assert main(["detect", str(SOUNDSCAPE), "--model", "demo", *HOP, *opts, "--output", str(det), *fmt]) == 0
    assert main(["listen", str(SOUNDSCAPE), "--model", "demo", *HOP, *opts, "--output", str(live), *fmt]) == 0
    events = _events(det / "events.tsv")
    assert events and _events(live / "events.tsv") == events
    labels = {label for _, _, label in events}
    if vocabulary == "class_map":
        assert labels <= {"voice", "music", "beep", "animal"}
    else:
        assert labels & {"Human voice", "Animal"}  # parents the demo model does not have
    for name, columns in (("scores_filtered", None), ("scores", 2 + 10)):
        a, b = (f / name / "soundscape.tsv" for f in (live, det))
        assert a.read_text().splitlines()[0] == b.read_text().splitlines()[0]  # the same classes
        x, y = np.loadtxt(a, skiprows=1), np.loadtxt(b, skiprows=1)
        np.testing.assert_allclose(x, y, atol=1e-5)
        if columns is not None:
            assert x.shape[1] == columns  # raw scores: the model's 10 classes


def test_unknown_class_fails_with_a_suggestion_before_reading_audio(monkeypatch, capsys) -> None:  # noqa: ANN001
    """A misspelt name among the rolled-up classes, or a name that is not a class: one line with the closest
    names, and not a byte of the raw PCM on standard input is read."""
    data = b"\x01\x02" * 500
    cases = [(["--rollup", "--include", "Human voise"], "Human voice"), (["--include", "Beep"], "Beep, bleep")]
    for opts, suggestion in cases:
        r, w = os.pipe()
        os.write(w, data)
        os.close(w)
        with os.fdopen(r, "rb") as fh:
            monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=fh))
            assert main(["listen", "-", "--rate", "16000", "--model", "demo", *HOP, *opts]) != 0
            assert fh.read() == data  # nothing was read
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and opts[-1] in err[0] and suggestion in err[0], err


def test_listen_offers_no_csebb_decoder(capsys) -> None:  # noqa: ANN001
    """cSEBB boxes need whole clips: listen has no ``--decoder`` (an argparse error, one usage line)."""
    with pytest.raises(SystemExit) as exc:
        main(["listen", str(SOUNDSCAPE), "--model", "demo", "--decoder", "csebb"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --decoder csebb" in capsys.readouterr().err


@pytest.mark.slow
def test_backend_onnx_gives_the_events_of_torch(tmp_path: Path) -> None:
    """``listen --backend onnx`` (exported on first use, ~9 s here): the events and raw scores of torch."""
    runs = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / backend
        argv = ["listen", str(SOUNDSCAPE), "--model", "demo", *HOP, "--backend", backend, "--output", str(out)]
        assert main([*argv, "--format", "tsv,scores", "-q"]) == 0
        runs[backend] = (_events(out / "events.tsv"), np.loadtxt(out / "scores" / "soundscape.tsv", skiprows=1))
    assert runs["onnx"][0] == runs["torch"][0] and runs["torch"][0]
    assert np.abs(runs["onnx"][1] - runs["torch"][1]).max() <= 1e-4
