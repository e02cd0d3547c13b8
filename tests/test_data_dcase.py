"""DCASEDataset and the windowing engine on tiny WAVs and TSVs the tests write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ptsed.core.errors import AudioError, ConfigError
from ptsed.data.dcase import DCASEDataset
from ptsed.data.windows import AudioRecord, WindowedDataset

SR = 16000


def ramp(seconds: float, sr: int = SR) -> np.ndarray:
    """int16 samples whose value tells the time: sample n holds n // 16 (one step per ms at 16 kHz)."""
    n = np.arange(round(seconds * sr))
    return ((n * 16000 // sr) // 16 % 30000).astype(np.int16)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "long.wav", ramp(25.0), SR, subtype="PCM_16")
    sf.write(audio / "short.wav", ramp(3.0), SR, subtype="PCM_16")
    sf.write(audio / "quiet.wav", ramp(10.0), SR, subtype="PCM_16")
    write(
        tmp_path / "strong.tsv",
        "filename\tonset\toffset\tevent_label\n"
        "long.wav\t8.0\t12.0\tdog\n"
        "long.wav\t16.0\t17.0\tcat\n"
        "short.wav\t1.0\t2.5\tcat\n"
        "quiet.wav\t\t\t\n",
    )
    return tmp_path


def test_long_recording_is_cut_into_windows_with_shifted_labels(folder: Path) -> None:
    ds = DCASEDataset(folder / "audio", folder / "strong.tsv")
    assert ds.labels == ["cat", "dog"]
    long = [ds[i] for i in range(len(ds)) if ds[i]["filename"] == "long.wav"]
    assert [w["offset_s"] for w in long] == [0.0, 10.0, 15.0]  # the last window ends at 25 s
    for w in long:
        assert w["waveform"].shape == (160000,) and w["waveform"].dtype == torch.float32
        assert w["strong"].shape == (2, 250) and w["mask_strong"] and w["mask_weak"]
        # the first sample of the window is the ramp value at offset_s
        assert w["waveform"][0].item() * 32768 == pytest.approx(int(w["offset_s"] * 1000) % 30000)
    first, second, third = long
    dog, cat = 1, 0
    assert first["strong"][dog].nonzero().flatten().tolist() == list(range(200, 250))  # 8 s .. 10 s (clipped)
    assert second["strong"][dog].nonzero().flatten().tolist() == list(range(0, 50))  # 10 s .. 12 s, shifted
    assert second["strong"][cat].nonzero().flatten().tolist() == list(range(150, 175))  # 16 s .. 17 s
    assert third["strong"][cat].nonzero().flatten().tolist() == list(range(25, 50))  # 16 s - 15 s
    assert first["weak"].tolist() == [0.0, 1.0] and second["weak"].tolist() == [1.0, 1.0]


def test_short_clip_is_zero_padded_and_file_without_events_is_strongly_labelled(folder: Path) -> None:
    ds = DCASEDataset(folder / "audio", folder / "strong.tsv", labels=["dog", "cat"])
    items = {ds[i]["filename"]: ds[i] for i in range(len(ds))}
    short = items["short.wav"]
    assert short["duration_s"] == pytest.approx(3.0)
    assert short["waveform"].shape == (160000,)
    assert torch.all(short["waveform"][48000:] == 0) and short["waveform"][47999] != 0
    assert short["strong"][1].nonzero().flatten().tolist() == list(range(25, 63))  # 1.0 .. 2.5 s, outward
    quiet = items["quiet.wav"]
    assert quiet["mask_strong"] and quiet["strong"].sum() == 0 and quiet["weak"].sum() == 0


def test_overlapping_windows(folder: Path) -> None:
    ds = DCASEDataset(folder / "audio", folder / "strong.tsv", window_s=4.0, window_hop_s=2.0)
    offsets = [s / SR for r, s in ds.windows if ds.records[r].name == "long.wav"]
    assert offsets == [float(x) for x in range(0, 22, 2)] + [21.0]  # 0, 2, ..., 20, then one ending at 25 s
    assert ds[0]["strong"].shape == (2, 100)


def test_train_mode_draws_random_crops_on_the_frame_grid(folder: Path) -> None:
    ds = DCASEDataset(folder / "audio", folder / "strong.tsv", train=True)
    torch.manual_seed(0)
    offsets = set()
    for i in range(len(ds)):
        item = ds[i]
        if item["filename"] != "long.wav":
            continue
        offsets.add(item["offset_s"])
        assert 0.0 <= item["offset_s"] <= 15.0
        assert (item["offset_s"] / 0.04) == pytest.approx(round(item["offset_s"] / 0.04))
        frames = item["strong"][1].nonzero().flatten()  # dog: 8 s .. 12 s
        expect = [t for t in range(250) if item["offset_s"] + (t + 1) * 0.04 > 8.0 and item["offset_s"] + t * 0.04 < 12]
        assert frames.tolist() == expect
    assert len(offsets) > 1


def test_weak_and_unlabelled_items(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    for name in ("a.wav", "b.wav"):
        sf.write(audio / name, ramp(10.0), SR, subtype="PCM_16")
    write(tmp_path / "weak.tsv", "filename\tevent_labels\na.wav\tdog,cat\n")
    ds = DCASEDataset(audio, weak_tsv=tmp_path / "weak.tsv", labels=["cat", "dog", "bird"])
    item = ds[0]
    assert not item["mask_strong"] and item["mask_weak"]
    assert item["weak"].tolist() == [1.0, 1.0, 0.0] and item["strong"].sum() == 0
    unlabelled = DCASEDataset(audio, labels=["cat"])
    assert len(unlabelled) == 2
    assert not unlabelled[1]["mask_strong"] and not unlabelled[1]["mask_weak"]
    assert unlabelled[1]["strong"].shape == (1, 250) and unlabelled[1]["strong"].sum() == 0


def test_durations_tsv_and_tsv_names_match_other_extensions(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "x.flac", ramp(12.0), SR, subtype="PCM_16")
    write(tmp_path / "s.tsv", "filename\tonset\toffset\tevent_label\nx.wav\t1\t2\tdog\n")
    write(tmp_path / "d.tsv", "filename\tduration\nx.wav\t12.0\n")
    ds = DCASEDataset(audio, tmp_path / "s.tsv", durations_tsv=tmp_path / "d.tsv")
    assert ds.filenames == ["x.flac"] and len(ds) == 2
    assert ds[1]["offset_s"] == pytest.approx(2.0) and ds[1]["duration_s"] == pytest.approx(10.0)


def test_other_sample_rate_is_resampled(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    t = np.arange(32000 * 2) / 32000
    sf.write(audio / "hi.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 32000, subtype="PCM_16")
    item = DCASEDataset(audio, labels=[])[0]
    assert item["duration_s"] == pytest.approx(2.0)
    assert item["waveform"][: 2 * SR].abs().max() == pytest.approx(0.5, abs=0.01)


def test_dataloader_batches(folder: Path) -> None:
    ds = DCASEDataset(folder / "audio", folder / "strong.tsv")
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["waveform"].shape == (3, 160000) and batch["strong"].shape == (3, 2, 250)
    assert batch["mask_strong"].dtype == torch.bool and len(batch["filename"]) == 3


def test_errors_name_the_file(folder: Path) -> None:
    bad = write(folder / "bad.tsv", "filename\tonset\toffset\tevent_label\nlong.wav\t5\t4\tdog\n")
    with pytest.raises(ConfigError, match=r"bad\.tsv.*line 2"):
        DCASEDataset(folder / "audio", bad)
    nan = write(folder / "nan.tsv", "filename\tonset\toffset\tevent_label\nlong.wav\tx\t4\tdog\n")
    with pytest.raises(ConfigError, match=r"nan\.tsv.*onset"):
        DCASEDataset(folder / "audio", nan)
    cols = write(folder / "cols.tsv", "name\tonset\toffset\tevent_label\nlong.wav\t1\t4\tdog\n")
    with pytest.raises(ConfigError, match=r"cols\.tsv.*filename"):
        DCASEDataset(folder / "audio", cols)
    with pytest.raises(ConfigError, match=r"strong\.tsv.*'dog'"):
        DCASEDataset(folder / "audio", folder / "strong.tsv", labels=["cat"])
    ds = DCASEDataset(folder / "audio", folder / "strong.tsv", labels=["cat"], ignore_unknown=True)
    assert ds[0]["strong"].shape[0] == 1
    gone = write(folder / "gone.tsv", "filename\tonset\toffset\tevent_label\nnothere.wav\t1\t2\tdog\n")
    with pytest.raises(AudioError, match=r"gone\.tsv.*nothere"):
        DCASEDataset(folder / "audio", gone)
    assert len(DCASEDataset(folder / "audio", gone, skip_missing=True)) == 0
    with pytest.raises(ConfigError, match="does not exist"):
        DCASEDataset(folder / "nope", folder / "strong.tsv")


def test_unreadable_audio_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    rec = AudioRecord(tmp_path / "broken.wav", "broken.wav", 10.0)
    with pytest.raises(AudioError, match="broken.wav"):
        WindowedDataset([rec], ["x"])[0]


def test_window_must_be_whole_frames(folder: Path) -> None:
    with pytest.raises(ConfigError, match="whole number of frames"):
        DCASEDataset(folder / "audio", folder / "strong.tsv", window_s=1.01)
