"""A tiny SEDModel and a tiny dataset in the agreed item format, for the training tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ptsed.backbones.base import Backbone
from ptsed.core.frames import events_to_frame_targets
from ptsed.frontends.base import Frontend
from ptsed.heads.sed_head import HeadConfig
from ptsed.models.sed_model import SEDModel

SR = 8000
WINDOW_S = 2.0


class TinyFrontend(Frontend):
    """Log power of 16 bands, 10 ms hop: (B, N) -> (B, 1, 16, N // 80 + 1)."""

    sample_rate = SR
    hop_s = 0.01
    n_bins = 16

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(64), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(waveform.float(), 64, 80, window=self.window, return_complex=True).abs() ** 2
        return torch.log(spec[:, 1:33].reshape(spec.shape[0], 16, 2, -1).mean(2) + 1e-6).unsqueeze(1)

    def num_frames(self, num_samples: int) -> int:
        return num_samples // 80 + 1


class TinyBackbone(Backbone):
    """Conv stem (pool 4 in time) + ``depth`` residual MLP blocks: (B, 1, 16, T) -> (B, T // 4, dim)."""

    frame_hop_s = 0.04

    def __init__(self, dim: int = 16, depth: int = 3, dropout: float = 0.1, batchnorm: bool = False) -> None:
        super().__init__()
        self.embed_dim = dim
        self.num_layers = depth
        self.stem = nn.Conv1d(16, dim, kernel_size=4, stride=4)
        self.norm = nn.BatchNorm1d(dim, momentum=0.01) if batchnorm else nn.Identity()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout)) for _ in range(depth)
        )

    def forward_intermediates(self, features: torch.Tensor, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        wanted = self.resolve_indices(indices, self.num_layers)
        x = self.norm(self.stem(features[:, 0])).transpose(1, 2)
        out = []
        for i, block in enumerate(self.blocks):
            x = x + block(x)
            if i in wanted:
                out.append(x)
        return out

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward_intermediates(features, [-1])[0]

    def param_groups(self) -> list[list[str]]:
        groups = [[n for n, _ in self.named_parameters() if n.startswith(("stem.", "norm."))]]
        groups += [[n for n, _ in b.named_parameters(prefix=f"blocks.{i}")] for i, b in enumerate(self.blocks)]
        return groups


LABELS = ["beep", "noise_burst", "chirp"]


def tiny_model(labels: Sequence[str] = LABELS, seed: int = 0, batchnorm: bool = False, **head: object) -> SEDModel:
    torch.manual_seed(seed)
    return SEDModel(
        TinyFrontend(),
        TinyBackbone(batchnorm=batchnorm),
        HeadConfig(n_strong=len(labels), **head),
        name="tiny",
        labels=labels,
    )


class TinyDataset(torch.utils.data.Dataset):
    """Synthetic clips of ``WINDOW_S`` seconds with tones, noise bursts and chirps at known times.

    Items have the agreed keys; ``records`` gives the ground truth for validation. Items are deterministic
    unless ``random_gain`` (drawn from torch's global generator, like a random crop would be).
    """

    def __init__(self, n: int = 16, seed: int = 0, random_gain: bool = False, no_strong_every: int = 0) -> None:
        self.labels = list(LABELS)
        self.random_gain = random_gain
        rng = np.random.default_rng(seed)
        self.items = []
        self.records = []
        t = np.arange(int(SR * WINDOW_S)) / SR
        for i in range(n):
            wave = 0.01 * rng.standard_normal(len(t))
            events = []
            for _ in range(int(rng.integers(1, 3))):
                label = self.labels[int(rng.integers(0, 3))]
                on = float(np.round(rng.uniform(0, WINDOW_S - 0.6), 2))
                off = float(np.round(on + rng.uniform(0.2, 0.5), 2))
                seg = (t >= on) & (t < off)
                if label == "beep":
                    wave[seg] += 0.5 * np.sin(2 * np.pi * 1000 * t[seg])
                elif label == "noise_burst":
                    wave[seg] += 0.3 * rng.standard_normal(seg.sum())
                else:
                    wave[seg] += 0.5 * np.sin(2 * np.pi * (300 + 1500 * (t[seg] - on)) * t[seg])
                events.append((on, off, label))
            strong = events_to_frame_targets(events, self.labels, int(WINDOW_S / 0.04))
            has_strong = not (no_strong_every and i % no_strong_every == 0)
            name = f"clip{i:03d}.wav"
            self.items.append((wave.astype(np.float32), strong, has_strong, name))
            self.records.append(_Record(name, WINDOW_S, events, has_strong))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        wave, strong, has_strong, name = self.items[i]
        wave = torch.from_numpy(wave.copy())
        if self.random_gain:
            wave = wave * (0.5 + torch.rand(()))
        return {
            "waveform": wave,
            "strong": torch.from_numpy(strong),
            "weak": torch.from_numpy(strong.max(axis=1)),
            "mask_strong": has_strong,
            "filename": name,
            "offset_s": 0.0,
            "duration_s": WINDOW_S,
        }


class _Record:
    def __init__(self, name: str, duration_s: float, events: list, has_strong: bool) -> None:
        self.name, self.duration_s, self.events, self.has_strong = name, duration_s, events, has_strong


def write_dcase_folder(folder, n: int = 8, seed: int = 0, sr: int = 16000, seconds: float = WINDOW_S) -> list[str]:
    """A DCASE-layout folder (audio/, strong.tsv, durations.tsv) of synthetic clips; returns the labels."""
    from pathlib import Path

    import soundfile as sf

    folder = Path(folder)
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    rows, durs = [], []
    for i in range(n):
        wave = 0.01 * rng.standard_normal(len(t))
        for _ in range(int(rng.integers(1, 3))):
            label = LABELS[int(rng.integers(0, 3))]
            on = float(np.round(rng.uniform(0, seconds - 0.6), 2))
            off = float(np.round(on + rng.uniform(0.2, 0.5), 2))
            seg = (t >= on) & (t < off)
            if label == "beep":
                wave[seg] += 0.5 * np.sin(2 * np.pi * 1000 * t[seg])
            elif label == "noise_burst":
                wave[seg] += 0.3 * rng.standard_normal(seg.sum())
            else:
                wave[seg] += 0.5 * np.sin(2 * np.pi * (300 + 1500 * (t[seg] - on)) * t[seg])
            rows.append(f"clip{i:03d}.wav\t{on}\t{off}\t{label}")
        sf.write(folder / "audio" / f"clip{i:03d}.wav", wave.astype(np.float32), sr)
        durs.append(f"clip{i:03d}.wav\t{seconds}")
    (folder / "strong.tsv").write_text("filename\tonset\toffset\tevent_label\n" + "\n".join(rows) + "\n")
    (folder / "durations.tsv").write_text("filename\tduration\n" + "\n".join(durs) + "\n")
    return list(LABELS)


def single_thread():
    """Generator for an autouse fixture: one torch thread (the test machines are small and shared; tiny models
    run many times faster without thread contention)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build_tiny(depth: int = 3, dim: int = 16, batchnorm: bool = False) -> tuple[TinyFrontend, TinyBackbone]:
    """Zoo builder of the tiny model (``register_tiny_arch``)."""
    return TinyFrontend(), TinyBackbone(dim=dim, depth=depth, batchnorm=batchnorm)


def register_tiny_arch(monkeypatch, name: str = "tinysed") -> None:
    """Put ``tinysed`` (the tiny model above, 8 kHz, 447-class heads) into the zoo for one test."""
    from dataclasses import replace

    from ptsed.models import zoo

    arch = replace(zoo.ARCHS["frame_mn06"], name=name, upstream_name=name, builder="train_fixtures:build_tiny")
    arch = replace(arch, builder_kwargs={}, key_prefixes=(("model.tiny.", "backbone."),), markers=("model.tiny.",))
    monkeypatch.setitem(zoo.ARCHS, name, arch)
    spec = replace(zoo.PRETRAINED["frame_mn06.as_strong"], name=f"{name}.as_strong", arch=arch)
    monkeypatch.setitem(zoo.PRETRAINED, f"{name}.as_strong", spec)
