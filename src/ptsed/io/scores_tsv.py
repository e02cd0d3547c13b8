"""The sed_scores_eval score table: one writer and one validated reader.

A score table holds the frame scores of one audio stream: a header ``onset<TAB>offset<TAB><label>...`` and
one row per frame, times in seconds (the shortest text that reads back as the same float), scores with 9
significant digits, which round-trip float32 exactly, so saved scores evaluate as the model's own.
``ptsed detect --format scores`` and ``ptsed evaluate --save-scores`` write it; ``ptsed evaluate --scores``,
``ptsed tune`` and :func:`ptsed.io.results.read_frame_scores` read it.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ptsed.core.errors import ConfigError
from ptsed.core.files import atomic_write_text
from ptsed.core.types import FrameScores

FLOAT_FORMAT = "%.9g"
"""Scores are written with 9 significant digits (float32 round-trips exactly)."""


def format_time(t: float) -> str:
    """Shortest text of a time in seconds (``10.32``, not ``10.320000000000002``)."""
    return repr(float(t))


def valid_frames(fs: FrameScores) -> int:
    """Number of leading frames of non-zero length (upstream mode keeps zero-length padded frames at the
    end, which score files leave out: sed_scores_eval rejects them)."""
    ts = fs.timestamps
    positive = np.flatnonzero(ts[1:] > ts[:-1])
    return int(positive[-1]) + 1 if positive.size else 0


def scores_tsv_pieces(fs: FrameScores, float_format: str = FLOAT_FORMAT, rows_per_piece: int = 500) -> Iterator[str]:
    """sed_scores_eval score table text: ``onset offset <label>...``, one row per frame of non-zero length,
    in pieces of ``rows_per_piece`` rows (a 3-hour file's table is about 1 GB of text; it is never held whole).

    Nine significant digits round-trip float32 exactly, so saved scores evaluate as the model's own."""
    n = valid_frames(fs)
    yield "\t".join(["onset", "offset", *fs.labels]) + "\n"
    ts = fs.timestamps
    for a in range(0, n, rows_per_piece):
        buf = io.StringIO()
        for i, row in enumerate(fs.scores[a : min(n, a + rows_per_piece)].tolist(), a):
            buf.write(f"{format_time(ts[i])}\t{format_time(ts[i + 1])}\t")
            buf.write("\t".join(float_format % v for v in row))
            buf.write("\n")
        yield buf.getvalue()


def scores_tsv_text(fs: FrameScores, float_format: str = FLOAT_FORMAT) -> str:
    """The whole sed_scores_eval score table of ``fs`` as one string (see :func:`scores_tsv_pieces`)."""
    return "".join(scores_tsv_pieces(fs, float_format))


def write_scores_tsv(path: str | os.PathLike, fs: FrameScores) -> Path:
    """Write the score table of ``fs`` to ``path`` atomically (:func:`ptsed.core.files.atomic_write`)."""
    atomic_write_text(path, scores_tsv_pieces(fs))
    return Path(path)


def read_scores_tsv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One sed_scores_eval score file: (scores (T, K) float64, timestamps (T + 1,) in seconds, class names).

    Raises:
        ConfigError: a missing or unreadable file, not ``onset offset *classes``, no frames, values that are
            not numbers or not finite, or frames that are not contiguous (one line naming the file).
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            cols = next(csv.reader(fh, delimiter="\t"), [])
            text = fh.read()
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"cannot read score file {str(path)!r}: {err}") from err
    if len(cols) < 3 or cols[0] != "onset" or cols[1] != "offset":
        raise ConfigError(f"score file {str(path)!r} must have the columns 'onset offset <classes...>', got {cols[:4]}")
    if not text.strip():
        raise ConfigError(f"score file {str(path)!r} has no frames")
    try:
        data = np.loadtxt(io.StringIO(text), delimiter="\t", ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise ConfigError(f"score file {str(path)!r} holds values that are not numbers: {err}") from err
    if data.shape[1] != len(cols):
        raise ConfigError(f"score file {str(path)!r} has {data.shape[1]} values per row for {len(cols)} columns")
    onset, offset, values = data[:, 0], data[:, 1], data[:, 2:]
    if not np.allclose(onset[1:], offset[:-1], atol=1e-6) or (offset <= onset).any():
        raise ConfigError(f"score file {str(path)!r}: frames must be contiguous (each onset = the previous offset)")
    if not np.isfinite(values).all():
        raise ConfigError(f"score file {str(path)!r} holds NaN or infinite scores")
    return values, np.concatenate([onset, offset[-1:]]), [str(c) for c in cols[2:]]


__all__ = ["format_time", "read_scores_tsv", "scores_tsv_pieces", "scores_tsv_text", "valid_frames", "write_scores_tsv"]
