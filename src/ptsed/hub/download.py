"""Atomic HTTP downloads with a progress bar, a size check and a sha256 computed on the way.

A download streams into a temporary file in the destination folder (``.<name>.<pid>@<host>.<random>.part``),
checks that the number of bytes received equals the ``Content-Length`` the server announced, runs an
optional check on the finished temporary file, and only then moves it into place with :func:`os.replace`.
On any failure, ``KeyboardInterrupt`` included, the temporary file is removed: the destination either
holds a complete, checked file or nothing. A process killed outright (``kill -9``, power loss) cannot
clean up: the next download into the folder removes such stale ``.part`` files (their writer, named in
the file name, is dead on this host, or they have not been written to for :data:`STALE_PART_S`).

Timeouts: :data:`TIMEOUT_S` bounds each wait for the server (connecting, or the next bytes); the whole
transfer must end within ``$PTSED_DOWNLOAD_DEADLINE_S`` seconds (default :data:`DEADLINE_S`; ``0``: no
deadline), so a server that trickles bytes cannot hold a download forever.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import secrets
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ptsed.core.errors import CheckpointError

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0
"""Seconds to wait for the server to answer or to send the next chunk."""
DEADLINE_ENV = "PTSED_DOWNLOAD_DEADLINE_S"
DEADLINE_S = 4 * 3600.0
"""Default time limit of one whole download in seconds (released files are 20 MB to 1.2 GB)."""
STALE_PART_S = 3600.0
"""A ``.part`` file not written to for this many seconds is a leftover of a killed download."""
_PART = re.compile(r"^\..+?\.(?:(\d+)@([^.@/]*)\.)?[0-9a-f]{12}\.part$")


class DownloadError(CheckpointError):
    """A download failed; ``url`` and ``reason`` (a short phrase, no trailing full stop) say why."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"download of {url} failed: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class Downloaded:
    """A finished download: where it is, its size in bytes and its sha256 (hex)."""

    path: Path
    size: int
    sha256: str


