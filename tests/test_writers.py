"""Result writers and readers (ptsed.io.results) on hand-made results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ptsed.core.errors import ConfigError
from ptsed.core.frames import frame_times
from ptsed.core.types import Event, FrameScores
from ptsed.inference.types import Embeddings, FileResult
from ptsed.io.results import (
    DETECT_WRITERS,
    EMBED_WRITERS,
    get_writer,
    parse_formats,
    read_embeddings,
    read_events,
    read_frame_scores,
    scores_tsv_text,
)

LABELS = ["Speech", "Accelerating, revving, vroom", "Dog"]


def _result(name: str = "site1/rec.wav", frames: int = 30, duration: float = 1.17, padded: int = 0) -> FileResult:
    rng = np.random.default_rng(0)
    scores = rng.random((frames + padded, 3)).astype(np.float32)
    ts = frame_times(frames + padded + 1, 0.04, duration)
    fs = FrameScores(scores, ts, LABELS, source=name)
    filtered = FrameScores(scores * 0.5, ts, LABELS, source=name)
    events = [
        Event(0.04, 0.36, "Accelerating, revving, vroom", name, 0.91),
        Event(0.12, 1.17, "Dog", name, 0.55),
    ]
    result = FileResult(source=f"/data/{name}", name=name, duration_s=duration, scores=[fs], events=events)
    result.filtered = [filtered]
    return result


def _write(fmt: str, out: Path, results: list[FileResult], **kw: object) -> None:
    w = get_writer(fmt, out, **kw)
    for r in results:
        w.write(r)
        if r.ok:
            w.add(r)
    w.close()


def test_dcase_tsv_combined_and_per_file(tmp_path: Path) -> None:
    a, b = _result("a.wav"), _result("sub/b.wav")
    _write("tsv", tmp_path, [a, b])
    lines = (tmp_path / "events.tsv").read_text().splitlines()
    assert lines[0] == "filename\tonset\toffset\tevent_label"
    assert lines[1] == "a.wav\t0.04\t0.36\tAccelerating, revving, vroom"
    assert lines[4] == "sub/b.wav\t0.12\t1.17\tDog"
    _write("tsv", tmp_path / "pf", [a, b], per_file=True)
    assert (tmp_path / "pf" / "events" / "sub" / "b.tsv").read_text().splitlines()[1].startswith("sub/b.wav\t")
    events = read_events(tmp_path / "events.tsv")
    assert [(e.filename, e.onset, e.offset, e.label) for e in events][1] == ("a.wav", 0.12, 1.17, "Dog")


def test_csv_layouts(tmp_path: Path) -> None:
    r = _result("test_25s.wav")
    _write("csv", tmp_path / "ours", [r])
    with open(tmp_path / "ours" / "events.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["event_label", "onset", "offset", "filename", "score"]
    assert rows[1] == ["Accelerating, revving, vroom", "0.04", "0.36", "test_25s.wav", "0.91"]
    _write("csv", tmp_path / "up", [r], upstream=True)
    text = (tmp_path / "up" / "events.csv").read_text()
    assert text.splitlines()[:2] == [
        "event_label,onset,offset,filename",
        '"Accelerating, revving, vroom",0.04,0.36,test_25s.wav',
    ]
    assert [e.score for e in read_events(tmp_path / "ours" / "events.csv")] == [0.91, 0.55]


def test_json_audacity_raven(tmp_path: Path) -> None:
    r = _result()
    failed = FileResult(source="x", name="bad.wav", error="broken")
    _write("json", tmp_path, [r, failed], settings={"threshold": 0.5})
    doc = json.loads((tmp_path / "events.json").read_text())
    assert doc["settings"] == {"threshold": 0.5}
    assert [f["filename"] for f in doc["files"]] == ["site1/rec.wav"]
    assert doc["files"][0]["events"][1] == {"onset": 0.12, "offset": 1.17, "event_label": "Dog", "score": 0.55}
    assert len(read_events(tmp_path / "events.json")) == 2
    _write("audacity", tmp_path, [r])
    assert (tmp_path / "audacity" / "site1" / "rec.txt").read_text().splitlines() == [
        "0.040000\t0.360000\tAccelerating, revving, vroom",
        "0.120000\t1.170000\tDog",
    ]
    _write("raven", tmp_path, [r], sample_rate=16_000)
    rows = (tmp_path / "raven" / "site1" / "rec.selections.txt").read_text().splitlines()
    assert rows[0].split("\t")[:5] == ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)"]
    assert rows[2].split("\t") == ["2", "Spectrogram 1", "1", "0.1200", "1.1700", "0.0", "8000.0", "Dog", "0.5500"]


def test_score_tables_load_in_sed_scores_eval(tmp_path: Path) -> None:
    pytest.importorskip("sed_scores_eval")
    from sed_scores_eval.base_modules.io import read_sed_scores

    r = _result("clip.wav", frames=25, duration=1.0, padded=5)  # 5 zero-length padded frames (upstream mode)
    _write("scores", tmp_path, [r])
    _write("scores_filtered", tmp_path, [r])
    df = read_sed_scores(tmp_path / "scores" / "clip.tsv")
    assert list(df.columns) == ["onset", "offset", *LABELS]
    assert len(df) == 25 and df["offset"].iloc[-1] == 1.0
    np.testing.assert_allclose(df[LABELS].to_numpy(), r.scores[0].scores[:25], rtol=1e-6)
    filt = read_sed_scores(tmp_path / "scores_filtered" / "clip.tsv")
    np.testing.assert_allclose(filt[LABELS].to_numpy(), r.filtered[0].scores[:25], rtol=1e-6)
    back = read_frame_scores(tmp_path / "scores" / "clip.tsv")[0]
    assert back.labels == LABELS and back.scores.shape == (25, 3)
    assert scores_tsv_text(r.scores[0]).count("\n") == 26


def test_npz_and_h5_round_trip(tmp_path: Path) -> None:
    r = _result("a/b.flac")
    _write("npz", tmp_path, [r])
    fs = read_frame_scores(tmp_path / "frames" / "a" / "b.npz")[0]
    np.testing.assert_array_equal(fs.scores, r.scores[0].scores)
    np.testing.assert_array_equal(fs.timestamps, r.scores[0].timestamps)
    assert fs.labels == LABELS and fs.channel is None and fs.source == "a/b.flac"
    pytest.importorskip("h5py")
    w = get_writer("h5", tmp_path)
    w.write(r)
    w.close()
    assert w.done("a/b.flac") and not w.done("other.wav")
    back = read_frame_scores(tmp_path / "frame_scores.h5", name="a/b.flac")[0]
    np.testing.assert_array_equal(back.scores, r.scores[0].scores)


def test_embedding_writers(tmp_path: Path) -> None:
    values = np.arange(40, dtype=np.float32).reshape(10, 4)
    emb = Embeddings(values, frame_times(11, 0.04), "x.wav", layer=-1, models=["tiny"])
    r = FileResult(source="x.wav", name="x.wav", duration_s=0.4, embeddings=[emb])
    for fmt in ("npy", "h5"):
        w = get_writer(fmt, tmp_path, kind="embed")
        w.write(r)
        w.close()
    np.testing.assert_array_equal(read_embeddings(tmp_path / "embeddings" / "x.npy"), values)
    np.testing.assert_array_equal(read_embeddings(tmp_path / "embeddings.h5", "x.wav"), values)


def test_each_channel_layout(tmp_path: Path) -> None:
    r = _result("st.wav")
    second = FrameScores(r.scores[0].scores[:, ::-1].copy(), r.scores[0].timestamps, LABELS, source="st.wav", channel=1)
    r.scores = [FrameScores(r.scores[0].scores, r.scores[0].timestamps, LABELS, "st.wav", channel=0), second]
    r.events = [Event(0.0, 0.2, "Dog", "st.wav", 0.7, channel=1)]
    _write("scores", tmp_path, [r], channels="each")
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == ["st_ch0.tsv", "st_ch1.tsv"]
    _write("tsv", tmp_path, [r], channels="each")
    assert (tmp_path / "events.tsv").read_text().splitlines() == [
        "filename\tonset\toffset\tevent_label\tchannel",
        "st.wav\t0.0\t0.2\tDog\t1",
    ]
    _write("npz", tmp_path, [r])
    assert [fs.channel for fs in read_frame_scores(tmp_path / "frames" / "st.npz")] == [0, 1]


def test_format_names() -> None:
    assert parse_formats("tsv, scores,json,hdf5", DETECT_WRITERS) == ["tsv", "scores", "json", "h5"]
    assert parse_formats("npy", EMBED_WRITERS) == ["npy"]
    with pytest.raises(ConfigError, match="unknown output format 'xls'"):
        parse_formats("tsv,xls", DETECT_WRITERS)


def test_every_atomic_file_write_goes_through_core_files(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """One atomic writer: the label files of the hub, the profile cache, released exports and results all
    use ptsed.core.files (old names stay importable); a full disk is one line and leaves no temporary file."""
    import errno

    import ptsed.core.files as files
    from ptsed.core.errors import PtsedError
    from ptsed.hub.labels import write_vocab_tsv
    from ptsed.io.results import atomic_write, atomic_write_text, write_error

    assert atomic_write is files.atomic_write and atomic_write_text is files.atomic_write_text
    assert write_error is files.write_error
    write_vocab_tsv(tmp_path / "v.tsv", [("/m/1", "Speech")])
    assert (tmp_path / "v.tsv").read_text() == "index\tmid\tdisplay_name\n0\t/m/1\tSpeech\n"

    def full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full)
    with pytest.raises(PtsedError, match="the disk is full"):
        write_vocab_tsv(tmp_path / "v.tsv", [("/m/2", "Dog")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.tsv"]


def test_one_scores_tsv_writer_and_one_validated_reader(tmp_path) -> None:  # noqa: ANN001
    """detect's scores writer and evaluate --save-scores write the same text (9 significant digits, float32
    exact); read_frame_scores and evaluate read it with the same validation."""
    from ptsed.cli.evaluate import _score_writer
    from ptsed.evaluation.scores import read_scores_tsv as eval_reader
    from ptsed.io.results import read_frame_scores
    from ptsed.io.scores_tsv import read_scores_tsv, write_scores_tsv

    rng = np.random.default_rng(0)
    fs = FrameScores(rng.random((7, 2)).astype(np.float32), np.arange(8) * 0.04, ["a", "b"], source="x")
    write_scores_tsv(tmp_path / "detect.tsv", fs)
    _score_writer(tmp_path / "eval")("x", fs.scores, fs.timestamps, fs.labels)
    assert (tmp_path / "eval" / "x.tsv").read_text() == (tmp_path / "detect.tsv").read_text() == scores_tsv_text(fs)
    assert eval_reader is read_scores_tsv
    back = read_frame_scores(tmp_path / "detect.tsv")[0]
    np.testing.assert_array_equal(back.scores, fs.scores)
    assert back.labels == ["a", "b"] and back.timestamps.tolist() == fs.timestamps.tolist()
    (tmp_path / "gap.tsv").write_text("onset\toffset\ta\n0\t0.04\t0.1\n0.1\t0.2\t0.3\n")
    with pytest.raises(ConfigError, match="contiguous"):
        read_frame_scores(tmp_path / "gap.tsv")
    (tmp_path / "bad.tsv").write_text("onset\toffset\ta\n0\t0.04\tx\n")
    with pytest.raises(ConfigError, match="not numbers"):
        read_scores_tsv(tmp_path / "bad.tsv")
