"""A tiny AudioSet-format dataset and tiny zoo models for the AudioSet-strong recipe tests.

Layout written by :func:`make_audioset` (all clips 10 s, 16 kHz):

    train/Y<id>.wav                 training clips named by clip id
    eval.h5                         eval clips, PaSST-style HDF5 (audio_name, mp3 = encoded bytes, target)
    audioset_train_strong.tsv       Google's format: segment_id, start_time_seconds, end_time_seconds, label (MID)
    audioset_eval_strong.tsv
    eval_durations.csv              headerless Y<id>,duration (upstream's eval_durations.csv)

Clip ids include one ending in ``m``/``3`` and one with ``_`` (upstream's ``rstrip(".mp3")`` and segment-id
parsing corner cases). Each class has its own sound (tone, noise burst, chirp), so labels are learnable.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
CLIP_S = 10.0
TRAIN_IDS = ["aaa00001", "bb_b0002", "ccc0003m", "ddd00043", "eee00005", "fff00006"]
EVAL_IDS = ["ggg00007", "hhh0008p", "iii00009", "jjj00010"]
TINY_ARCH = "atst_frame"
TINY_BUILDER = {"depth": 1, "embed_dim": 32, "num_heads": 2}
TINY_RNN = 16


def classes() -> list[tuple[str, str]]:
    """Three (MID, name) pairs of the 447 training classes, and one MID outside them (a weak-only class)."""
    from ptsed.data.audioset import vocabulary_mids

    strong = vocabulary_mids("audioset_strong_447")
    weak = vocabulary_mids("audioset_weak_527")
    names = {n for _, n in strong}
    outside = next((m, n) for m, n in weak if n not in names)
    return [strong[10], strong[100], strong[200], outside]


def _sound(kind: int, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    if kind == 0:
        return 0.4 * np.sin(2 * np.pi * 880 * t)
    if kind == 1:
        return 0.3 * rng.standard_normal(n)
    return 0.4 * np.sin(2 * np.pi * (300 + 800 * t / max(t[-1], 1e-3)) * t)


def _clip(events: list[tuple[float, float, int]], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 0.005 * rng.standard_normal(int(SR * CLIP_S))
    for on, off, k in events:
        a, b = int(on * SR), int(off * SR)
        x[a:b] += _sound(k, b - a, rng)
    return np.clip(x, -1, 1).astype(np.float32)


def _events(seed: int, n_classes: int = 3) -> list[tuple[float, float, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(0, n_classes))
        on = float(np.round(rng.uniform(0, 8.5), 3))
        out.append((on, float(np.round(on + rng.uniform(0.3, 1.5), 3)), k))
    return out


def _write_labels(path: Path, rows: list[tuple[str, float, float, str]]) -> None:
    lines = ["segment_id\tstart_time_seconds\tend_time_seconds\tlabel"]
    lines += [f"{seg}\t{on:.3f}\t{off:.3f}\t{mid}" for seg, on, off, mid in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_audioset(root: Path) -> dict[str, Path]:
    """Write the tiny dataset under ``root``; returns the paths of its parts."""
    import h5py

    root = Path(root)
    cls = classes()
    (root / "train").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, yid in enumerate(TRAIN_IDS):
        ev = _events(i)
        sf.write(root / "train" / f"Y{yid}.wav", _clip(ev, 100 + i), SR, subtype="PCM_16")
        rows += [(f"{yid}_30000", on, off, cls[k][0]) for on, off, k in ev]
    _write_labels(root / "audioset_train_strong.tsv", rows)
    rows, names, blobs = [], [], []
    for i, yid in enumerate(EVAL_IDS):
        ev = _events(50 + i)
        buf = io.BytesIO()
        sf.write(buf, _clip(ev, 200 + i), SR, format="WAV", subtype="PCM_16")
        names.append(f"Y{yid}.mp3".encode())
        blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
        rows += [(f"{yid}_10000", on, off, cls[k][0]) for on, off, k in ev]
    rows.append((f"{EVAL_IDS[0]}_10000", 1.0, 2.0, cls[3][0]))  # a class outside the 447: not evaluated
    _write_labels(root / "audioset_eval_strong.tsv", rows)
    with h5py.File(root / "eval.h5", "w") as f:
        f.create_dataset("audio_name", data=np.array(names, dtype="S20"))
        mp3 = f.create_dataset("mp3", (len(blobs),), dtype=h5py.vlen_dtype(np.uint8))
        for i, b in enumerate(blobs):
            mp3[i] = b
        f.create_dataset("target", data=np.zeros((len(blobs), 66), dtype=np.uint8))
    (root / "eval_durations.csv").write_text(
        "".join(f"Y{yid},{10.0 if i else 9.5}\n" for i, yid in enumerate(EVAL_IDS)), encoding="utf-8"
    )
    return {
        "train_labels": root / "audioset_train_strong.tsv",
        "train_audio": root / "train",
        "eval_labels": root / "audioset_eval_strong.tsv",
        "eval_audio": root / "eval.h5",
        "eval_durations": root / "eval_durations.csv",
    }


def tiny_weak_checkpoint(path: Path, seed: int = 0) -> Path:
    """A tiny ``atst_frame.as_weak``-like model (527-class heads, random weights) in upstream's released layout."""
    import torch

    from ptsed.models.factory import create_model
    from ptsed.release.export import export_model

    torch.manual_seed(seed)
    model = create_model(f"{TINY_ARCH}.as_weak", pretrained=False, **TINY_BUILDER)
    return export_model(model, path, "released")


def recipe_yaml(path: Path, data: dict[str, Path], start: Path, **extra: object) -> Path:
    """A run config for the tiny data and model (YAML, as a user would write it)."""
    import yaml

    cfg = {
        "model": TINY_ARCH,
        "checkpoint": str(start),
        "builder": dict(TINY_BUILDER),
        "rnn_dim": TINY_RNN,
        "batch_size": 2,
        "epochs": 1,
        "val_every": 1,
        "threads": 1,
        "optim": {"warmup_steps": 2},
        "data": {
            "train_labels": str(data["train_labels"]),
            "train_audio": [str(data["train_audio"])],
            "eval_labels": str(data["eval_labels"]),
            "eval_audio": [str(data["eval_audio"])],
            "eval_durations": str(data["eval_durations"]),
            "epoch_len": 4,
            "num_workers": 0,
        },
        "trainer": {"accelerator": "cpu", "devices": "1", "progress": False, "log_every": 1},
    }
    for key, value in extra.items():
        node = cfg
        *head, leaf = key.split(".")
        for h in head:
            node = node.setdefault(h, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path
