"""Checkpoints given without a model name: the file's keys say the architecture, the stage and the student or
teacher form, whatever the file is called. Also the messages about checkpoints that mislead no more: a name
that disagrees with the file, a directory, code-carrying pickles, files of no known family.

Released-layout files are the synthetic ones of ``test_layouts`` (built from ``../shared/conformance``; every
tensor one broadcast value, so files stay small and full-size models load in a fraction of a second).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import ptsed
from conformance import require_shared
from hub_testing import TINY, register_tiny, tiny_released_state
from ptsed.cli.main import main
from ptsed.core.errors import CheckpointError, ConfigError
from ptsed.hub.checkpoint import UnsafePickleError, load_file
from ptsed.models.factory import save_checkpoint
from ptsed.models.layout import identify
from ptsed.models.zoo import ARCHS
from test_layouts import released_layout

IMPLEMENTED = [a for a in ARCHS if ARCHS[a].implemented]


def _stages() -> list[tuple[str, str]]:
    return [(a, t) for a in IMPLEMENTED for t in ARCHS[a].tags]


@pytest.mark.parametrize("teacher", [False, True], ids=["student", "teacher"])
@pytest.mark.parametrize(("arch", "tag"), _stages())
def test_keys_say_the_family_and_stage(arch: str, tag: str, teacher: bool) -> None:
    require_shared()
    state = released_layout(arch, tag, "meta", teacher=teacher)
    assert identify(state, "my_model.pt").name == f"{arch}.{tag}"


@pytest.mark.parametrize("arch", IMPLEMENTED)
def test_create_model_without_a_name_loads_a_released_file_under_any_name(arch: str, tmp_path: Path) -> None:
    require_shared()
    path = tmp_path / "my_model.pt"
    torch.save(released_layout(arch, "as_strong"), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no name given: nothing to disagree with
        model = ptsed.create_model(checkpoint_path=path)
    assert model.name == f"{arch}.as_strong" and model.arch == arch
    assert model.head_config.n_strong == 447 and not model.head_config.is_teacher and len(model.labels) == 447


def test_teacher_form_is_read_from_the_keys(tmp_path: Path) -> None:
    require_shared()
    path = tmp_path / "finetuned_teacher.pt"
    torch.save(released_layout("atst_frame", "as_weak", teacher=True), path)
    model = ptsed.create_model(checkpoint_path=path)
    assert model.name == "atst_frame.as_weak" and model.head_config.is_teacher
    assert model.head_config.rnn_dim == 2048 and model.head_config.rnn_layers == 2
    assert model.head_config.n_strong == 527


def test_stray_keys_in_a_recognised_file_are_reported_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    torch.save({"model.atst.blocks.0.norm1.weight": torch.ones(768), "optimizer.step": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match=f"^checkpoint '{path}': .*ATST-Frame file.*'optimizer.step'"):
        ptsed.create_model(checkpoint_path=path)


def test_mobilenet_widths_are_told_apart_by_their_shapes() -> None:
    require_shared()
    for arch in ("frame_mn06", "frame_mn10"):
        state = released_layout(arch, "as_strong", "meta")
        assert identify(state, "x.pt").name == f"{arch}.as_strong"
        assert identify(state, "x.pt", name=arch).name == f"{arch}.as_strong"


def test_a_file_of_no_known_family_gets_one_line_listing_the_families(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path = tmp_path / "other.pt"
    torch.save({"encoder.layer.0.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError) as info:
        ptsed.create_model(checkpoint_path=path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and "'encoder.layer.0.weight'" in msg
    assert all(arch in msg for arch in IMPLEMENTED) and "ATST-F" in msg
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    assert main(["detect", str(wav), "--checkpoint", str(path), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and "beats" in err and "frame_mn10" in err
    assert "unknown model ''" not in err


def test_cli_detect_and_embed_with_a_checkpoint_and_no_model(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    register_tiny(monkeypatch)
    path = tmp_path / "my_model.pt"
    torch.save(tiny_released_state("as_strong"), path)
    wav = tmp_path / "a.wav"
    sf.write(wav, 0.1 * np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32), 16000)
    out = tmp_path / "out"
    assert main(["detect", str(wav), "--checkpoint", str(path), "-o", str(out), "-f", "tsv", "-q"]) == 0
    assert (out / "events.tsv").is_file()
    assert str(path.resolve()) in (out / "ptsed_settings.json").read_text()  # --resume sees a changed file
    emb = tmp_path / "emb"
    assert main(["embed", str(wav), "--checkpoint", str(path), "-o", str(emb), "-q"]) == 0
    assert any(emb.iterdir())
    assert "warning" not in capsys.readouterr().err


def test_a_model_name_that_disagrees_with_the_file_is_warned_about(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    register_tiny(monkeypatch)
    released = tmp_path / "weights.pt"
    torch.save(tiny_released_state("as_strong"), released)
    tuned = save_checkpoint(ptsed.create_model(checkpoint_path=released), tmp_path / "finetuned.pt")
    for path in (released, tuned):
        with pytest.warns(UserWarning, match=f"model 'beats' does not match checkpoint '{path}'.*tiny"):
            model = ptsed.create_model("beats", checkpoint_path=path)
        assert model.arch == "tiny"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ptsed.create_model("tiny", checkpoint_path=tuned)  # the same architecture: no warning
        ptsed.create_model("anything", checkpoint_path=tuned)  # no model's name: a placeholder
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    assert main(["detect", str(wav), "--model", "beats", "--checkpoint", str(tuned), "-q"]) == 0
    err = capsys.readouterr().err
    assert err.count("does not match") == 1 and err.startswith("ptsed: warning: model 'beats' does not match")


def test_evaluate_and_finetune_take_a_checkpoint_without_model(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    from ptsed.cli import detect

    register_tiny(monkeypatch)
    path = tmp_path / "my_model.pt"
    torch.save(tiny_released_state("as_strong"), path)
    seen: list[object] = []
    monkeypatch.setattr("ptsed.evaluation.sources.make_source", lambda **kw: (seen.append(kw["model"]), 1 / 0))
    gt = tmp_path / "gt.tsv"
    gt.write_text("filename\tonset\toffset\tevent_label\na.wav\t0.0\t1.0\tSpeech\n")
    with pytest.raises(ZeroDivisionError):  # stops right after the model is built
        main(["evaluate", "--ground-truth", str(gt), "--checkpoint", str(path), "--audio", str(tmp_path),
              "--output", str(tmp_path / "eval")])  # fmt: skip
    assert seen and seen[0].arch == "tiny"
    assert main(["evaluate", "--ground-truth", str(gt), "--output", str(tmp_path / "e2")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    # finetune: the CLI names the file's model in the run's config
    assert detect.model_for_checkpoint(None, str(path)) == "tiny.as_strong"
    built: list[str] = []
    monkeypatch.setattr("ptsed.train.finetune.finetune", lambda config, *a, **k: built.append(config.model) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["finetune", "--checkpoint", str(path), "--train", str(tmp_path), "--output", str(tmp_path / "ft")])
    assert built == ["tiny.as_strong"]


def test_a_directory_is_named_as_such(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    with pytest.raises(CheckpointError, match="is a directory, not a checkpoint file$"):
        load_file(tmp_path)
    register_tiny(monkeypatch)
    save_checkpoint(ptsed.create_model("tiny", pretrained=False), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="is a directory.*keeps its model in '.*model.pt'"):
        ptsed.create_model(checkpoint_path=tmp_path)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    assert main(["detect", str(wav), "--checkpoint", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "does not exist" not in err


class _Payload:
    """Unpickling this would create ``marker`` (it never is: weights_only refuses it)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (str(self.marker),))


