"""Redo post-processing from saved frame scores (``--format npz``) without running a model.

``ptsed detect out/frames/ --threshold 0.3 --output out2/`` reads the NPZ files and writes new events
with other thresholds, filters or class lists. :class:`ScoreReplay` is a score source
(:class:`ptsed.inference.source.ScoreSource`) like :class:`ptsed.inference.predictor.Predictor`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ptsed.inference.types import FileResult
from ptsed.io.audio import AudioSource, list_audio_files


def _is_leftover(name: str) -> bool:
    """Hidden files and folders and temporary files (``.x.npz``, ``a.npz.tmp``, ``.a.npz.123-ab.tmp.npz``)."""
    parts = name.split("/")
    return any(p.startswith(".") for p in parts) or ".tmp" in parts[-1].lower()


def find_score_files(inputs: Sequence[str | os.PathLike], recursive: bool = True) -> list[AudioSource] | None:
    """The ``.npz`` score files among ``inputs`` (files or folders), or ``None`` when the inputs are not all
    score files (then they are audio). Hidden and temporary files in folders are not inputs."""
    items = [Path(x) for x in inputs]
    if not all((p.is_file() and p.suffix.lower() == ".npz") or p.is_dir() for p in items):
        return None
    if any(p.is_dir() and not any(p.rglob("*.npz") if recursive else p.glob("*.npz")) for p in items):
        return None
    found = list_audio_files([str(p) for p in items], extensions=[".npz"], recursive=recursive)
    given = {p.resolve() for p in items if p.is_file()}
    return [s for s in found if s.path.resolve() in given or not _is_leftover(s.name)]


def _meta(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
        if not isinstance(meta, dict):
            meta = {}
        meta["_channels"] = [int(c) for c in z["channels"]] if "channels" in z.files else [-1]
        meta["_labels"] = [str(x) for x in z["labels"]] if "labels" in z.files else []
    return meta


class ScoreReplay:
    """Frame scores saved by ``ptsed detect --format npz``, read back as a score source
    (:class:`ptsed.inference.source.ScoreSource`): no model runs.

    Args:
        sources: the NPZ files (:func:`find_score_files`); the first readable one describes the run (its
            sample rate, channel mode, upstream chunking and classes).
        upstream_chunking: ``True`` treats the scores as upstream-chunked whatever the files record
            (``ptsed detect --upstream-chunking``); ``None`` uses what the files record.
    """

    def __init__(self, sources: Sequence[AudioSource] = (), *, upstream_chunking: bool | None = None) -> None:
        self.upstream_chunking = False
        self.sample_rate = 16_000
        self.channels = "mix"
        self.labels: list[str] = []
        self.models: list[Any] = []
        for src in sources:  # the first readable file describes the run (a bad one is reported later)
            try:
                meta = _meta(Path(src.path))
                settings = meta.get("settings", {})
                self.sample_rate = int(settings.get("sample_rate", 16_000))
                self.upstream_chunking = bool(settings.get("upstream_chunking", False))
                self.channels = "each" if meta["_channels"][0] >= 0 else "mix"
                self.labels = list(meta["_labels"])
            except Exception:  # noqa: BLE001, S112 - any damage: try the next file
                continue
            break
        if upstream_chunking is not None:
            self.upstream_chunking = bool(upstream_chunking)

    def settings(self) -> dict[str, Any]:
        return {"replay": "npz"}

    def score_many(
        self, inputs: Iterable[AudioSource], *, progress: Callable[[float], None] | None = None
    ) -> Iterator[FileResult]:
        """One :class:`FileResult` per NPZ file, with its frame scores (events are left to post-processing)."""
        from ptsed.io.results import read_frame_scores

        for src in inputs:
            try:
                meta = _meta(Path(src.path))
                # the stored name is the table's filename only; outputs are named after the NPZ's own path
                name = str(meta.get("name") or src.name)
                streams = read_frame_scores(src.path)
                result = FileResult(source=str(meta.get("source", src.path)), name=name, input_name=src.name)
                result.duration_s = float(meta.get("duration_s") or streams[0].timestamps[-1])
                for fs in streams:
                    fs.source = name
                    result.scores.append(fs)
            except Exception as err:
                result = FileResult(
                    source=str(src.path), name=src.name, error=f"{src.path}: {err}", input_name=src.name
                )
            if progress is not None and result.duration_s:
                progress(result.duration_s)
            yield result
