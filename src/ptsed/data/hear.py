"""Datasets from HEAR task folders (hear-preprocess format), e.g. DCASE 2016 task 2 and MAESTRO 5h.

A task folder holds ``task_metadata.json``, ``labelvocabulary.csv`` (``idx,label``), one ``{split}.json``
per split and the audio in ``{sample_rate}/{split}/``. Event tasks map each file to a list of
``{"label", "start", "end"}`` with times in MILLISECONDS; scene tasks map each file to a list of labels.
Splits are ``train``/``valid``/``test`` (``split_mode`` ``trainvaltest``) or folds ``fold00``, ``fold01``, ...
(``new_split_kfold``/``presplit_kfold``), listed in the metadata's ``splits``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from ptsed.core.errors import ConfigError
from ptsed.core.frames import FRAME_HOP_S
from ptsed.data.dcase import Events, check_labels, make_records
from ptsed.data.windows import WindowedDataset


def read_task_metadata(task_dir: str | Path) -> dict:
    """The ``task_metadata.json`` of a HEAR task folder."""
    path = Path(task_dir) / "task_metadata.json"
    if not path.is_file():
        raise ConfigError(f"{task_dir} is not a HEAR task folder: {path.name} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: invalid JSON ({err})") from err


def read_label_vocabulary(task_dir: str | Path) -> list[str]:
    """Class names of a HEAR task in index order, from ``labelvocabulary.csv`` (columns ``idx,label``)."""
    path = Path(task_dir) / "labelvocabulary.csv"
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"idx", "label"} <= set(reader.fieldnames or []):
            raise ConfigError(f"{path}: expected columns idx,label, found {reader.fieldnames}")
        rows = []
        for row in reader:
            try:
                rows.append((int(row["idx"]), str(row["label"])))
            except (TypeError, ValueError):
                raise ConfigError(f"{path}:{reader.line_num}: idx {row['idx']!r} is not an integer") from None
    rows.sort()
    if [i for i, _ in rows] != list(range(len(rows))):
        raise ConfigError(f"{path}: idx must run from 0 to {len(rows) - 1} without gaps")
    return [label for _, label in rows]


def hear_data_splits(task_dir: str | Path) -> list[dict[str, list[str]]]:
    """The train/valid/test split combinations hear-eval-kit uses for a task.

    ``trainvaltest``: one combination. Fold modes: one per fold, with that fold as test, the next (in
    sorted order, wrapping around) as valid and the others as train.
    """
    meta = read_task_metadata(task_dir)
    mode = meta.get("split_mode", "trainvaltest")
    if mode == "trainvaltest":
        return [{"train": ["train"], "valid": ["valid"], "test": ["test"]}]
    if mode in ("new_split_kfold", "presplit_kfold"):
        folds = sorted(meta.get("splits", []))
        if len(folds) < 3:
            raise ConfigError(f"{task_dir}: split_mode {mode} needs at least 3 folds in 'splits', got {folds}")
        out = []
        for i, test in enumerate(folds):
            valid = folds[(i + 1) % len(folds)]
            out.append({"train": [f for f in folds if f not in (test, valid)], "valid": [valid], "test": [test]})
        return out
    raise ConfigError(f"{task_dir}: unknown split_mode {mode!r}")


def _audio_root(task_dir: Path, sample_rate: int) -> Path:
    """``task_dir/{rate}``: the folder at ``sample_rate`` if present, else the nearest higher (or highest) rate."""
    rates = sorted(int(p.name) for p in task_dir.iterdir() if p.is_dir() and p.name.isdigit())
    if not rates:
        raise ConfigError(f"{task_dir}: no audio folder (expected e.g. {task_dir / str(sample_rate)})")
    if sample_rate in rates:
        return task_dir / str(sample_rate)
    higher = [r for r in rates if r > sample_rate]
    return task_dir / str(higher[0] if higher else rates[-1])


class HEARDataset(WindowedDataset):
    """One or more splits of a HEAR task folder, cut into windows (same items as :class:`DCASEDataset`).

    Event tasks give strong labels (ms in the JSON, seconds in ptsed); scene tasks give clip labels
    (``mask_strong`` False). Audio is read from ``{sample_rate}/{split}/`` (another rate's folder is
    resampled when that one is absent).

    Args:
        task_dir: the task folder.
        split: a split name (``"train"``, ``"valid"``, ``"test"``, ``"fold00"``, ...) or a list of them.
        labels: class order (default: ``labelvocabulary.csv`` in idx order).
        sample_rate, window_s, window_hop_s, frame_hop_s, train: see :class:`~ptsed.data.windows.WindowedDataset`.
        ignore_unknown: drop labels outside ``labels`` instead of raising.
        skip_missing: drop files whose audio is missing instead of raising.

    Example::

        ds = HEARDataset("tasks/dcase2016_task2-hear2021-full", "train", window_hop_s=5.0, train=True)
    """

    def __init__(
        self,
        task_dir: str | Path,
        split: str | Sequence[str],
        *,
        labels: Sequence[str] | None = None,
        sample_rate: int = 16000,
        window_s: float = 10.0,
        window_hop_s: float | None = None,
        frame_hop_s: float = FRAME_HOP_S,
        train: bool = False,
        ignore_unknown: bool = False,
        skip_missing: bool = False,
    ) -> None:
        task_dir = Path(task_dir)
        self.metadata = read_task_metadata(task_dir)
        vocab = read_label_vocabulary(task_dir)
        labels = list(labels) if labels is not None else vocab
        splits = [split] if isinstance(split, str) else list(split)
        root = _audio_root(task_dir, sample_rate)
        records = []
        for name in splits:
            path = task_dir / f"{name}.json"
            if not path.is_file():
                found = sorted(p.stem for p in task_dir.glob("*.json") if p.name != "task_metadata.json")
                raise ConfigError(f"{task_dir}: split {name!r} has no {path.name} (splits: {', '.join(found)})")
            strong, weak = self._parse_split(path, self.metadata.get("embedding_type") == "event")
            used = {e[2] for evs in strong.values() for e in evs} | {x for w in weak.values() for x in w}
            if not ignore_unknown:
                check_labels(used, labels, str(path))
            names = sorted(set(strong) | set(weak))
            recs = make_records(
                root / name,
                names,
                strong=strong,
                weak=weak,
                source=str(path),
                skip_missing=skip_missing,
            )
            if len(splits) > 1:  # keep file names unique across folds
                for r in recs:
                    r.name = f"{name}/{r.name}"
            records.extend(recs)
        self.splits = splits
        super().__init__(
            records,
            labels,
            sample_rate=sample_rate,
            window_s=window_s,
            window_hop_s=window_hop_s,
            frame_hop_s=frame_hop_s,
            train=train,
        )

    @staticmethod
    def _parse_split(path: Path, event_task: bool) -> tuple[dict[str, Events], dict[str, tuple[str, ...]]]:
        """(strong events in seconds per file, clip labels per file) of one split JSON."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: invalid JSON ({err})") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected an object mapping file names to labels")
        strong: dict[str, Events] = {}
        weak: dict[str, tuple[str, ...]] = {}
        for fname, entries in data.items():
            if not isinstance(entries, list):
                raise ConfigError(f"{path}: entry of {fname!r} is not a list")
            if not entries:  # no labels: an event task's file without events, or a scene task's empty clip
                if event_task:
                    strong[fname] = []
                else:
                    weak[fname] = ()
            elif all(isinstance(e, dict) for e in entries):
                events = []
                for e in entries:
                    try:
                        start, end, label = float(e["start"]) / 1000.0, float(e["end"]) / 1000.0, str(e["label"])
                    except (KeyError, TypeError, ValueError):
                        raise ConfigError(f"{path}: bad event {e!r} of {fname!r} (needs label, start, end)") from None
                    if end < start or start < 0:
                        raise ConfigError(f"{path}: event {e!r} of {fname!r} ends before it starts")
                    events.append((start, end, label))
                strong[fname] = events
            elif all(not isinstance(e, dict) for e in entries):
                weak[fname] = tuple(str(e) for e in entries)
            else:
                raise ConfigError(f"{path}: entry of {fname!r} mixes events and labels")
        return strong, weak
