"""The demo model in `ptsed models` (table and --json) and the model line of `ptsed detect`'s run summary."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

import ptsed
from ptsed.cli.detect import describe_models
from ptsed.cli.main import main
from ptsed.models import table

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "soundscape.wav"


def test_models_lists_demo_as_list_pretrained_does(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json", "--no-profile"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ptsed.list_pretrained()
    demo = rows[-1]
    labels = ptsed.create_model("demo").labels
    assert demo["classes"] == len(labels) == 10 and demo["cached"]
    assert demo["stage"] == "demo" and Path(demo["path"]).is_file()
    assert main(["models", "--no-profile"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert any(line.split()[:1] == ["demo"] for line in table)


def test_demo_row_is_measured_on_the_shipped_checkpoint() -> None:
    row = table.demo_row(profile=True)
    assert row is not None
    model = ptsed.create_model("demo")
    assert row["params"] == sum(p.numel() for p in model.parameters())
    assert 1e8 < row["macs_per_10s"] < 1e9  # frame_mn06: about 0.4 G per 10 s


def test_demo_row_is_left_out_when_the_checkpoint_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from ptsed.core.errors import CheckpointError
    from ptsed.models import demo

    def missing() -> Path:
        raise CheckpointError("missing")

    monkeypatch.setattr(demo, "demo_checkpoint_path", missing)
    assert table.demo_row() is None


def test_detect_summary_names_the_model_and_its_classes(capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["detect", str(EXAMPLE), "--model", "demo"]) == 0
    err = capsys.readouterr().err
    assert "model demo: 10 classes (sounds of other classes are not reported)" in err.splitlines()


def test_describe_models_of_ensembles_checkpoints_and_replays() -> None:
    labels = [f"c{i}" for i in range(447)]
    two = SimpleNamespace(models=[SimpleNamespace(name="beats.as_strong"), SimpleNamespace(name="x")], labels=labels)
    args = argparse.Namespace(models=[["beats", None], [None, "runs/a/model.pt"]])
    assert describe_models(args, two).startswith("models beats, x: 447 classes")
    assert describe_models(argparse.Namespace(models=None), SimpleNamespace(labels=[])) == ""  # saved scores


def test_models_without_profile_loads_no_torch() -> None:
    """``ptsed models --no-profile`` reads the zoo table and the demo's card: no torch."""
    import subprocess
    import sys

    code = (
        "import sys; from ptsed.cli.main import main; rc = main(['models', '--no-profile', '--json']); "
        "assert rc == 0 and 'torch' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(out)[-1]["classes"] == len(ptsed.create_model("demo").labels)


def test_a_stale_demo_card_is_not_trusted(tmp_path: Path) -> None:
    """The card describes one file: another checkpoint beside it (a retrained demo) is read the slow way."""
    from ptsed.models import demo

    ckpt = tmp_path / demo.DEMO_FILENAME
    ckpt.write_bytes(b"first")
    demo.write_demo_card(ckpt, "frame_mn06", ["a", "b"])
    assert demo.demo_card(ckpt) == {
        "arch": "frame_mn06",
        "labels": ["a", "b"],
        "sha256": demo.demo_card(ckpt)["sha256"],
    }
    ckpt.write_bytes(b"retrained")
    assert demo.demo_card(ckpt) is None
