"""A lock on an output folder, so two runs never write into one folder at the same time.

:class:`FolderLock` is a context manager: it creates ``<folder>/.ptsed.lock`` exclusively, holding the
process id and host name of the holder, and removes it on exit. A lock whose holder has died on this host
(its process id no longer runs) is stale and taken over. A distributed run takes one lock, on rank 0.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from ptsed.core.errors import ConfigError

LOCK_NAME = ".ptsed.lock"


def _alive(pid: int) -> bool:
    """True when process ``pid`` runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, under another user
        return True
    return True


class FolderLock:
    """Exclusive use of an output folder by one run.

    Args:
        folder: the output folder (it must exist).
        what: what holds the lock, for messages (``"ptsed detect"``).

    Raises (on entering):
        ConfigError: another live run holds the folder (one line naming its process and the lock file),
            or the folder cannot be written.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "ptsed") -> None:
        self.path = Path(folder) / LOCK_NAME
        self.what = what
        self.held = False

    def _holder(self) -> dict | None:
        """The lock file's record; ``None`` when it is gone, ``{}`` when it cannot be read."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            rec = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return rec if isinstance(rec, dict) else {}

    def _stale(self, holder: dict) -> bool:
        if not holder:  # empty or unreadable: a holder killed while writing it, unless it is brand new
            with contextlib.suppress(OSError):
                return time.time() - self.path.stat().st_mtime > 10.0
            return False
        if holder.get("host") != socket.gethostname():
            return False
        return not _alive(int(holder.get("pid", 0)))

    def acquire(self) -> FolderLock:
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": self.what})
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    continue  # released meanwhile
                if self._stale(holder):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                who = f"process {holder['pid']} on {holder.get('host')}" if holder else "another run"
                raise ConfigError(
                    f"the output folder {str(self.path.parent)!r} is in use by {who} "
                    f"({holder.get('what', 'ptsed')}); wait for it to end, or remove {str(self.path)!r} "
                    "if no run is active"
                ) from None
            except OSError as err:
                if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise ConfigError(
                        f"cannot write to the output folder {str(self.path.parent)!r}: {err.strerror}"
                    ) from err
                from ptsed.io.results import write_error

                raise write_error(self.path, err) from err
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(record)
            self.held = True
            return self
        raise ConfigError(f"cannot take the lock {str(self.path)!r}: it keeps changing")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        holder = self._holder()
        if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
