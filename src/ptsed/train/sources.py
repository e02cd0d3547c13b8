"""Turning a path given to ``ptsed finetune`` into a dataset.

A source is one of:

- a DCASE-layout folder: audio files (directly or in an ``audio/`` sub-folder) and TSV files recognised by
  their header: strong labels (``filename onset offset event_label``), weak labels (``filename event_labels``)
  and durations (``filename duration``);
- a HEAR task folder (has ``task_metadata.json``); append ``#split`` to pick a split (``task#fold01``);
  the defaults are ``train`` for training and ``valid`` for validation;
- a DESED root (has ``audio/`` and ``metadata/``); the splits are ``train`` and ``validation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptsed.core.errors import ConfigError

_HEADERS = {
    "strong": {"filename", "onset", "offset", "event_label"},
    "weak": {"filename", "event_labels"},
    "durations": {"filename", "duration"},
}


@dataclass
class DCASEFiles:
    """The files of a DCASE-layout folder."""

    audio_dir: Path
    strong: Path | None = None
    weak: Path | None = None
    durations: Path | None = None


def _tsv_kind(path: Path) -> str | None:
    """``"strong"``, ``"weak"`` or ``"durations"`` from a TSV's header; ``None`` for other tables."""
    try:
        with path.open(encoding="utf-8") as f:
            header = set(f.readline().strip().split("\t"))
    except (OSError, UnicodeDecodeError):
        return None
    if _HEADERS["strong"] <= header:
        return "strong"
    if "onset" in header or "offset" in header:  # event tables of another kind (e.g. synth's sources.tsv)
        return None
    if _HEADERS["weak"] <= header:
        return "weak"
    if _HEADERS["durations"] <= header:
        return "durations"
    return None


def find_dcase_files(folder: str | Path) -> DCASEFiles:
    """Find the audio folder and the strong / weak / durations TSVs of a DCASE-layout folder.

    Raises:
        ConfigError: no labels TSV, or two TSVs of the same kind (naming them).
    """
    folder = Path(folder)
    found: dict[str, list[Path]] = {}
    for tsv in sorted(folder.glob("*.tsv")):
        kind = _tsv_kind(tsv)
        if kind:
            found.setdefault(kind, []).append(tsv)
    for kind, paths in found.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            raise ConfigError(f"{folder}: several {kind} TSVs ({names}); keep one or pass the files explicitly")
    if "strong" not in found and "weak" not in found:
        raise ConfigError(
            f"{folder}: no labels found (expected a TSV with header 'filename onset offset event_label' or "
            "'filename event_labels')"
        )
    audio = folder / "audio" if (folder / "audio").is_dir() else folder
    pick = {k: v[0] for k, v in found.items()}
    return DCASEFiles(audio, pick.get("strong"), pick.get("weak"), pick.get("durations"))


def source_kind(path: str | Path) -> str:
    """``"hear"``, ``"desed"`` or ``"dcase"`` for a source path (a ``#split`` suffix is ignored)."""
    folder = Path(str(path).split("#", 1)[0])
    if not folder.is_dir():
        raise ConfigError(f"data source {folder} is not a folder")
    if (folder / "task_metadata.json").is_file():
        return "hear"
    if (folder / "audio").is_dir() and (folder / "metadata").is_dir():
        return "desed"
    return "dcase"


def open_source(
    path: str | Path,
    *,
    role: str,
    labels: Sequence[str] | None,
    sample_rate: int,
    window_s: float,
    train: bool,
    window_hop_s: float | None = None,
) -> Any:
    """The dataset of a source (see the module docstring).

    Args:
        path: the source path (``#split`` picks a HEAR / DESED split).
        role: ``"train"`` or ``"valid"`` (chooses the default split).
        labels: class order (``None``: the labels found in the data).
        sample_rate, window_s: of the model being trained.
        train: random training crops (``False``: fixed windows for validation).
        window_hop_s: hop between the fixed windows (``None``: the window, no overlap).
    """
    text = str(path)
    folder, _, split = text.partition("#")
    kind = source_kind(folder)
    common = {"labels": labels, "sample_rate": sample_rate, "window_s": window_s, "train": train}
    if window_hop_s is not None:
        common["window_hop_s"] = window_hop_s
    if kind == "hear":
        from ptsed.data.hear import HEARDataset

        return HEARDataset(folder, split or ("train" if role == "train" else "valid"), ignore_unknown=True, **common)
    if kind == "desed":
        from ptsed.data.desed import DESEDDataset

        return DESEDDataset(folder, split or ("train" if role == "train" else "validation"), **common)
    from ptsed.data.dcase import DCASEDataset

    files = find_dcase_files(folder)
    return DCASEDataset(
        files.audio_dir,
        files.strong,
        weak_tsv=files.weak,
        durations_tsv=files.durations,
        ignore_unknown=labels is not None,
        **common,
    )
