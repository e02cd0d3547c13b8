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
