"""Getting released checkpoints and their label vocabularies into the cache, verified.

Cache layout (root: ``$PTSED_HOME``, else ``$XDG_CACHE_HOME/ptsed``, else ``~/.cache/ptsed``)::

    checkpoints/BEATs_strong_1.pt        the released file, under upstream's name
    checkpoints/BEATs_strong_1.pt.json   its record: sha256, size, mtime_ns, url, head form
    labels/audioset_strong_train_447.tsv index, mid, display_name (built from upstream's files)

Verification:

- on download: the byte count must equal ``Content-Length``; a pinned hash (``PretrainedSpec.sha256``)
  must match; the key/shape layout must match the model
  (the ``check_layout`` function the caller passes in: :func:`ptsed.models.layout.verify_file`). Only then
  is the file moved into place and its record written (its sha256: where the zoo pins none, the first
  download is the reference).
- on use: a file whose size and mtime equal its record is trusted without reading it; otherwise (and
  with ``verify=True``, ``ptsed download --verify``) it is re-hashed and its layout re-checked. A file
  whose hash differs from its record, or whose layout is wrong, is deleted and downloaded again.
- a file placed in the cache by hand (no record) is hashed and checked on first use, then recorded.

Download addresses can be redirected (mirrors, tests): ``$PTSED_CHECKPOINT_BASE_URL`` replaces the
release folder (the file name is appended) and ``$PTSED_LABELS_BASE_URL`` replaces
``https://raw.githubusercontent.com/fschmid56/PretrainedSED/<pinned commit>/`` (upstream paths are
appended).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptsed.core.errors import CheckpointError, PtsedError
from ptsed.hub import labels as vocab_mod
from ptsed.hub.cache import checkpoints_dir
from ptsed.hub.download import DownloadError, download_file, sha256_file
from ptsed.hub.labels import (  # noqa: F401  (label downloads live in hub.labels; names kept here)
    LABELS_BASE_ENV,
    UPSTREAM_COMMIT,
    UPSTREAM_REPO,
    fetch_labels,
    labels_url,
)

# The hub knows nothing about the zoo: a checkpoint entry is any object with these attributes (the zoo's
# ``PretrainedSpec``), and the layout check is passed in by the model layer (``ptsed.models.layout``).
PretrainedSpec = Any
"""A zoo entry: ``name``, ``filename``, ``url``, ``sha256`` and ``vocabulary`` are read."""
LayoutCheck = Callable[..., Any]
"""``check_layout(spec, path, source=None) -> head config``: raises ``CheckpointError`` on a wrong layout."""


CHECKPOINT_BASE_ENV = "PTSED_CHECKPOINT_BASE_URL"
RECORD_SUFFIX = ".json"


# -- addresses and paths ---------------------------------------------------------------------------------
def checkpoint_url(spec: PretrainedSpec) -> str:
    """Download address of ``spec``'s file (``$PTSED_CHECKPOINT_BASE_URL`` + file name when set)."""
    base = os.environ.get(CHECKPOINT_BASE_ENV)
    return f"{base.rstrip('/')}/{spec.filename}" if base else spec.url


def checkpoint_path(spec: PretrainedSpec) -> Path:
    """Where ``spec``'s file lives in the cache (it may not exist)."""
    return checkpoints_dir() / spec.filename


def record_path(path: Path) -> Path:
    """The record (sidecar JSON) of a cached checkpoint."""
    return path.with_name(path.name + RECORD_SUFFIX)


def is_cached(spec: PretrainedSpec) -> bool:
    """True when ``spec``'s file is in the cache (not re-verified)."""
    return checkpoint_path(spec).is_file()


# -- records ----------------------------------------------------------------------------------------------
def read_record(path: Path) -> dict[str, Any] | None:
    """The record of a cached file, or ``None`` when it is absent or unreadable."""
    try:
        rec = json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("sha256"), str) else None