def test_code_carrying_pickles_are_named_as_such(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pt"
    torch.save({"model.atst.x": torch.zeros(1), "extra": _Payload(marker)}, path)
    with pytest.raises(UnsafePickleError) as info:
        ptsed.create_model(checkpoint_path=path)
    msg = str(info.value)
    assert "pickled Python objects that can carry code" in msg and "posix.mkdir" in msg and str(path) in msg
    assert "weights_only set to False" not in msg and "corrupted" not in msg and "\n" not in msg
    assert not marker.exists()
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    assert main(["detect", str(wav), "--checkpoint", str(path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "can carry code" in err and "will likely succeed" not in err and not marker.exists()


def test_a_name_without_markers_is_taken_on_trust(monkeypatch) -> None:  # noqa: ANN001
    from dataclasses import replace

    from ptsed.models import zoo

    register_tiny(monkeypatch)
    monkeypatch.setitem(zoo.ARCHS, "tiny", replace(TINY, markers=()))
    state = tiny_released_state("as_strong")
    with pytest.raises(CheckpointError, match="neither a ptsed checkpoint nor a released file"):
        identify(state, "x.pt")
    assert identify(state, "x.pt", name="tiny").arch.name == "tiny"
    with pytest.raises(ConfigError):
        ptsed.create_model()  # neither a name nor a file
