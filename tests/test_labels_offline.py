"""Offline labels: the vocabularies, the eval clip list and the ontology ship inside the package.

A released checkpoint given with ``--checkpoint`` works with ``PTSED_LABELS_DIR`` unset and no network; the
shipped files equal the reference copies in ``../shared/labels`` (the download from upstream's files at the
pinned commit, ``test_hub_labels``, is the other cross-check).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tomllib
import torch

from conformance import LABELS, REPO, require_shared
from hub_testing import refused_url, register_tiny, tiny_released_state
from ptsed.cli.main import main
from ptsed.core.errors import CheckpointError
from ptsed.hub import fetch
from ptsed.hub import labels as L

SHIPPED = [*L.VOCAB_FILES.values(), L.EVAL_DURATIONS_FILE, "ontology.json"]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``PTSED_LABELS_DIR`` and every download address refused."""
    monkeypatch.delenv("PTSED_LABELS_DIR", raising=False)
    monkeypatch.setenv(fetch.LABELS_BASE_ENV, refused_url())
    monkeypatch.setenv(fetch.CHECKPOINT_BASE_ENV, refused_url())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_equal_the_reference_copies(name: str) -> None:
    reference = require_shared(LABELS) / name
    assert L.shipped_file(name).read_bytes() == reference.read_bytes()


def test_shipped_files_have_a_readme_naming_source_and_licences() -> None:
    text = (L.SHIPPED_DIR / "README.md").read_text()
    for needle in ("CC BY 4.0", "CC BY-SA 4.0", "d417d32", "1aa47e4", *SHIPPED):
        assert needle in text


def test_package_data_includes_the_label_files() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ptsed"]
    assert "assets/**/*" in data or "assets/labels/*" in data


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize("vocab", list(L.VOCAB_FILES))
def test_every_vocabulary_is_found_offline_without_env(vocab: str) -> None:
    names = L.get_labels(vocab)
    assert len(names) == L.VOCAB_SIZES[vocab] == len(set(names))
    assert L.find_labels_file(vocab) == L.shipped_file(L.VOCAB_FILES[vocab])


@pytest.mark.usefixtures("offline")
def test_without_the_shipped_files_the_message_says_where_they_come_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(L, "SHIPPED_DIR", Path("/nonexistent/ptsed/assets/labels"))
    with pytest.raises(CheckpointError) as info:
        L.get_labels("audioset_strong_447", download=False)
    assert "ships with ptsed" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.usefixtures("offline")
def test_released_checkpoint_detects_offline_with_no_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    register_tiny(monkeypatch)
    path = tmp_path / "Tiny_strong_1.pt"
    torch.save(tiny_released_state("as_strong"), path)
    wav = tmp_path / "a.wav"
    sf.write(wav, 0.1 * np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32), 16000)
    out = tmp_path / "out"
    assert main(["detect", str(wav), "--checkpoint", str(path), "-o", str(out), "-f", "scores", "-q"]) == 0
    header = next(iter((out / "scores").rglob("*.tsv"))).read_text().splitlines()[0].split("\t")
    assert header[2:] == L.read_vocab_tsv(L.shipped_file("audioset_strong_train_447.tsv"))


def test_eval_vocabulary_is_built_from_upstream_style_sources() -> None:
    def rows(name: str) -> list[tuple[str, str]]:
        lines = (require_shared(LABELS) / name).read_text(encoding="utf-8").splitlines()[1:]
        return [(ln.split("\t")[1], ln.split("\t")[2]) for ln in lines]

    eval_rows, train_rows = rows("audioset_strong_eval_416.tsv"), rows("audioset_strong_train_447.tsv")
    names = [n for _, n in eval_rows]
    mids = "\n".join(f'{m},"{n}"' for m, n in {*eval_rows, *train_rows})
    py = f"as_strong_train_classes = {[n for _, n in train_rows]!r}\nas_strong_eval_classes = {names!r}\n"
    sources = {L.STRONG_CLASSES_PY: py, L.STRONG_MIDS_CSV: mids}
    built = L.build_vocab_rows("audioset_strong_eval_416", sources)
    assert built == eval_rows
    assert L.build_vocab_rows("audioset_strong_447", sources) == train_rows
