"""DESED (DCASE task 4 domestic sound events) as distributed, read in place.

The layout is the one DESED's download scripts and the DESED_task baselines use below one root::

    audio/train/synthetic21_train/soundscapes/   metadata/train/synthetic21_train/soundscapes.tsv   (strong)
    audio/train/strong_label_real/               metadata/train/audioset_strong.tsv                 (strong)
    audio/train/weak/                            metadata/train/weak.tsv                            (weak)
    audio/train/unlabel_in_domain/                                                                  (no labels)
    audio/validation/validation/                 metadata/validation/validation.tsv (+ validation_durations.tsv)
    audio/validation/synthetic21_validation/soundscapes/  metadata/validation/synthetic21_validation/soundscapes.tsv

Any ``syntheticNN`` year is accepted (the newest is taken), the synthetic part may also sit below a
``dcase_synth/`` folder, and a resampled ``<folder>_16k`` copy is preferred when reading at 16 kHz.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ptsed.core.errors import ConfigError
from ptsed.core.frames import FRAME_HOP_S
from ptsed.data.dcase import dcase_records
from ptsed.data.windows import WindowedDataset

DESED_CLASSES = (
    "Alarm_bell_ringing",
    "Blender",
    "Cat",
    "Dishes",
    "Dog",
    "Electric_shaver_toothbrush",
    "Frying",
    "Running_water",
    "Speech",
    "Vacuum_cleaner",
)
"""The ten DESED classes, in the sorted order DCASE baselines use."""


@dataclass(frozen=True)
class DESEDSubset:
    """Where one part of DESED lives (glob patterns relative to the root; the last sorted match wins)."""

    name: str
    audio: str
    strong: str | None = None
    weak: str | None = None
    durations: str | None = None


SUBSETS = {
    s.name: s
    for s in [
        DESEDSubset(
            "synthetic_train",
            "audio/train/synthetic*_train/soundscapes",
            strong="metadata/train/synthetic*_train/soundscapes.tsv",
        ),
        DESEDSubset("strong_real", "audio/train/strong_label_real", strong="metadata/train/audioset_strong.tsv"),
        DESEDSubset("weak", "audio/train/weak", weak="metadata/train/weak.tsv"),
        DESEDSubset("unlabel_in_domain", "audio/train/unlabel_in_domain"),
        DESEDSubset(
            "validation",
            "audio/validation/validation",
            strong="metadata/validation/validation.tsv",
            durations="metadata/validation/validation_durations.tsv",
        ),
        DESEDSubset(
            "synthetic_validation",
            "audio/validation/synthetic*_validation/soundscapes",
            strong="metadata/validation/synthetic*_validation/soundscapes.tsv",
            durations="metadata/validation/synthetic*_validation/durations.tsv",
        ),
    ]
}

SPLITS = {
    "train": ("synthetic_train", "strong_real", "weak", "unlabel_in_domain"),
    "validation": ("validation",),
}


def _find(root: Path, pattern: str | None, *, folder: bool = False, sample_rate: int = 16000) -> Path | None:
    """The newest match of ``pattern`` below ``root`` or ``root/dcase_synth`` (a ``_16k`` twin preferred)."""
    if pattern is None:
        return None
    for base in (root, root / "dcase_synth"):
        hits = sorted(p for p in base.glob(pattern) if (p.is_dir() if folder else p.is_file()))
        if hits:
            hit = hits[-1]
            twin = hit.with_name(hit.name + "_16k")
            return twin if folder and sample_rate == 16000 and twin.is_dir() else hit
    return None


class DESEDDataset(WindowedDataset):
    """Parts of DESED as one dataset of 10 s windows (items as :class:`~ptsed.data.dcase.DCASEDataset`).

    Synthetic and real strong parts have ``mask_strong`` True; the weak part has clip labels only;
    ``unlabel_in_domain`` items have ``mask_strong`` and ``mask_weak`` False and zero targets.
    :attr:`subset_indices` gives the item indices of each part (e.g. for a sampler that fixes the share
    of synthetic, weak and unlabelled clips in a batch, as the DCASE baselines do).

    Args:
        root: the DESED folder (holding ``audio/`` and ``metadata/``).
        split: ``"train"`` or ``"validation"``: the parts of that split found below ``root``.
        subsets: names of the parts to read instead (see :data:`SUBSETS`); each must exist.
        labels: class order (default :data:`DESED_CLASSES`).
        sample_rate, window_s, window_hop_s, frame_hop_s, train: see :class:`~ptsed.data.windows.WindowedDataset`.
        skip_missing: drop files whose audio is missing instead of raising.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        subsets: Sequence[str] | None = None,
        labels: Sequence[str] | None = None,
        sample_rate: int = 16000,
        window_s: float = 10.0,
        window_hop_s: float | None = None,
        frame_hop_s: float = FRAME_HOP_S,
        train: bool = False,
        skip_missing: bool = False,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise ConfigError(f"DESED folder {root} does not exist")
        labels = list(labels) if labels is not None else list(DESED_CLASSES)
        if subsets is None:
            if split not in SPLITS:
                raise ConfigError(f"unknown DESED split {split!r}; choose from {', '.join(SPLITS)}")
            wanted, required = SPLITS[split], False
        else:
            unknown = [s for s in subsets if s not in SUBSETS]
            if unknown:
                raise ConfigError(f"unknown DESED part(s) {unknown}; choose from {', '.join(SUBSETS)}")
            wanted, required = tuple(subsets), True
        records = []
        self.subset_indices: dict[str, list[int]] = {}
        record_subset: list[str] = []
        for name in wanted:
            spec = SUBSETS[name]
            audio = _find(root, spec.audio, folder=True, sample_rate=sample_rate)
            strong, weak, durations = (_find(root, p) for p in (spec.strong, spec.weak, spec.durations))
            lacking = audio is None or (spec.strong and strong is None) or (spec.weak and weak is None)
            if lacking:
                if required:
                    raise ConfigError(f"DESED part {name!r} not found below {root} (expected {spec.audio})")
                continue
            recs, _ = dcase_records(
                audio, strong, weak_tsv=weak, durations_tsv=durations, labels=labels, skip_missing=skip_missing
            )
            records.extend(recs)
            record_subset.extend([name] * len(recs))
        if not records:
            raise ConfigError(f"no DESED data found below {root} for split {split!r} (parts {', '.join(wanted)})")
        super().__init__(
            records,
            labels,
            sample_rate=sample_rate,
            window_s=window_s,
            window_hop_s=window_hop_s,
            frame_hop_s=frame_hop_s,
            train=train,
        )
        for i, (rec_idx, _) in enumerate(self.windows):
            self.subset_indices.setdefault(record_subset[rec_idx], []).append(i)
