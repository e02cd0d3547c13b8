"""HEARDataset on a tiny HEAR task folder the tests write (events in ms, folds, scene tasks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ptsed.core.errors import AudioError, ConfigError
from ptsed.data.hear import HEARDataset, hear_data_splits, read_label_vocabulary

SR = 16000


def make_task(root: Path, splits: dict[str, dict], *, mode: str = "trainvaltest", kind: str = "event",
              rate: int = SR, seconds: float = 12.0) -> Path:  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    meta = {"task_name": "tiny", "embedding_type": kind, "prediction_type": "multilabel", "split_mode": mode,
            "sample_duration": seconds}  # fmt: skip
    if mode != "trainvaltest":
        meta["splits"] = sorted(splits)
    (root / "task_metadata.json").write_text(json.dumps(meta))
    (root / "labelvocabulary.csv").write_text("idx,label\n0,snare\n1,kick\n2,hihat\n")
    for split, data in splits.items():
        (root / f"{split}.json").write_text(json.dumps(data))
        folder = root / str(rate) / split
        folder.mkdir(parents=True)
        for name in data:
            noise = np.random.default_rng(len(name)).uniform(-0.3, 0.3, round(seconds * rate))
            sf.write(folder / name, noise, rate, subtype="PCM_16")
    return root


EVENTS = {
    "a.wav": [{"label": "kick", "start": 1500.0, "end": 2500.0}, {"label": "hihat", "start": 10500.0, "end": 11000.0}],
    "b.wav": [],
}


def test_events_in_ms_become_frame_targets_in_vocabulary_order(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task", {"train": EVENTS, "valid": {"c.wav": []}, "test": {"d.wav": []}})
    ds = HEARDataset(task, "train")
    assert ds.labels == ["snare", "kick", "hihat"] == read_label_vocabulary(task)
    assert ds.filenames == ["a.wav", "b.wav"] and len(ds) == 4  # 12 s: windows at 0 and 2 s each
    first, second = ds[0], ds[1]
    assert first["offset_s"] == 0.0 and second["offset_s"] == pytest.approx(2.0)
    assert first["strong"][1].nonzero().flatten().tolist() == list(range(37, 63))  # 1.5 s .. 2.5 s
    assert first["strong"][2].sum() == 0 and first["weak"].tolist() == [0.0, 1.0, 0.0]
    assert second["strong"][2].nonzero().flatten().tolist() == list(range(212, 225))  # 10.5 - 2 .. 11 - 2 s
    empty = ds[2]
    assert empty["filename"] == "b.wav" and empty["mask_strong"] and empty["strong"].sum() == 0
    assert hear_data_splits(task) == [{"train": ["train"], "valid": ["valid"], "test": ["test"]}]


def test_folds(tmp_path: Path) -> None:
    folds = {f"fold0{i}": {f"f{i}.wav": [{"label": "snare", "start": 0, "end": 100}]} for i in range(3)}
    task = make_task(tmp_path / "task", folds, mode="new_split_kfold", seconds=4.0)
    splits = hear_data_splits(task)
    assert splits[0] == {"train": ["fold02"], "valid": ["fold01"], "test": ["fold00"]}
    assert splits[2] == {"train": ["fold01"], "valid": ["fold00"], "test": ["fold02"]}
    ds = HEARDataset(task, splits[0]["train"] + splits[0]["valid"])
    assert sorted(ds.filenames) == ["fold01/f1.wav", "fold02/f2.wav"]
    item = ds[0]
    assert item["strong"][0, :3].tolist() == [1.0, 1.0, 1.0] and item["strong"][0, 3:].sum() == 0
    assert item["duration_s"] == pytest.approx(4.0) and item["waveform"].shape == (160000,)


def test_scene_task_gives_clip_labels(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task", {"train": {"s.wav": ["kick", "snare"]}}, kind="scene", seconds=2.0)
    item = HEARDataset(task, "train")[0]
    assert not item["mask_strong"] and item["mask_weak"]
    assert item["weak"].tolist() == [1.0, 1.0, 0.0] and item["strong"].sum() == 0


def test_other_rate_folder_is_resampled(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task", {"train": {"a.wav": []}}, rate=48000, seconds=3.0)
    item = HEARDataset(task, "train")[0]
    assert item["duration_s"] == pytest.approx(3.0)
    assert item["waveform"][: 3 * SR].abs().max() > 0.1 and item["waveform"][3 * SR + 10 :].abs().max() == 0


def test_errors(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task", {"train": {"a.wav": [{"label": "tuba", "start": 0, "end": 10}]}})
    with pytest.raises(ConfigError, match=r"train\.json.*'tuba'"):
        HEARDataset(task, "train")
    with pytest.raises(ConfigError, match="split 'valid'.*train"):
        HEARDataset(task, "valid")
    (task / "16000" / "train" / "a.wav").unlink()
    with pytest.raises(AudioError, match=r"train\.json.*a\.wav"):
        HEARDataset(task, "train", ignore_unknown=True)
    (task / "train.json").write_text(json.dumps({"a.wav": [{"label": "kick", "start": 50}]}))
    with pytest.raises(ConfigError, match=r"train\.json.*bad event"):
        HEARDataset(task, "train")
    with pytest.raises(ConfigError, match="not a HEAR task folder"):
        HEARDataset(tmp_path, "train")
