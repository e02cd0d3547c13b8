"""Frame scores of a whole evaluation set, held so that metrics can stream over classes.

:class:`ScoreStore` keeps one class-major array ``(K, sum of T over clips)`` (in memory, or in a
memory-mapped temporary file beyond ``memory_limit_bytes``), so that a metric reads one class of every
clip as one contiguous row and never builds all classes of all clips as DataFrames at once (the
AudioSet-strong eval set is 16,996 clips x 250 frames x 407 classes).

Sources of scores (see :func:`scores_from_dir`, :func:`scores_from_events`): sed_scores_eval TSV files
(``onset offset *classes``, one per clip, as ``ptsed detect --format scores`` writes them), detected
events (turned into 0/1 scores on the grid of their boundaries), and :class:`~ptsed.core.types.FrameScores`
from a model.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ptsed.core.errors import ConfigError
from ptsed.io.scores_tsv import read_scores_tsv  # noqa: F401 - the one validated reader, also importable here

DEFAULT_MEMORY_LIMIT = 2 * 1024**3
"""Bytes of scores kept in RAM before the store moves to a memory-mapped temporary file."""


def uniform_hop(timestamps: np.ndarray, rtol: float = 1e-4) -> float | None:
    """The frame hop in seconds when the frame boundaries are evenly spaced, else ``None``."""
    d = np.diff(np.asarray(timestamps, dtype=np.float64))
    if len(d) == 0 or d.min() <= 0:
        return None
    hop = float((timestamps[-1] - timestamps[0]) / len(d))
    return hop if np.abs(d - hop).max() <= rtol * hop + 1e-9 else None


class ScoreStore:
    """Frame scores (T_i, K) of many clips, stored class-major.

    Fill it with :meth:`add`, then call :meth:`finalize` once; after that, :meth:`row` gives one class
    over all clips and :meth:`clip_scores` one clip.

    Args:
        labels: the K classes kept, in order; :meth:`add` picks these columns by name.
        dtype: storage dtype (float32 for model outputs; float64 keeps text scores exact).
        median_filter_s: class-wise median filter length in seconds applied to each clip as it is added
            (one for all, or a mapping label -> seconds; ``None``: none), with
            :func:`ptsed.postprocess.filters.median_filter`.
        memory_limit_bytes: beyond this size the scores live in a temporary file (memory-mapped).
        tmp_dir: where that file goes (default: the system temp folder).
    """

    def __init__(
        self,
        labels: Sequence[str],
        *,
        dtype: np.dtype | type = np.float32,
        median_filter_s: float | Mapping[str, float] | None = None,
        memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT,
        tmp_dir: str | Path | None = None,
    ) -> None:
        self.labels = list(labels)
        self._col = {c: i for i, c in enumerate(self.labels)}
        self.dtype = np.dtype(dtype)
        self.median_filter_s = median_filter_s
        self.memory_limit_bytes = int(memory_limit_bytes)
        self._tmp_root = tmp_dir
        self._tmp: Path | None = None
        self._blocks: list[np.ndarray] = []
        self._spill = None  # raw file of (T, K) blocks once over the limit
        self._clips: list[str] = []
        self._timestamps: dict[str, np.ndarray] = {}
        self._offsets: dict[str, tuple[int, int]] = {}
        self._total = 0
        self._data: np.ndarray | None = None

    # -- filling ----------------------------------------------------------------------------------------
    def _tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="ptsed-scores-", dir=self._tmp_root))
        return self._tmp

    def add(self, clip: str, scores: np.ndarray, timestamps: np.ndarray, labels: Sequence[str] | None = None) -> None:
        """Add one clip.

        Args:
            clip: clip id (unique).
            scores: (T, K') frame scores.
            timestamps: (T + 1,) frame boundaries in seconds.
            labels: the K' column names of ``scores`` (default: the store's labels, in order).

        Raises:
            ConfigError: a duplicate clip, wrong shapes, missing classes, or a median filter on an uneven grid.
        """
        if self._data is not None:
            raise RuntimeError("ScoreStore.add after finalize")
        if clip in self._offsets:
            raise ConfigError(f"scores for clip {clip!r} were given twice")
        scores = np.asarray(scores)
        timestamps = np.asarray(timestamps, dtype=np.float64)
        if scores.ndim != 2 or timestamps.shape != (scores.shape[0] + 1,):
            raise ConfigError(
                f"scores of {clip!r}: expected (T, K) scores and T + 1 timestamps, got {scores.shape} and "
                f"{timestamps.shape}"
            )
        if labels is not None:
            pos = {c: i for i, c in enumerate(labels)}
            missing = [c for c in self.labels if c not in pos]
            if missing:
                raise ConfigError(f"scores of {clip!r} lack {len(missing)} classes, e.g. {missing[:3]}")
            scores = scores[:, [pos[c] for c in self.labels]]
        elif scores.shape[1] != len(self.labels):
            raise ConfigError(f"scores of {clip!r} have {scores.shape[1]} columns, expected {len(self.labels)}")
        if self.median_filter_s:
            from ptsed.postprocess.filters import median_filter

            hop = uniform_hop(timestamps)
            if hop is None:
                raise ConfigError(f"scores of {clip!r} are not on an even frame grid; cannot median-filter them")
            scores = median_filter(scores, self.median_filter_s, hop, labels=self.labels)
        block = np.ascontiguousarray(scores, dtype=self.dtype)
        t = block.shape[0]
        self._offsets[clip] = (self._total, t)
        self._total += t
        self._clips.append(clip)
        self._timestamps[clip] = timestamps
        if self._spill is None and (self._total * len(self.labels) * self.dtype.itemsize > self.memory_limit_bytes):
            self._spill = open(self._tmpdir() / "blocks.raw", "wb")  # noqa: SIM115 - closed in finalize
            for b in self._blocks:
                b.tofile(self._spill)
            self._blocks = []
        if self._spill is not None:
            block.tofile(self._spill)
        else:
            self._blocks.append(block)

    def finalize(self) -> ScoreStore:
        """Build the class-major array; no more :meth:`add` after this. Returns ``self``."""
        if self._data is not None:
            return self
        k = len(self.labels)
        shape = (k, self._total)
        if self._spill is None:
            data = np.empty(shape, dtype=self.dtype)
            for clip, block in zip(self._clips, self._blocks, strict=True):
                start, t = self._offsets[clip]
                data[:, start : start + t] = block.T
            self._blocks = []
        else:
            self._spill.close()
            raw_path = self._tmpdir() / "blocks.raw"
            raw = np.memmap(raw_path, dtype=self.dtype, mode="r", shape=(self._total, k))
            data = np.lib.format.open_memmap(self._tmpdir() / "scores.npy", mode="w+", dtype=self.dtype, shape=shape)
            step = max(1, self.memory_limit_bytes // max(1, 2 * k * self.dtype.itemsize))
            for start in range(0, self._total, step):
                stop = min(self._total, start + step)
                data[:, start:stop] = raw[start:stop].T
            data.flush()
            del raw
            os.remove(raw_path)
            self._spill = None
        self._data = data
        return self

    # -- reading ----------------------------------------------------------------------------------------
    @property
    def clips(self) -> list[str]:
        """Clip ids in the order they were added."""
        return list(self._clips)

    @property
    def on_disk(self) -> bool:
        return isinstance(self._data, np.memmap) or self._spill is not None

    @property
    def num_frames(self) -> int:
        """Frames of all clips together (the length of a :meth:`row`)."""
        return self._total

    @property
    def nbytes(self) -> int:
        return self._total * len(self.labels) * self.dtype.itemsize

    def __len__(self) -> int:
        return len(self._clips)

    def __contains__(self, clip: str) -> bool:
        return clip in self._offsets

    def _ready(self) -> np.ndarray:
        if self._data is None:
            raise RuntimeError("call ScoreStore.finalize() before reading")
        return self._data

    def timestamps(self, clip: str) -> np.ndarray:
        """(T + 1,) frame boundaries of a clip in seconds."""
        return self._timestamps[clip]

    def span(self, clip: str) -> tuple[int, int]:
        """(start, T): where a clip's frames lie in a row."""
        return self._offsets[clip]

    def row(self, k: int) -> np.ndarray:
        """Class ``k`` over all clips: (sum of T,), clips in :attr:`clips` order."""
        return np.asarray(self._ready()[k])

    def clip_scores(self, clip: str, classes: Sequence[int] | None = None) -> np.ndarray:
        """(T, K) (or (T, len(classes))) scores of one clip."""
        start, t = self._offsets[clip]
        data = self._ready()
        sl = data[:, start : start + t] if classes is None else data[list(classes), start : start + t]
        return np.ascontiguousarray(sl.T)

    def dataframes(self, classes: Sequence[int], clips: Iterable[str] | None = None) -> dict:
        """sed_scores_eval score DataFrames (``onset offset *classes``) of a class subset, per clip."""
        import pandas as pd

        names = [self.labels[k] for k in classes]
        out = {}
        for clip in self._clips if clips is None else clips:
            ts = self._timestamps[clip]
            values = self.clip_scores(clip, classes).astype(np.float64)
            frame = pd.DataFrame(values, columns=names)
            frame.insert(0, "offset", ts[1:])
            frame.insert(0, "onset", ts[:-1])
            out[clip] = frame
        return out

    def close(self) -> None:
        """Drop the scores and delete the temporary file, if any."""
        self._data = None
        self._blocks = []
        if self._spill is not None:
            self._spill.close()
            self._spill = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> ScoreStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()


