"""Where ptsed keeps downloaded files: ``$PTSED_HOME``, else ``$XDG_CACHE_HOME/ptsed``, else ``~/.cache/ptsed``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of the cache (not created)."""
    home = os.environ.get("PTSED_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "ptsed"


def checkpoints_dir() -> Path:
    """Folder of downloaded checkpoints."""
    return cache_dir() / "checkpoints"


def labels_dir() -> Path:
    """Folder of downloaded label vocabularies."""
    return cache_dir() / "labels"
