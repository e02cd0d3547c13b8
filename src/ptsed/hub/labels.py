"""Label vocabularies of the checkpoints.

The vocabularies are not copied into ptsed. They come with the checkpoint download, from upstream's
published files at a pinned commit, and are cached as TSV files (``index, mid, display_name``).
Offline, ``$PTSED_LABELS_DIR`` names a folder that holds the TSV files under these names:

- ``audioset_strong_train_447.tsv``: output order of every strong head (447 classes).
- ``audioset_weak_527.tsv``: AudioSet weak vocabulary in ``class_labels_indices.csv`` order.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ptsed.core.errors import CheckpointError
from ptsed.hub.cache import labels_dir

VOCAB_FILES = {
    "audioset_strong_447": "audioset_strong_train_447.tsv",
    "audioset_weak_527": "audioset_weak_527.tsv",
}
VOCAB_SIZES = {"audioset_strong_447": 447, "audioset_weak_527": 527}


def read_vocab_tsv(path: Path) -> list[str]:
    """Display names, in index order, from a TSV with the header ``index, mid, display_name``."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [r["display_name"] for r in sorted(rows, key=lambda r: int(r["index"]))]


def _candidates(vocab: str) -> list[Path]:
    fname = VOCAB_FILES[vocab]
    out = []
    env = os.environ.get("PTSED_LABELS_DIR")
    if env:
        out.append(Path(env).expanduser() / fname)
    out.append(labels_dir() / fname)
    return out


def get_labels(vocab: str, *, download: bool = True) -> list[str]:
    """Class names of a vocabulary in output order.

    Looks in ``$PTSED_LABELS_DIR``, then in the cache, then downloads upstream's files (pinned commit).

    Raises:
        CheckpointError: when the vocabulary is nowhere to be found and cannot be downloaded.
    """
    if vocab not in VOCAB_FILES:
        raise KeyError(f"unknown label vocabulary {vocab!r}; known: {', '.join(VOCAB_FILES)}")
    for path in _candidates(vocab):
        if path.is_file():
            names = read_vocab_tsv(path)
            if len(names) != VOCAB_SIZES[vocab]:
                raise CheckpointError(
                    f"label file {str(path)!r} has {len(names)} classes, expected {VOCAB_SIZES[vocab]}"
                )
            return names
    if download:
        from ptsed.hub.fetch import fetch_labels

        return read_vocab_tsv(fetch_labels(vocab))
    raise CheckpointError(
        f"the label vocabulary {vocab!r} is not available: download it with `ptsed download`, or set "
        f"PTSED_LABELS_DIR to a folder holding {VOCAB_FILES[vocab]}"
    )
