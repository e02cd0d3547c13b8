"""Where the data shipped inside the package lives (``ptsed/assets``): paths only, no reading."""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
"""``ptsed/assets`` inside the installed package."""
SHIPPED_DIR = ASSETS_DIR / "labels"
"""The vocabularies, the eval clip list and the ontology shipped as package data (``ptsed/assets/labels``)."""
VOCAB_FILES = {
    "audioset_strong_447": "audioset_strong_train_447.tsv",
    "audioset_weak_527": "audioset_weak_527.tsv",
    "audioset_strong_eval_416": "audioset_strong_eval_416.tsv",
}
"""Vocabulary name -> its TSV file (``mid``, ``display_name``) in :data:`SHIPPED_DIR` and the cache."""


def shipped_file(name: str) -> Path:
    """Path of a file shipped in ``ptsed/assets/labels`` (a vocabulary TSV, the eval durations, the ontology)."""
    return SHIPPED_DIR / name


__all__ = ["ASSETS_DIR", "SHIPPED_DIR", "VOCAB_FILES", "shipped_file"]
