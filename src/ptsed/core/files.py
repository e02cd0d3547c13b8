"""Atomic file writes: the one way ptsed replaces a file, so a crash or a full disk never leaves half of one.

Every writer (results, checkpoints, profiles, caches, label files) goes through :func:`atomic_write`: the
content goes to a hidden temporary name beside the target, unique to the process and the call
(:func:`temporary_name`), which replaces the target with :func:`os.replace` only when the block ends
without an error. Downloads stream into their own ``.part`` files (:mod:`ptsed.hub.download`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from ptsed.core.errors import PtsedError, disk_full, is_disk_full


def write_error(path: str | os.PathLike, err: BaseException) -> PtsedError:
    """A one-line error for a failed write: a full disk (also torch's zip writer's) names the file and the
    free space."""
    if is_disk_full(err):
        return disk_full(path)
    return PtsedError(f"cannot write {path}: {(getattr(err, 'strerror', None) or str(err)).lower()}")


def temporary_name(path: Path) -> Path:
    """A hidden temporary name beside ``path``, unique to this process and call, with the same suffix
    (numpy and h5py keep it): ``.name.<pid>-<random>.tmp.suffix``."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Write ``path`` through a unique temporary file that replaces it when the block ends without error.

    Yields the temporary path to write. On an error the temporary file is removed (``path`` stays as it
    was); an ``OSError`` becomes a one-line :class:`PtsedError` (:func:`write_error`: a full disk names
    the file and the free space).
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) or is_disk_full(err):
            raise write_error(path, err) from err
        raise


def atomic_write_text(path: str | os.PathLike, text: str | Iterable[str]) -> None:
    """Write a text file (a string, or pieces written one after another) through a temporary file, so a
    crash never leaves half a file (:func:`atomic_write`)."""
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.writelines([text] if isinstance(text, str) else text)


__all__ = ["atomic_write", "atomic_write_text", "temporary_name", "write_error"]