def _reason(err: BaseException) -> str:
    """A short human-readable reason for a failed request."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}".strip()
    if isinstance(err, urllib.error.URLError):
        inner = err.reason
        if isinstance(inner, BaseException):
            return _reason(inner)
        return str(inner)
    if isinstance(err, socket.gaierror):
        return f"the host name could not be resolved ({err.strerror or err}); is the network down?"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, ConnectionResetError):
        return "the connection was reset mid-way"
    if isinstance(err, TimeoutError):
        return "the connection timed out"
    text = str(err).strip()
    return f"{err.__class__.__name__}: {text}" if text else err.__class__.__name__


def deadline_s() -> float | None:
    """The time limit of one whole download in seconds (``$PTSED_DOWNLOAD_DEADLINE_S``, else
    :data:`DEADLINE_S`); ``None`` when it is ``0`` (no limit)."""
    text = os.environ.get(DEADLINE_ENV, "").strip()
    try:
        value = float(text) if text else DEADLINE_S
    except ValueError:
        raise CheckpointError(f"{DEADLINE_ENV}={text!r} is not a number of seconds") from None
    if not value >= 0:  # also NaN
        raise CheckpointError(f"{DEADLINE_ENV}={text!r} must be 0 (no limit) or a positive number of seconds")
    return value or None


class _DeadlineExceeded(Exception):
    pass


def stream(url: str, out: BinaryIO, *, progress: bool = True, desc: str | None = None) -> tuple[int, str]:
    """Write the body of ``url`` to ``out``; return (bytes written, sha256 hex).

    Args:
        url: ``http(s)://`` or ``file://`` address.
        out: binary file opened for writing.
        progress: show a tqdm bar on stderr (only when stderr is a terminal).
        desc: label of the progress bar (defaults to the last part of the URL).

    Raises:
        DownloadError: the request failed (HTTP error, refused or broken connection, timeout), the
            transfer did not finish within :func:`deadline_s` (checked whenever bytes arrive; a silent
            server is cut off after :data:`TIMEOUT_S`), or the server sent fewer or more bytes than its
            ``Content-Length``.
    """
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    received = 0
    limit = deadline_s()
    end = time.monotonic() + limit if limit is not None else None
    request = urllib.request.Request(url, headers={"User-Agent": "ptsed"})
    try:
        timeout = TIMEOUT_S if limit is None else min(TIMEOUT_S, limit)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            read = getattr(response, "read1", response.read)  # read1: what has arrived, not a full chunk
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None and length.strip().isdigit() else None
            with tqdm(
                total=expected,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc or url.rsplit("/", 1)[-1],
                file=sys.stderr,
                disable=None if progress else True,  # None: off when stderr is not a terminal
                leave=False,
            ) as bar:
                while True:
                    if end is not None and time.monotonic() > end:
                        raise _DeadlineExceeded
                    chunk = read(CHUNK_BYTES)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except http.client.IncompleteRead as err:
        received += len(err.partial)
    except _DeadlineExceeded:
        raise DownloadError(
            url, f"it did not finish within {limit:g} s ({received} bytes arrived; {DEADLINE_ENV} sets the limit)"
        ) from None
    except Exception as err:  # HTTPError, URLError, refused or reset connections, timeouts, ...
        raise DownloadError(url, _reason(err)) from err
    if expected is not None and received != expected:
        raise DownloadError(
            url, f"the server announced {expected} bytes but sent {received}: the transfer was cut short"
        )
    return received, digest.hexdigest()


def download_file(
    url: str,
    dest: str | Path,
    *,
    progress: bool = True,
    sha256: str | None = None,
    check: Callable[[Path], None] | None = None,
    desc: str | None = None,
) -> Downloaded:
    """Download ``url`` to ``dest`` atomically.

    Args:
        url: address of the file.
        dest: final path; its folder is created.
        progress: show a progress bar on stderr (only on a terminal).
        sha256: expected hash (hex); a mismatch fails the download.
        check: called with the finished temporary file before it is moved into place; it raises to
            reject the file (e.g. a layout check), and the file is then deleted.
        desc: label of the progress bar.

    Returns:
        :class:`Downloaded` with the final path, the size in bytes and the sha256.

    Raises:
        DownloadError: the transfer failed or was incomplete, or the hash differs.
        Whatever ``check`` raises. In every case nothing is left at ``dest`` or in its folder.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(dest.parent)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}@{_host()}.{secrets.token_hex(6)}.part")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)  # permissions as the umask says
    try:
        with os.fdopen(fd, "wb") as fh:
            size, digest = stream(url, fh, progress=progress, desc=desc or dest.name)
        if sha256 is not None and digest.lower() != sha256.lower():
            raise DownloadError(url, f"its sha256 is {digest}, expected {sha256} (the file is corrupted)")
        if check is not None:
            check(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Downloaded(dest, size, digest)


def _host() -> str:
    """This machine's name as it appears in ``.part`` file names (no dots)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: keep the file
    return True


def remove_stale_parts(folder: Path, *, now: float | None = None) -> list[Path]:
    """Remove the ``.part`` files of killed downloads from ``folder``; return those removed.

    A ``.part`` file (this module's naming only) is stale when the process named in it is dead on this
    host, or when it has not been written to for :data:`STALE_PART_S` seconds (a writer on another host
    of a shared cache, or a file named before the writer was recorded). A running download's file is
    left alone.
    """
    removed = []
    now = time.time() if now is None else now
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for path in entries:
        match = _PART.match(path.name)
        if match is None:
            continue
        pid, host = match.group(1), match.group(2)
        try:
            idle = now - path.stat().st_mtime
        except OSError:
            continue
        if (pid is not None and host == _host() and not _alive(int(pid))) or idle > STALE_PART_S:
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


def download_bytes(url: str) -> bytes:
    """The body of ``url`` (small files only), with the same checks as :func:`stream`."""
    import io

    buf = io.BytesIO()
    stream(url, buf, progress=False)
    return buf.getvalue()


def sha256_file(path: str | Path) -> str:
    """sha256 (hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
