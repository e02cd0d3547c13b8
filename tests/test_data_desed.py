"""DESEDDataset on a tiny DESED tree the tests write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ptsed.core.errors import ConfigError
from ptsed.data.desed import DESED_CLASSES, DESEDDataset

SR = 16000


def wav(path: Path, seconds: float = 10.0, sr: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(round(seconds * sr), 0.1), sr, subtype="PCM_16")


def text(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)


@pytest.fixture()
def desed(tmp_path: Path) -> Path:
    root = tmp_path / "DESED"
    for name in ("s1.wav", "s2.wav"):
        wav(root / "audio/train/synthetic21_train/soundscapes" / name)
    text(
        root / "metadata/train/synthetic21_train/soundscapes.tsv",
        "filename\tonset\toffset\tevent_label\ns1.wav\t0.5\t2.0\tDog\ns2.wav\t3.0\t9.0\tFrying\n",
    )
    wav(root / "audio/train/weak/w1.wav")
    text(root / "metadata/train/weak.tsv", "filename\tevent_labels\nw1.wav\tSpeech,Dishes\n")
    for name in ("u1.wav", "u2.wav", "u3.wav"):
        wav(root / "audio/train/unlabel_in_domain" / name)
    wav(root / "audio/validation/validation/v1.wav", seconds=7.5)
    text(root / "metadata/validation/validation.tsv", "filename\tonset\toffset\tevent_label\nv1.wav\t1\t2\tCat\n")
    text(root / "metadata/validation/validation_durations.tsv", "filename\tduration\nv1.wav\t7.5\n")
    return root


def test_train_split_has_strong_weak_and_unlabelled_parts(desed: Path) -> None:
    ds = DESEDDataset(desed, "train")
    assert ds.labels == list(DESED_CLASSES)
    assert {k: len(v) for k, v in ds.subset_indices.items()} == {
        "synthetic_train": 2,
        "weak": 1,
        "unlabel_in_domain": 3,
    }
    s1 = ds[ds.subset_indices["synthetic_train"][0]]
    assert s1["mask_strong"] and s1["filename"] == "s1.wav"
    dog = DESED_CLASSES.index("Dog")
    assert s1["strong"][dog].nonzero().flatten().tolist() == list(range(12, 50))
    w1 = ds[ds.subset_indices["weak"][0]]
    assert not w1["mask_strong"] and w1["mask_weak"] and w1["strong"].sum() == 0
    assert w1["weak"][DESED_CLASSES.index("Speech")] == 1 and w1["weak"].sum() == 2
    for i in ds.subset_indices["unlabel_in_domain"]:
        u = ds[i]
        assert not u["mask_strong"] and not u["mask_weak"]
        assert u["strong"].shape == (10, 250) and u["strong"].sum() == 0 and u["weak"].sum() == 0


def test_validation_split_and_16k_copies(desed: Path) -> None:
    val = DESEDDataset(desed, "validation")
    assert len(val) == 1 and val[0]["duration_s"] == pytest.approx(7.5) and val[0]["strong"].sum() == 25
    wav(desed / "audio/validation/validation_16k/v1.wav", seconds=7.5)
    val16 = DESEDDataset(desed, "validation")
    assert val16.records[0].path.parent.name == "validation_16k"
    assert DESEDDataset(desed, subsets=["weak"]).subset_indices == {"weak": [0]}


def test_errors(desed: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="strong_real"):
        DESEDDataset(desed, subsets=["strong_real"])
    with pytest.raises(ConfigError, match="unknown DESED part"):
        DESEDDataset(desed, subsets=["nope"])
    with pytest.raises(ConfigError, match="unknown DESED split"):
        DESEDDataset(desed, "eval")
    with pytest.raises(ConfigError, match="no DESED data"):
        (tmp_path / "empty").mkdir()
        DESEDDataset(tmp_path / "empty")
    text(desed / "metadata/train/weak.tsv", "filename\tevent_labels\nw1.wav\tTuba\n")
    with pytest.raises(ConfigError, match=r"weak\.tsv.*'Tuba'"):
        DESEDDataset(desed, "train")
