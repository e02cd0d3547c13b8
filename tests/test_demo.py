"""The shipped ``demo`` model: loads offline, lists its classes, detects on the example soundscape."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import ptsed
from conformance import SOUNDSCAPES
from ptsed.cli.main import main
from ptsed.core.errors import CheckpointError
from ptsed.models import demo
from train_fixtures import single_thread

_one_thread = pytest.fixture(autouse=True)(single_thread)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "soundscape.wav"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download attempt fails the test: the demo must work offline."""
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo model tried to use the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_demo_checkpoint_is_shipped_with_its_attribution():
    path = demo.demo_checkpoint_path()
    assert path.name == demo.DEMO_FILENAME and path.stat().st_size < 8e6
    folder = path.parent
    with (folder / "ATTRIBUTION.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert rows and all(r["package"] and r["license"] for r in rows)
    assert {r["side"] for r in rows} == {"train", "val"}
    assert "not an AudioSet model" in (folder / "README.md").read_text(encoding="utf-8")


def test_create_model_demo_lists_its_classes():
    model = ptsed.create_model("demo")
    labels = model.labels
    assert len(labels) == len(set(labels)) == 10
    assert model.name == demo.DEMO_NAME and model.arch == "frame_mn06"
    assert {"Speech", "Music", "Walk, footsteps", "Beep, bleep", "Cattle, bovinae"} <= set(labels)
    classes_tsv = SOUNDSCAPES / "classes.tsv"
    if classes_tsv.is_file():  # the names of the offline sources, all AudioSet-strong names
        with classes_tsv.open(encoding="utf-8") as f:
            assert set(labels) <= {r["label"] for r in csv.DictReader(f, delimiter="\t")}
    extra = model.checkpoint_extra
    assert "postprocess" not in extra  # the tuned values are kept for reference, not applied by detect
    assert set(extra["demo"]["tuned_postprocess"]["thresholds"]) == set(labels)
    assert "synthetic" in extra["demo"]["description"] and extra["demo"]["classes"] == labels
    state = torch.load(demo.demo_checkpoint_path(), weights_only=True)["state_dict"]
    floats = {k: v.dtype for k, v in state.items() if v.is_floating_point()}
    assert all(d == torch.float16 for k, d in floats.items() if k.startswith(("backbone.", "head.")))  # fp16 weights
    assert all(d == torch.float32 for k, d in floats.items() if k.startswith("frontend."))


def test_demo_detects_the_example_soundscape_offline(tmp_path: Path):
    out = tmp_path / "det"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["detect", str(EXAMPLE), "--model", "demo", "--output", str(out), "--format", "tsv,scores", "-q"])
    assert code == 0
    tsv = next(out.rglob("*.tsv"))
    assert tsv.read_text(encoding="utf-8").startswith("filename")


def test_demo_scores_are_higher_where_its_classes_sound():
    """Speech (5.1-10.5 s) and Music (10.6-15.9 s) of the example score higher inside their spans than outside."""
    from ptsed.io.audio import load_audio

    model = ptsed.create_model("demo")
    wave, sr = load_audio(EXAMPLE, model.sample_rate)
    x = torch.from_numpy(wave[: 10 * sr]).unsqueeze(0), torch.from_numpy(wave[10 * sr : 20 * sr]).unsqueeze(0)
    with torch.no_grad():
        probs = torch.cat([torch.sigmoid(model(w).strong_logits)[0] for w in x], dim=-1).numpy()  # (K, 500)
    t = (np.arange(probs.shape[1]) + 0.5) * 0.04
    for label, (on, off) in {"Speech": (5.1, 10.4), "Music": (10.7, 15.8)}.items():
        k = model.labels.index(label)
        inside = (t >= on) & (t < off)
        assert probs[k, inside].mean() > probs[k, ~inside].mean() + 0.05, label


def test_missing_demo_file_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(demo, "demo_dir", lambda: tmp_path)
    with pytest.raises(CheckpointError, match="demo_train.sh"):
        demo.demo_checkpoint_path()


def test_demo_data_holds_out_whole_recording_groups_for_the_test_side(tmp_path: Path):
    """recipes/demo_data.py --test: test soundscapes use only held-out groups (the validation groups of the
    two-way split, so the previous demo never trained on them); validation mixes training recordings."""
    import importlib.util
    import sys

    if not (SOUNDSCAPES / "manifest.tsv").is_file():
        pytest.skip("../shared/soundscapes is not available")
    recipes = Path(__file__).resolve().parent.parent / "recipes"
    sys.path.insert(0, str(recipes))
    try:
        spec = importlib.util.spec_from_file_location("demo_data_recipe", recipes / "demo_data.py")
        assert spec and spec.loader
        recipe = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(recipe)
    finally:
        sys.path.remove(str(recipes))
    out = tmp_path / "data"
    args = [str(SOUNDSCAPES), "--train", "6", "--val", "3", "--test", "4", "--output", str(out)]
    assert recipe.main(args) == 0
    manifest = {
        r["path"]: r for r in csv.DictReader((SOUNDSCAPES / "manifest.tsv").open(encoding="utf-8"), delimiter="\t")
    }
    two_way = recipe.make_split(list(manifest.values()), recipe.DEMO_CLASSES, 0.25, 0)
    with (out / "ATTRIBUTION.tsv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    groups = {side: {r["group"] for r in rows if r["side"] == side} for side in ("train", "val", "test")}
    assert groups["test"] and groups["train"] and groups["val"]
    assert not groups["test"] & (groups["train"] | groups["val"])
    assert all(two_way[r["path"]] == ("val" if r["side"] == "test" else "train") for r in rows)
    assert len(list((out / "test" / "audio").glob("*.wav"))) == 4
