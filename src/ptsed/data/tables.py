"""Small tab-separated tables of the data tools (class maps, file lists, weak labels): the readers and
writer of :mod:`ptsed.io.tables`, under the names the data tools use."""

from __future__ import annotations

from ptsed.io.tables import read_table as read_tsv
from ptsed.io.tables import table_columns as tsv_columns
from ptsed.io.tables import write_table as write_tsv

__all__ = ["read_tsv", "tsv_columns", "write_tsv"]
