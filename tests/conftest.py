"""Test configuration: point ptsed at ``../shared/labels`` and a private cache for every test."""

from __future__ import annotations

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