# ----------------------------------------------------------------------------------------------------
# sources
# ----------------------------------------------------------------------------------------------------
def check_probabilities(scores: np.ndarray, clip: str) -> None:
    """Raise :class:`ConfigError` unless every score of a clip is a probability in [0, 1].

    Args:
        scores: (T, K) frame scores of the clip.
        clip: its name, for the message.
    """
    scores = np.asarray(scores)
    if scores.size == 0 or ((scores >= 0) & (scores <= 1)).all():
        return
    if np.isnan(scores).any():
        raise ConfigError(f"scores of {clip!r} hold NaN values; scores must be probabilities in [0, 1]")
    raise ConfigError(
        f"scores of {clip!r} range from {float(scores.min()):.4g} to {float(scores.max()):.4g}; scores must be "
        "probabilities in [0, 1] (logits? apply a sigmoid first)"
    )


def list_score_files(path: str | Path) -> dict[str, Path]:
    """Name (file name without ``.tsv``) -> score file, for a folder of them or a single file."""
    path = Path(path)
    if path.is_file():
        return {path.name[: -len(".tsv")] if path.name.endswith(".tsv") else path.stem: path}
    if not path.is_dir():
        raise ConfigError(f"scores {str(path)!r} do not exist")
    files = {p.name[: -len(".tsv")]: p for p in sorted(path.iterdir()) if p.is_file() and p.name.endswith(".tsv")}
    if not files:
        raise ConfigError(f"folder {str(path)!r} holds no .tsv score files")
    return files


def events_to_scores(
    events: Sequence[tuple[float, float, str]], labels: Sequence[str], duration_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """0/1 scores of detected events on the grid of their boundaries.

    Returns:
        (scores (T, K) float32, timestamps (T + 1,)) where the boundaries are 0, ``duration_s`` and every
        onset and offset within; a frame scores 1 for a class while one of its events covers it.
    """
    col = {c: i for i, c in enumerate(labels)}
    bounds = {0.0, float(duration_s)}
    for on, off, _ in events:
        bounds.update((min(max(on, 0.0), duration_s), min(max(off, 0.0), duration_s)))
    ts = np.array(sorted(bounds), dtype=np.float64)
    mids = (ts[:-1] + ts[1:]) / 2
    out = np.zeros((len(ts) - 1, len(labels)), dtype=np.float32)
    for on, off, label in events:
        k = col.get(label)
        if k is not None:
            out[(mids > on) & (mids < off), k] = 1.0
    return out, ts
