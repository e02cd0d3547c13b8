"""Label vocabularies of the checkpoints.

The vocabularies ship with ptsed as package data (``ptsed/assets/labels/``, AudioSet's labels, CC BY 4.0;
source and licence in that folder's README), so released checkpoints work offline. Lookup order of
:func:`get_labels`: ``$PTSED_LABELS_DIR`` (an explicit override: a folder holding the TSV files), the shipped
files, the cache, then the download from upstream's published files at a pinned commit, cached as TSV
files (``index, mid, display_name``). The files are named:

- ``audioset_strong_train_447.tsv``: output order of every strong head (447 classes).
- ``audioset_weak_527.tsv``: AudioSet weak vocabulary in ``class_labels_indices.csv`` order.
- ``audioset_strong_eval_416.tsv``: the classes of the AudioSet-strong eval labels (upstream's
  ``as_strong_eval_classes``, alphabetical).

The download (:func:`fetch_labels`) builds these files from upstream's sources
(:data:`UPSTREAM_SOURCES`): the 447 strong names are the Python list ``as_strong_train_classes`` of
``data_util/audioset_classes.py``, read with :mod:`ast` (the file is never executed) and mapped to MIDs
with ``class_labels_indices_strong.csv``; the 416 eval classes likewise from ``as_strong_eval_classes``;
the 527 weak classes are ``class_labels_indices.csv`` in index order (AudioSet's standard order; that
upstream's weak heads use this order cannot be checked offline).
"""

from __future__ import annotations

import ast
import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from ptsed.core.assets import SHIPPED_DIR, VOCAB_FILES, shipped_file  # noqa: F401 - also their public home here
from ptsed.core.errors import CheckpointError
from ptsed.hub.cache import labels_dir
from ptsed.hub.download import DownloadError, download_bytes

UPSTREAM_REPO = "fschmid56/PretrainedSED"
UPSTREAM_COMMIT = "1aa47e482f7e89904cba2338999345025d8b4e36"
"""The upstream commit that label vocabularies are read at."""
LABELS_BASE_ENV = "PTSED_LABELS_BASE_URL"

VOCAB_SIZES = {"audioset_strong_447": 447, "audioset_weak_527": 527, "audioset_strong_eval_416": 416}

EVAL_DURATIONS_FILE = "audioset_strong_eval_durations.csv"
"""``Y<id>,duration`` of the published AudioSet-strong eval clips (16,935 rows), in :data:`SHIPPED_DIR`."""

STRONG_CLASSES_PY = "data_util/audioset_classes.py"
STRONG_CLASSES_VAR = "as_strong_train_classes"
EVAL_CLASSES_VAR = "as_strong_eval_classes"
STRONG_MIDS_CSV = "hf_dataset_gen/metadata/class_labels_indices_strong.csv"
WEAK_INDICES_CSV = "hf_dataset_gen/metadata/class_labels_indices.csv"
UPSTREAM_SOURCES = {
    "audioset_strong_447": (STRONG_CLASSES_PY, STRONG_MIDS_CSV),
    "audioset_weak_527": (WEAK_INDICES_CSV,),
    "audioset_strong_eval_416": (STRONG_CLASSES_PY, STRONG_MIDS_CSV),
}
"""Upstream files (paths in fschmid56/PretrainedSED) each vocabulary is built from."""


def read_vocab_tsv(path: Path) -> list[str]:
    """Display names, in index order, from a TSV with the header ``index, mid, display_name``."""
    from ptsed.io.tables import read_table

    rows = [row for _, row in read_table(path, ("index", "display_name"))]
    return [r["display_name"] for r in sorted(rows, key=lambda r: int(r["index"]))]