def write_record(path: Path, sha256: str, *, url: str | None, head: Any = None) -> dict[str, Any]:
    """Record the hash, size and mtime of the cached file ``path`` (atomically)."""
    st = path.stat()
    rec = {
        "file": path.name,
        "sha256": sha256,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "url": url,
        "head": head.to_dict() if head is not None else None,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    dest = record_path(path)
    from ptsed.core.files import atomic_write_text

    atomic_write_text(dest, json.dumps(rec, indent=1) + "\n")
    return rec


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    record_path(path).unlink(missing_ok=True)


def check_cached(spec: PretrainedSpec, *, check_layout: LayoutCheck, full: bool = False) -> str | None:
    """Check ``spec``'s cached file; ``None`` when it is good, else one sentence saying what is wrong.

    Without ``full``, a file whose size and mtime match its record is trusted without reading it.
    Otherwise the file is re-hashed (compared with its record and ``spec.sha256``) and its layout re-checked with
    ``check_layout``; a good file gets a fresh record. The caller decides what to do with a bad file.
    """
    path = checkpoint_path(spec)
    rec = read_record(path)
    st = path.stat()
    known = spec.sha256.lower() if spec.sha256 else None
    if rec is not None and not full and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
        if known and rec["sha256"].lower() != known:
            return f"cached file {str(path)!r} has sha256 {rec['sha256']}, expected {known}"
        return None
    digest = sha256_file(path)
    if rec is not None and rec["sha256"].lower() != digest:
        return (
            f"cached file {str(path)!r} has changed since it was recorded (sha256 {digest}, recorded "
            f"{rec['sha256']}): it is corrupted"
        )
    if known and digest != known:
        return f"cached file {str(path)!r} has sha256 {digest}, expected {known}"
    try:
        head = check_layout(spec, path)
    except CheckpointError as err:
        return str(err)
    write_record(path, digest, url=rec.get("url") if rec else None, head=head)
    return None


# -- checkpoints ------------------------------------------------------------------------------------------
def _missing_message(spec: PretrainedSpec, url: str, reason: str) -> str:
    return (
        f"checkpoint {spec.name} ({spec.filename}) is not in the cache and could not be downloaded from {url} "
        f"({reason}); pass --checkpoint PATH (checkpoint_path= in Python) or place the file at "
        f"{checkpoint_path(spec)}"
    )


def fetch_checkpoint(
    spec: PretrainedSpec, progress: bool = True, *, check_layout: LayoutCheck, verify: bool = False
) -> Path:
    """Path of ``spec``'s released file in the cache, downloaded and verified if needed.

    The label vocabulary of the checkpoint's heads is fetched with it (see :func:`fetch_labels`).

    Args:
        spec: zoo entry (``get_pretrained_spec("beats")``).
        progress: progress bar on stderr (shown only on a terminal).
        check_layout: ``check_layout(spec, path, source=...)`` checks the file's key/shape layout
            (:func:`ptsed.models.layout.verify_file`; ``ptsed.models.layout.fetch_checkpoint`` passes it).
        verify: re-hash and re-check a cached file even when its record matches.

    Raises:
        CheckpointError: the file is missing and cannot be downloaded (one sentence that says how to
            supply it), or what arrived fails verification (it is deleted).
    """
    path = checkpoint_path(spec)
    if path.is_file():
        problem = check_cached(spec, check_layout=check_layout, full=verify)
        if problem is None:
            ensure_labels(spec)
            return path
        _remove(path)
        print(f"ptsed: {problem}; deleted it, downloading it again", file=sys.stderr)
    url = checkpoint_url(spec)
    heads: list[Any] = []

    def check(tmp: Path) -> None:
        heads.append(check_layout(spec, tmp, source=url))

    try:
        got = download_file(url, path, progress=progress, sha256=spec.sha256, check=check, desc=spec.filename)
    except DownloadError as err:
        raise CheckpointError(_missing_message(spec, url, err.reason)) from err
    except CheckpointError as err:
        raise CheckpointError(
            f"the file downloaded for {spec.name} failed verification and was deleted: {err}"
        ) from err
    write_record(path, got.sha256, url=url, head=heads[0] if heads else None)
    ensure_labels(spec)
    return path


# -- label vocabularies -----------------------------------------------------------------------------------
def ensure_labels(spec: PretrainedSpec) -> Path | None:
    """The label file of ``spec``'s heads (``$PTSED_LABELS_DIR``, cache, else downloaded); ``None`` without heads."""
    if spec.vocabulary is None:
        return None
    return vocab_mod.find_labels_file(spec.vocabulary) or fetch_labels(spec.vocabulary)


# -- several at once (``ptsed download``) ---------------------------------------------------------------
@dataclass
class FetchResult:
    """Outcome of fetching one checkpoint: its path and label file, or the error."""

    name: str
    path: Path | None = None
    labels: Path | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def fetch_many(
    specs: Sequence[PretrainedSpec], *, check_layout: LayoutCheck, verify: bool = False, progress: bool = True
) -> list[FetchResult]:
    """Fetch (and with ``verify`` fully re-check) every checkpoint, going on past failures."""
    results = []
    for spec in specs:
        res = FetchResult(spec.name)
        try:
            res.path = fetch_checkpoint(spec, progress=progress, check_layout=check_layout, verify=verify)
            res.labels = ensure_labels(spec)
        except PtsedError as err:
            res.error = str(err)
        results.append(res)
    return results
