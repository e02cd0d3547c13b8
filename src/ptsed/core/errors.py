"""Exceptions shared by the whole package.

Every error a user can cause derives from :class:`PtsedError`; the CLI prints its message (one clear
sentence that names the file or model and the problem) and exits non-zero, without a traceback.
"""

from __future__ import annotations


class PtsedError(Exception):
    """Base class of all errors ptsed raises on purpose."""


class CheckpointError(PtsedError):
    """A checkpoint is missing, cannot be downloaded, or does not have the expected layout."""


class AudioError(PtsedError):
    """An audio file cannot be read or holds invalid samples."""


class ConfigError(PtsedError, ValueError):
    """An argument or configuration value is invalid."""


class DiskFullError(PtsedError):
    """The disk filled up while a file was written."""


def is_disk_full(err: BaseException) -> bool:
    """``err`` is a full disk (``ENOSPC`` or ``EDQUOT``), also inside torch's zip writer."""
    import errno

    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) or "No space left" in str(err)
    return isinstance(err, RuntimeError) and "file write failed" in str(err)


def disk_full(path: object) -> DiskFullError:
    """The one-line error for a full disk while writing ``path``: its name and the free space (MiB) left there."""
    import shutil
    from pathlib import Path

    folder = Path(str(path)).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free in {folder}"
    except OSError:
        free = "free space unknown"
    return DiskFullError(f"the disk is full: cannot write {path} ({free}); free some space and run again")
