"""Label vocabularies: parsing upstream's files without executing them, and fetching them from a local
server. The upstream-like files are generated here from ``../shared/labels`` (nothing is copied)."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

import ptsed
from conformance import LABELS, require_shared
from hub_testing import Server, checkpoint_bytes, http_server, refused_url, register_tiny, tiny_released_state
from ptsed.core.errors import CheckpointError
from ptsed.hub import fetch
from ptsed.hub import labels as L
from ptsed.hub.cache import labels_dir
from ptsed.models import layout
from ptsed.models.zoo import UPSTREAM_COMMIT, get_pretrained_spec

pytestmark = pytest.mark.network

TRAP = 'raise SystemExit("this file was executed")\n'


def _read_tsv(name: str) -> list[tuple[str, str]]:
    with open(require_shared(LABELS) / name, newline="", encoding="utf-8") as fh:
        return [(r["mid"], r["display_name"]) for r in csv.DictReader(fh, delimiter="\t")]


def _classes_py(names: list[str]) -> str:
    """A Python file in upstream's style holding ``names`` as ``as_strong_train_classes``, with a trap."""
    items = ",\n".join(f"    {n!r}" for n in names)
    other = ",\n".join(f"    {n!r}" for n in sorted(names)[:5])
    return f"{TRAP}as_strong_train_classes = [\n{items}\n]\n\nas_strong_eval_classes = [\n{other}\n]\n"


def _strong_mids_csv(rows: list[tuple[str, str]]) -> str:
    """``mid,name`` rows without header, shuffled, with extra classes that are not in the 447."""
    extra = [(f"/m/extra{i}", f"Unused class {i}, not trained") for i in range(9)]
    rows = rows + extra
    random.Random(0).shuffle(rows)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _weak_csv(rows: list[tuple[str, str]]) -> str:
    """``index,mid,display_name`` with quoted names, rows shuffled (the index gives the order)."""
    indexed = [(i, m, n) for i, (m, n) in enumerate(rows)]
    random.Random(1).shuffle(indexed)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    buf.write("index,mid,display_name\n")
    w.writerows(indexed)
    return buf.getvalue()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """Upstream's three label files, built from the shared TSVs, under ``/raw/<upstream path>``."""
    strong = _read_tsv("audioset_strong_train_447.tsv")
    weak = _read_tsv("audioset_weak_527.tsv")
    with http_server() as srv:
        srv.serve(f"raw/{L.STRONG_CLASSES_PY}", _classes_py([n for _, n in strong]).encode())
        srv.serve(f"raw/{L.STRONG_MIDS_CSV}", _strong_mids_csv(strong).encode())
        srv.serve(f"raw/{L.WEAK_INDICES_CSV}", _weak_csv(weak).encode())
        monkeypatch.setenv(fetch.LABELS_BASE_ENV, srv.url + "/raw/")
        monkeypatch.delenv("PTSED_LABELS_DIR", raising=False)
        monkeypatch.setattr(L, "SHIPPED_DIR", Path("/nonexistent"))  # the download path, not the shipped files
        yield srv


def test_python_list_is_parsed_not_executed() -> None:
    source = TRAP + "x: list = ['a']\nnames = ['Dog', 'Bark, bay', \"Owl's hoot\"]\nnames_b = names\n"
    assert L.parse_python_list(source, "names") == ["Dog", "Bark, bay", "Owl's hoot"]
    assert L.parse_python_list(source, "x") == ["a"]


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("other = ['a']\n", "assigns no list named names"),
        ("names = ['a', len('b')]\n", "not a literal list"),
        ("names = ['a', 1]\n", "not a list of strings"),
        ("names = ('a',)\n", "not a list of strings"),
        ("names = [\n", "not valid Python"),
    ],
)
def test_python_list_errors(source: str, problem: str) -> None:
    with pytest.raises(CheckpointError, match=problem):
        L.parse_python_list(source, "names", "audioset_classes.py")


