"""Small tab-separated tables of the data tools (class maps, file lists, weak labels); no heavy imports."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from ptsed.core.errors import ConfigError


def read_tsv(path: str | Path, required: Sequence[str] = ()) -> list[tuple[int, dict[str, str]]]:
    """Rows of a tab-separated file with a header, as ``(line number, {column: stripped value})``.

    Raises:
        ConfigError: the file is missing or lacks one of the ``required`` columns (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} does not exist or is not a file")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise ConfigError(
                f"{str(path)!r} lacks the column(s) {', '.join(missing)}; its header is {' '.join(header) or 'empty'}"
            )
        return [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}) for row in reader]


def tsv_columns(path: str | Path) -> list[str]:
    """The header of a tab-separated file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} does not exist or is not a file")
    with path.open(encoding="utf-8") as f:
        return [c.strip() for c in f.readline().rstrip("\r\n").split("\t")]


def write_tsv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    """Write a tab-separated file with a header row (``\\n`` line ends)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path
