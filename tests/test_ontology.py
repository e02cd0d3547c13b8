"""The AudioSet ontology (``ptsed.ontology``) and ``--rollup``: parents get the maximum of their own and their
descendants' frame scores, and events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptsed import ontology
from ptsed.cli.main import main
from ptsed.core.errors import ConfigError
from ptsed.core.types import FrameScores
from ptsed.hub.labels import get_labels
from ptsed.postprocess.transforms import Rollup

WAV = Path(__file__).resolve().parents[1] / "examples" / "soundscape.wav"

TOY = [  # A -> B -> {C, D}; A -> E; F -> D (two parents)
    {"id": "/m/a", "name": "A", "child_ids": ["/m/b", "/m/e"]},
    {"id": "/m/b", "name": "B", "child_ids": ["/m/c", "/m/d"]},
    {"id": "/m/c", "name": "C", "child_ids": []},
    {"id": "/m/d", "name": "D", "child_ids": []},
    {"id": "/m/e", "name": "E", "child_ids": []},
    {"id": "/m/f", "name": "F", "child_ids": ["/m/d"], "restrictions": ["abstract"]},
]


def test_relations_on_a_toy_ontology() -> None:
    onto = ontology.Ontology(TOY)
    assert onto.children("A") == ["B", "E"] and onto.children("c") == []
    assert onto.parents("D") == ["B", "F"]
    assert onto.ancestors("D") == ["B", "F", "A"] and onto.ancestors("/m/c") == ["B", "A"]
    assert onto.descendants("A") == ["B", "E", "C", "D"]
    assert onto.mid("b") == "/m/b" and onto.name("/m/f") == "F" and onto.restrictions("F") == ["abstract"]
    with pytest.raises(ConfigError, match="unknown AudioSet class 'G'"):
        onto.children("G")


def test_shipped_ontology_answers_users_questions() -> None:
    assert len(ontology.load().mids) >= 632
    assert ontology.ancestors("Bark") == ["Dog", "Domestic animals, pets", "Animal"]
    assert "Bark" in ontology.children("Dog") and "Dog" in ontology.descendants("Animal")
    assert ontology.mid("Dog") == "/m/0bt9lr" and ontology.name("/m/0bt9lr") == "Dog"
    assert {"Bell", "Church bell", "Doorbell"} <= set(ontology.search("BELL"))
    # the strong vocabulary's name wins, the ontology's is accepted: one MID
    assert ontology.name("Duck") == "Ducks, geese, waterfowl" == ontology.name(ontology.mid("Ducks, geese, waterfowl"))
    assert ontology.parents("Beep, bleep") == ["Brief tone"]  # linked by name: its MIDs differ
    assert ontology.mid("/t/dd00138") == ontology.mid("Brief tone") == "/t/dd000138"
    with pytest.raises(ConfigError, match="did you mean 'Dog'"):
        ontology.mid("Dgo")


def test_rollup_of_the_447_adds_unique_parents() -> None:
    labels = get_labels("audioset_strong_447")
    out = Rollup().output_labels(labels)
    assert out[:447] == labels and len(out) == len(set(out)) > 447
    assert {"Sounds of things", "Musical instrument", "Natural sounds"} <= set(out[447:])  # parents the 447 lack


def test_parent_score_is_the_max_of_own_and_descendants() -> None:
    x = np.array([[0.2, 0.9, 0.1, 0.3], [0.6, 0.1, 0.4, 0.5]], dtype=np.float32)
    fs = FrameScores(x, np.array([0.0, 0.04, 0.08]), ["B", "C", "D", "E"])
    out = Rollup(ontology.Ontology(TOY))(fs)
    assert out.labels == ["B", "C", "D", "E", "A", "F"]
    np.testing.assert_allclose(out.scores[:, 0], [0.9, 0.6])  # B: max(B, C, D)
    np.testing.assert_allclose(out.scores[:, 4], [0.9, 0.6])  # A: max of all its descendants
    np.testing.assert_allclose(out.scores[:, 5], [0.1, 0.4])  # F: D only
    np.testing.assert_allclose(out.scores[:, 1:4], x[:, 1:4])  # leaves unchanged


def test_detect_rollup_reports_parent_events(capsys) -> None:  # noqa: ANN001
    assert main(["detect", str(WAV), "--model", "demo", "--rollup", "-q"]) == 0
    table = capsys.readouterr().out
    assert "Human voice" in table and "Speech" in table  # the demo model knows Speech, not its parents
    assert main(["detect", str(WAV), "--model", "demo", "--rollup", "--include", "Human voic"]) == 2
    assert "did you mean 'Human voice'" in capsys.readouterr().err
