"""One reader of small tables and lists (ptsed.io.tables) behind label lists, list files, class values and
the data tools' TSV tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptsed.core.errors import AudioError, ConfigError
from ptsed.io.tables import read_lines, read_rows, read_table, write_table


def test_lists_rows_and_tables_share_one_reader(tmp_path: Path) -> None:
    import ptsed.data.tables as data_tables
    from ptsed.hub.labels import read_vocab_tsv
    from ptsed.io.audio import list_audio_files
    from ptsed.postprocess.pipeline import read_class_values

    assert (data_tables.read_tsv, data_tables.write_tsv) == (read_table, write_table)
    lst = tmp_path / "files.txt"
    lst.write_text("# recordings\n\na.wav\n  sub/b.wav  \n")
    assert read_lines(lst) == ["a.wav", "sub/b.wav"]
    assert [s.name for s in list_audio_files(f"@{lst}")] == ["a.wav", "sub/b.wav"]
    with pytest.raises(AudioError, match="list file .*missing.txt' does not exist"):
        list_audio_files(f"@{tmp_path / 'missing.txt'}")
    values = tmp_path / "t.csv"
    values.write_text('label,value\n"Accelerating, revving, vroom",0.3\nDog,0.7\n')
    assert read_rows(values)[1] == ["Accelerating, revving, vroom", "0.3"]
    assert read_class_values(values) == {"Accelerating, revving, vroom": 0.3, "Dog": 0.7}
    with pytest.raises(ConfigError, match="threshold file .*nothing.tsv' does not exist"):
        read_class_values(tmp_path / "nothing.tsv", "threshold")
    vocab = write_table(tmp_path / "v.tsv", ["index", "mid", "display_name"], [[1, "/m/b", "Dog"], [0, "/m/a", "Cat"]])
    assert read_vocab_tsv(vocab) == ["Cat", "Dog"] and not list(tmp_path.glob(".*"))
    assert read_table(vocab, ("mid",))[0] == (2, {"index": "1", "mid": "/m/b", "display_name": "Dog"})
    with pytest.raises(ConfigError, match="lacks the column"):
        read_vocab_tsv(write_table(tmp_path / "bad.tsv", ["index", "name"], [[0, "x"]]))