def parse_python_list(source: str, variable: str, filename: str = "<source>") -> list[str]:
    """The list of strings assigned to ``variable`` at the top level of Python ``source``.

    The source is parsed with :mod:`ast` and the list read with :func:`ast.literal_eval`; nothing is
    executed.

    Raises:
        CheckpointError: no such assignment, or its value is not a list of strings.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as err:
        raise CheckpointError(f"{filename} is not valid Python: {err}") from err
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == variable for t in targets):
            try:
                names = ast.literal_eval(value)
            except ValueError as err:
                raise CheckpointError(f"{variable} in {filename} is not a literal list") from err
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise CheckpointError(f"{variable} in {filename} is not a list of strings")
            return names
    raise CheckpointError(f"{filename} assigns no list named {variable}")


def parse_mid_csv(text: str, filename: str = "<csv>") -> dict[str, str]:
    """display name -> MID from CSV rows ``mid,display_name`` (a header row, if any, is skipped)."""
    out: dict[str, str] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row or row == ["mid", "display_name"] or row == ["mid", "name"]:
            continue
        if len(row) != 2:
            raise CheckpointError(f"{filename}: expected rows 'mid,display_name', got {row!r}")
        mid, name = (c.strip() for c in row)
        out[name] = mid
    return out


def parse_index_csv(text: str, filename: str = "<csv>") -> list[tuple[str, str]]:
    """(mid, display_name) in index order from a CSV with the header ``index,mid,display_name``."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"index", "mid", "display_name"} <= set(rows[0]):
        raise CheckpointError(f"{filename}: expected the header 'index,mid,display_name'")
    try:
        rows.sort(key=lambda r: int(r["index"]))
    except ValueError as err:
        raise CheckpointError(f"{filename}: non-integer index ({err})") from err
    if [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise CheckpointError(f"{filename}: the indices are not 0..{len(rows) - 1}")
    return [(r["mid"].strip(), r["display_name"].strip()) for r in rows]


def build_vocab_rows(vocab: str, sources: dict[str, str]) -> list[tuple[str, str]]:
    """(mid, display_name) in output order for ``vocab``, from upstream's files.

    Args:
        vocab: a key of :data:`VOCAB_FILES`.
        sources: upstream path (see :data:`UPSTREAM_SOURCES`) -> file text.

    Raises:
        CheckpointError: the files do not give exactly the expected classes, each with a MID.
    """
    if vocab in ("audioset_strong_447", "audioset_strong_eval_416"):
        variable = STRONG_CLASSES_VAR if vocab == "audioset_strong_447" else EVAL_CLASSES_VAR
        names = parse_python_list(sources[STRONG_CLASSES_PY], variable, STRONG_CLASSES_PY)
        mids = parse_mid_csv(sources[STRONG_MIDS_CSV], STRONG_MIDS_CSV)
        unknown = [n for n in names if n not in mids]
        if unknown:
            raise CheckpointError(
                f"{len(unknown)} class names of {variable} have no MID in {STRONG_MIDS_CSV} (first: {unknown[0]!r})"
            )
        rows = [(mids[n], n) for n in names]
    elif vocab == "audioset_weak_527":
        rows = parse_index_csv(sources[WEAK_INDICES_CSV], WEAK_INDICES_CSV)
    else:
        raise KeyError(f"unknown label vocabulary {vocab!r}; known: {', '.join(VOCAB_FILES)}")
    if len(rows) != VOCAB_SIZES[vocab]:
        raise CheckpointError(f"upstream's files give {len(rows)} classes for {vocab}, expected {VOCAB_SIZES[vocab]}")
    if len({n for _, n in rows}) != len(rows):
        raise CheckpointError(f"upstream's files give duplicate class names for {vocab}")
    return rows


def write_vocab_tsv(path: Path, rows: Sequence[tuple[str, str]]) -> Path:
    """Write (mid, display_name) rows as a TSV ``index, mid, display_name``, atomically."""
    bad = [n for m, n in rows for c in (m, n) if any(ch in c for ch in "\t\r\n")]
    if bad:
        raise CheckpointError(f"class name {bad[0]!r} contains a tab or a line break")
    lines = ["index\tmid\tdisplay_name"] + [f"{i}\t{m}\t{n}" for i, (m, n) in enumerate(rows)]
    from ptsed.core.files import atomic_write_text

    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def find_labels_file(vocab: str) -> Path | None:
    """The TSV of ``vocab`` in ``$PTSED_LABELS_DIR``, the shipped files or the cache, or ``None``."""
    return next((p for p in _candidates(vocab) if p.is_file()), None)


def _candidates(vocab: str) -> list[Path]:
    fname = VOCAB_FILES[vocab]
    out = []
    env = os.environ.get("PTSED_LABELS_DIR")
    if env:
        out.append(Path(env).expanduser() / fname)
    out.append(SHIPPED_DIR / fname)  # (a module attribute: tests point it elsewhere)
    out.append(labels_dir() / fname)
    return out


def get_labels(vocab: str, *, download: bool = True) -> list[str]:
    """Class names of a vocabulary in output order.

    Looks in ``$PTSED_LABELS_DIR``, then in the files shipped with ptsed, then in the cache, then downloads
    upstream's files (pinned commit).

    Raises:
        CheckpointError: when the vocabulary is nowhere to be found and cannot be downloaded.
    """
    if vocab not in VOCAB_FILES:
        raise KeyError(f"unknown label vocabulary {vocab!r}; known: {', '.join(VOCAB_FILES)}")
    path = find_labels_file(vocab)
    if path is None and download:
        path = fetch_labels(vocab)
    if path is not None:
        names = read_vocab_tsv(path)
        if len(names) != VOCAB_SIZES[vocab]:
            raise CheckpointError(f"label file {str(path)!r} has {len(names)} classes, expected {VOCAB_SIZES[vocab]}")
        return names
    raise CheckpointError(
        f"the label vocabulary {vocab!r} is not available (it ships with ptsed in {SHIPPED_DIR}, which is "
        f"missing from this installation): reinstall ptsed, download it with `ptsed download`, or set "
        f"PTSED_LABELS_DIR to a folder holding {VOCAB_FILES[vocab]}"
    )


def labels_url(upstream_path: str) -> str:
    """Address of an upstream file at the pinned commit (``$PTSED_LABELS_BASE_URL`` + path when set)."""
    base = os.environ.get(LABELS_BASE_ENV) or f"https://raw.githubusercontent.com/{UPSTREAM_REPO}/{UPSTREAM_COMMIT}"
    return f"{base.rstrip('/')}/{upstream_path}"


def fetch_labels(vocab: str) -> Path:
    """Path of the TSV (``index, mid, display_name``) of ``vocab`` in the cache, built if needed.

    The TSV is built from upstream's files at the pinned commit (:data:`ptsed.hub.labels.UPSTREAM_SOURCES`).

    Raises:
        CheckpointError: the files cannot be downloaded (one sentence that says how to supply the
            vocabulary) or do not give the expected classes.
    """
    if vocab not in VOCAB_FILES:
        raise KeyError(f"unknown label vocabulary {vocab!r}; known: {', '.join(VOCAB_FILES)}")
    dest = labels_dir() / VOCAB_FILES[vocab]
    if dest.is_file():
        return dest
    sources: dict[str, str] = {}
    for upstream_path in UPSTREAM_SOURCES[vocab]:
        url = labels_url(upstream_path)
        try:
            sources[upstream_path] = download_bytes(url).decode("utf-8")
        except DownloadError as err:
            raise CheckpointError(
                f"label vocabulary {vocab} is not in the cache and could not be downloaded from {url} "
                f"({err.reason}); set PTSED_LABELS_DIR to a folder holding {VOCAB_FILES[vocab]} "
                f"or place that file at {dest}"
            ) from err
        except UnicodeDecodeError as err:
            raise CheckpointError(f"{url} is not UTF-8 text ({err})") from err
    rows = build_vocab_rows(vocab, sources)
    return write_vocab_tsv(dest, rows)
