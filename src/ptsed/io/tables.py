"""The one reader of small text tables and lists: label lists, per-class values, file lists, TSV tables.

- :func:`read_lines`: one entry per line (class names for ``--include``, files of a list file), blank
  lines skipped, ``#`` comments too where asked.
- :func:`read_rows`: rows of a tab- or comma-separated table (the separator is the file's: a tab on any
  line makes it tab-separated), quoted fields as the csv module reads them.
- :func:`read_table`: a tab-separated table with a header, as ``(line number, {column: value})``, with
  the columns it must have checked (class maps, weak labels, file lists, label vocabularies).

Every reader names the file in one line when it is missing, not UTF-8 text or lacks a column.
Larger formats have their own readers: score tables (:mod:`ptsed.io.scores_tsv`), event tables
(:func:`ptsed.io.results.read_events`) and annotations.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from ptsed.core.errors import ConfigError, PtsedError


def read_text(path: str | os.PathLike, what: str = "file", error: type[PtsedError] = ConfigError) -> str:
    """The UTF-8 text of ``path``; ``error`` naming ``what`` and the file when it is missing or not text."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {str(path)!r} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"cannot read {what} {str(path)!r}: {err}") from err


def read_lines(
    path: str | os.PathLike, what: str = "list file", *, comments: bool = True, error: type[PtsedError] = ConfigError
) -> list[str]:
    """The stripped, non-blank lines of a text file (with ``comments``, lines starting with ``#`` are skipped)."""
    lines = (ln.strip() for ln in read_text(path, what, error).splitlines())
    return [ln for ln in lines if ln and not (comments and ln.startswith("#"))]


def read_rows(path: str | os.PathLike, what: str = "table") -> list[list[str]]:
    """Rows of a tab- or comma-separated file (tab when any line holds one); blank and ``#`` lines skipped."""
    lines = read_lines(path, what)
    delimiter = "\t" if any("\t" in ln for ln in lines) else ","
    return list(csv.reader(lines, delimiter=delimiter))


def table_columns(path: str | os.PathLike) -> list[str]:
    """The header of a tab-separated file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} does not exist or is not a file")
    with path.open(encoding="utf-8") as f:
        return [c.strip() for c in f.readline().rstrip("\r\n").split("\t")]


def read_table(
    path: str | os.PathLike, required: Sequence[str] = (), delimiter: str = "\t"
) -> list[tuple[int, dict[str, str]]]:
    """Rows of a separated file with a header, as ``(line number, {column: stripped value})``.

    Raises:
        ConfigError: the file is missing or lacks one of the ``required`` columns (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} does not exist or is not a file")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise ConfigError(
                f"{str(path)!r} lacks the column(s) {', '.join(missing)}; its header is {' '.join(header) or 'empty'}"
            )
        return [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}) for row in reader]


def write_table(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    """Write a tab-separated file with a header row (``\\n`` line ends), atomically."""
    import io

    from ptsed.core.files import atomic_write_text

    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return Path(path)


__all__ = ["read_lines", "read_rows", "read_table", "read_text", "table_columns", "write_table"]
