"""AudioSet-strong data as users hold it: Google's label TSVs, durations, audio folders and PaSST HDF5."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from conformance import LABELS
from ptsed.core.errors import AudioError, ConfigError
from ptsed.core.frames import events_to_frame_targets
from ptsed.data import audioset as A
from ptsed.io.annotations import (
    audioset_clip_id,
    clip_id,
    match_clip_ids,
    merge_overlapping_events,
    read_durations,
)

pytestmark = pytest.mark.skipif(not LABELS.exists(), reason="needs ../shared/labels")


def _mids() -> dict[str, str]:
    return {name: mid for mid, name in A.vocabulary_mids("audioset_strong_447")}


def _write(path, text: str):  # noqa: ANN001, ANN202
    path.write_text(text, encoding="utf-8")
    return path


def test_vocabulary_mids_align_with_labels() -> None:
    from ptsed.hub.labels import get_labels

    pairs = A.vocabulary_mids("audioset_strong_447")
    assert [n for _, n in pairs] == get_labels("audioset_strong_447")
    assert all(m.startswith("/") for m, _ in pairs)
    # strong names win over weak ones; MIDs only in the weak vocabulary still get a name
    names = A.mid_to_name_map()
    assert names["/m/028v0c"] == "Silence"  # one of the nine strong classes missing from the 447
    assert len(names) > 447


def test_read_strong_labels_maps_mids_merges_and_names_clips(tmp_path) -> None:
    mid = _mids()
    speech, dog = mid["Speech"], mid["Dog"]
    tsv = _write(
        tmp_path / "audioset_eval_strong.tsv",
        "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n"
        f"a_b_c_30000\t0.000\t1.000\t{speech}\n"
        f"a_b_c_30000\t0.500\t2.000\t{speech}\n"  # overlaps -> merged
        f"a_b_c_30000\t2.000\t3.000\t{speech}\n"  # touches -> merged (upstream merges when offset >= onset)
        f"a_b_c_30000\t5.000\t6.000\t{speech}\n"
        f"a_b_c_30000\t1.500\t1.500\t{dog}\n"  # zero length -> dropped
        f"-XyZ_0\t1.250\t4.500\t{dog}\n"
        f"-XyZ_0\t2.000\t3.000\t/m/notamid\n",
    )
    labels, info = A.read_strong_labels(tsv)
    assert set(labels) == {"Ya_b_c", "Y-XyZ"}
    assert labels["Ya_b_c"] == [(0.0, 3.0, "Speech"), (5.0, 6.0, "Speech")]
    assert labels["Y-XyZ"] == [(1.25, 4.5, "Dog"), (2.0, 3.0, "/m/notamid")]
    assert info["events_merged"] == 2 and info["events_zero_length"] == 1
    assert info["unknown_mids"] == ["/m/notamid"] and info["segments"] == 2
    unmerged, info2 = A.read_strong_labels(tsv, merge=False)
    assert len(unmerged["Ya_b_c"]) == 4 and info2["events_merged"] == 0


def test_read_strong_labels_comma_separated_and_errors(tmp_path) -> None:
    mid = _mids()["Speech"]
    csv_file = _write(
        tmp_path / "s.csv", f"segment_id,start_time_seconds,end_time_seconds,label\nabc_10000,1,2,{mid}\n"
    )
    assert A.read_strong_labels(csv_file)[0] == {"Yabc": [(1.0, 2.0, "Speech")]}
    bad = _write(tmp_path / "bad.tsv", "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\nabc_1\tx\t2\t/m/0\n")
    with pytest.raises(ConfigError, match="line 2"):
        A.read_strong_labels(bad)
    with pytest.raises(ConfigError, match="header"):
        A.read_strong_labels(_write(tmp_path / "h.tsv", "filename\tonset\n"))


def test_clip_names() -> None:
    assert audioset_clip_id("--aE2O5G5WE_0") == "Y--aE2O5G5WE"
    assert audioset_clip_id("a_b_30000") == "Ya_b"
    with pytest.raises(ValueError):
        audioset_clip_id("nostart")
    assert clip_id("audio/eval/Yabc.wav") == "Yabc"
    assert clip_id("Yabc") == "Yabc"
    assert match_clip_ids(["Yabc.tsv", "abc_30000", "zzz"], ["Yabc"]) == {"Yabc.tsv": "Yabc", "abc_30000": "Yabc"}


def test_merge_overlapping_events_matches_upstream_rule() -> None:
    events = [(3.0, 4.0, "a"), (0.0, 1.0, "a"), (1.0, 2.0, "a"), (0.5, 0.7, "a"), (1.5, 5.0, "b"), (2.0, 2.5, "b")]
    merged, n = merge_overlapping_events(events)
    assert merged == [(0.0, 2.0, "a"), (1.5, 5.0, "b"), (3.0, 4.0, "a")]
    assert n == 3


def test_read_durations_both_formats(tmp_path) -> None:
    tsv = _write(tmp_path / "d.tsv", "filename\tduration\nYabc.wav\t10.0\nsub/x.flac\t9.5\n")
    assert read_durations(tsv) == {"Yabc": 10.0, "x": 9.5}
    csv_file = _write(tmp_path / "eval_durations.csv", "Y--aE2O5G5WE,10.0\nY-0BIyqJj9ZU,9.98\n")
    assert read_durations(csv_file) == {"Y--aE2O5G5WE": 10.0, "Y-0BIyqJj9ZU": 9.98}
    with pytest.raises(ConfigError, match="duration"):
        read_durations(_write(tmp_path / "bad.tsv", "filename\tduration\nx.wav\t-1\n"))
    with pytest.raises(ConfigError, match="header"):
        read_durations(_write(tmp_path / "bad2.tsv", "name\tlength\nx.wav\tten\n"))


def test_shared_eval_durations_file_reads() -> None:
    d = read_durations(LABELS / "audioset_strong_eval_durations.csv")
    lines = [ln for ln in (LABELS / "audioset_strong_eval_durations.csv").read_text().splitlines() if ln.strip()]
    assert len(d) == len(lines) > 16000 and all(k.startswith("Y") for k in d)
    assert min(d.values()) > 0 and max(d.values()) <= 10.5


def test_frame_targets_on_the_40ms_grid_with_upstream_rounding() -> None:
    from ptsed.hub.labels import get_labels

    labels = get_labels("audioset_strong_447")
    events = [(0.12, 0.5, "Speech"), (8.04, 10.0, "Dog"), (9.99, 12.0, "Speech"), (1.0, 2.0, "Silence")]
    y = A.frame_targets(events, labels)
    assert y.shape == (447, 250) and y.dtype == np.float32
    s, d = labels.index("Speech"), labels.index("Dog")
    assert np.flatnonzero(y[s]).tolist() == list(range(3, 13)) + [249]
    # upstream's ManyHotEncoder: int(t * 16000 / 160 / 4) for onsets, ceil for offsets, in float64;
    # 8.04 s * 16000 / 160 / 4 = 200.99999999999997 -> frame 200
    assert np.flatnonzero(y[d])[0] == 200
    assert y.sum() == 10 + 1 + 50  # 'Silence' is not a training class


def test_events_to_frame_targets_equals_upstream_arithmetic() -> None:
    rng = np.random.default_rng(0)
    times = np.r_[np.arange(0, 10001) / 1000, rng.uniform(0, 10, 2000), np.float32(rng.uniform(0, 10, 2000))]
    for t in times:
        t = float(t)
        x = np.clip(t * 16000 / 160 / 4, 0, 250)
        ours = events_to_frame_targets([(t, 10.5, "a")], ["a"], 250)[0]
        assert np.flatnonzero(ours)[0] == int(x) if int(x) < 250 else ours.sum() == 0
        ours = events_to_frame_targets([(0.0, t, "a")], ["a"], 250)[0]
        assert ours.sum() == int(np.ceil(x))


def _mp3_bytes(x: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="MP3")
    return buf.getvalue()


def _write_hdf5(path, clips: dict[str, np.ndarray], sr: int = 32000) -> None:  # noqa: ANN001
    import h5py

    with h5py.File(path, "w") as f:
        names = np.array([f"{c}.mp3".encode() for c in clips], dtype="S20")
        f.create_dataset("audio_name", data=names)
        mp3 = f.create_dataset("mp3", shape=(len(clips),), dtype=h5py.vlen_dtype(np.dtype("uint8")))
        for i, x in enumerate(clips.values()):
            mp3[i] = np.frombuffer(_mp3_bytes(x, sr), dtype=np.uint8)
        target = np.zeros((len(clips), 527), dtype=np.uint8)
        target[0, 0] = target[1, 5] = 1
        f.create_dataset("target", data=np.packbits(target, axis=-1))


def test_hdf5_with_mp3_clips(tmp_path) -> None:
    sr = 32000
    t = np.arange(sr * 2) / sr
    clips = {"Yaaa": (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), "Yb_b": np.zeros(sr, np.float32)}
    _write_hdf5(tmp_path / "eval_segments_mp3.hdf", clips, sr)
    with A.open_audio(tmp_path / "eval_segments_mp3.hdf") as h5:
        assert isinstance(h5, A.AudioSetHDF5)
        assert h5.clip_ids() == ["Yaaa", "Yb_b"] and "Yaaa" in h5 and len(h5) == 2
        x = h5.load("Yaaa", 16000)
        assert x.dtype == np.float32 and abs(len(x) - 32000) <= 1200
        # a 440 Hz tone survives mp3 coding and resampling to 16 kHz
        spec = np.abs(np.fft.rfft(x[4000:20000]))
        assert abs(np.argmax(spec) * 16000 / 16000 - 440) < 2
        assert np.flatnonzero(h5.weak_target("Yb_b")).tolist() == [5]
        assert h5.encoded("Yaaa")[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3") or h5.encoded("Yaaa")[0] == 0xFF
    # a folder holding only HDF5 files opens as one collection
    assert isinstance(A.open_audio(tmp_path), A.AudioSetHDF5)


def test_hdf5_errors(tmp_path) -> None:
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("audio_name", data=np.array([b"Ya.mp3"]))
    with pytest.raises(AudioError, match="mp3"):
        A.AudioSetHDF5(tmp_path / "x.h5")
    with pytest.raises(AudioError, match="cannot decode"):
        A.decode_audio_bytes(b"not audio at all" * 10, 16000, name="Ya")


def test_audio_folder_and_dataset(tmp_path) -> None:
    audio = tmp_path / "audio"
    (audio / "sub").mkdir(parents=True)
    sf.write(audio / "Yabc.wav", np.full(8000, 0.1, np.float32), 8000)  # 1 s at 8 kHz
    sf.write(audio / "sub" / "Y-d_e.flac", np.full(16000 * 12, 0.2, np.float32), 16000)  # 12 s
    folder = A.open_audio(audio)
    assert isinstance(folder, A.AudioFolder) and folder.clip_ids() == ["Y-d_e", "Yabc"]
    mid = _mids()
    tsv = _write(
        tmp_path / "l.tsv",
        "segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n"
        f"abc_0\t0.0\t0.5\t{mid['Speech']}\n-d_e_10000\t9.0\t11.0\t{mid['Dog']}\nmissing_0\t1\t2\t{mid['Dog']}\n",
    )
    ds = A.AudioSetStrong(tsv, audio)
    assert len(ds) == 2 and ds.missing_audio == ["Ymissing"]
    items = [ds[i] for i in range(len(ds))]
    assert [it["clip"] for it in items] == ["Y-d_e", "Yabc"]
    for it in items:
        assert it["audio"].shape == (160000,) and it["targets"].shape == (447, 250)
    assert np.allclose(items[0]["audio"], 0.2, atol=1e-4)  # 12 s cut to 10 s
    assert np.allclose(items[1]["audio"][2000:14000], 0.1, atol=0.02) and not items[1]["audio"][17000:].any()  # padded
    assert items[0]["targets"][ds.classes.index("Dog"), 225:].all()