def test_default_addresses_are_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fetch.LABELS_BASE_ENV, raising=False)
    url = fetch.labels_url(L.STRONG_CLASSES_PY)
    assert (
        url
        == f"https://raw.githubusercontent.com/fschmid56/PretrainedSED/{UPSTREAM_COMMIT}/data_util/audioset_classes.py"
    )
    assert len(UPSTREAM_COMMIT) == 40


@pytest.mark.parametrize(
    ("vocab", "sources"),
    [
        (
            "audioset_strong_447",
            ["/raw/data_util/audioset_classes.py", "/raw/hf_dataset_gen/metadata/class_labels_indices_strong.csv"],
        ),
        ("audioset_weak_527", ["/raw/hf_dataset_gen/metadata/class_labels_indices.csv"]),
    ],
)
def test_vocabulary_is_built_from_upstream_files(server: Server, vocab: str, sources: list[str]) -> None:
    path = fetch.fetch_labels(vocab)
    assert path == labels_dir() / L.VOCAB_FILES[vocab]
    assert path.read_bytes() == (LABELS / L.VOCAB_FILES[vocab]).read_bytes()
    assert server.requests == sources
    names = L.get_labels(vocab)
    assert len(names) == L.VOCAB_SIZES[vocab] and len(set(names)) == len(names)
    assert server.requests == sources  # cache hit


def test_labels_dir_takes_precedence(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTSED_LABELS_DIR", str(require_shared(LABELS)))
    assert L.get_labels("audioset_strong_447")[0] == "Accelerating, revving, vroom"
    assert L.find_labels_file("audioset_weak_527") == LABELS / "audioset_weak_527.tsv"
    assert server.requests == []


def test_labels_come_with_the_checkpoint(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register_tiny(monkeypatch)
    monkeypatch.setenv(fetch.CHECKPOINT_BASE_ENV, server.url + "/release")
    server.serve("release/Tiny_as_weak.pt", checkpoint_bytes(tiny_released_state("as_weak"), tmp_path))
    layout.fetch_checkpoint(get_pretrained_spec("tiny.as_weak"), progress=False)
    assert server.requests == ["/release/Tiny_as_weak.pt", f"/raw/{L.WEAK_INDICES_CSV}"]
    monkeypatch.setenv(fetch.LABELS_BASE_ENV, refused_url())  # from now on offline
    model = ptsed.create_model("tiny.as_weak", progress=False)
    assert model.labels == [n for _, n in _read_tsv("audioset_weak_527.tsv")]


def test_name_without_mid_is_an_error(server: Server) -> None:
    strong = _read_tsv("audioset_strong_train_447.tsv")
    server.serve(f"raw/{L.STRONG_MIDS_CSV}", _strong_mids_csv(strong[1:]).encode())
    with pytest.raises(CheckpointError, match="1 class names of as_strong_train_classes have no MID"):
        fetch.fetch_labels("audioset_strong_447")
    assert not (labels_dir() / L.VOCAB_FILES["audioset_strong_447"]).exists()


def test_wrong_class_count_is_an_error(server: Server) -> None:
    strong = _read_tsv("audioset_strong_train_447.tsv")
    server.serve(f"raw/{L.STRONG_CLASSES_PY}", _classes_py([n for _, n in strong][:-1]).encode())
    with pytest.raises(CheckpointError, match="446 classes for audioset_strong_447, expected 447"):
        fetch.fetch_labels("audioset_strong_447")


def test_offline_labels_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PTSED_LABELS_DIR", raising=False)
    monkeypatch.setattr(L, "SHIPPED_DIR", Path("/nonexistent"))
    base = refused_url()
    monkeypatch.setenv(fetch.LABELS_BASE_ENV, base)
    with pytest.raises(CheckpointError) as info:
        L.get_labels("audioset_weak_527")
    msg = str(info.value)
    assert msg.startswith(
        f"label vocabulary audioset_weak_527 is not in the cache and could not be downloaded from "
        f"{base}/{L.WEAK_INDICES_CSV} (connection refused); set PTSED_LABELS_DIR"
    )
    assert str(labels_dir() / "audioset_weak_527.tsv") in msg and "\n" not in msg
