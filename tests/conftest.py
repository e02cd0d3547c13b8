"""Test configuration: point ptsed at ``../shared/labels`` and a private cache for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from conformance import LABELS

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("ptsed_home")
    monkeypatch.setenv("PTSED_HOME", str(home))
    if LABELS.exists():
        monkeypatch.setenv("PTSED_LABELS_DIR", str(LABELS))


@pytest.fixture(scope="session", autouse=True)
def _repository_root_stays_clean():
    """Tests write only to temporary folders: fail when a test session leaves new files in the repository root
    or the working directory (as Lightning's default checkpoint folder ``checkpoints/`` did)."""
    folders = {Path(__file__).resolve().parent.parent, Path.cwd().resolve()}
    before = {folder: set(os.listdir(folder)) for folder in folders}
    yield
    for folder, names in before.items():
        new = sorted(n for n in set(os.listdir(folder)) - names if not n.startswith(".") and n != "__pycache__")
        assert not new, f"the tests left {', '.join(new)} in {folder}; tests must write to temporary folders"
