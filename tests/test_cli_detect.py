"""``ptsed detect`` / ``ptsed embed`` end to end with a tiny model (patched into create_model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import ptsed.models.factory as factory
from ptsed.cli.main import main
from tiny_models import tiny_model


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``--model tiny`` builds a tiny model; returns the list of names built (one per model load)."""
    built: list[str] = []
    real = factory.create_model

    def create(name: str, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if name.startswith("tiny"):
            built.append(name)
            return tiny_model(context=3, name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(factory, "create_model", create)
    return built


def _tone(seconds: float, sr: int = 16_000, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    x = rng.standard_normal((n, channels)) * (0.05 + 0.4 * (np.arange(n)[:, None] / sr % 4 < 1.5))
    return x[:, 0] if channels == 1 else x


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    root = tmp_path / "rec"
    (root / "site1").mkdir(parents=True)
    sf.write(root / "a.wav", _tone(12.3), 16_000)
    sf.write(root / "site1" / "b.flac", _tone(4.0, sr=44_100, channels=2, seed=1), 44_100)
    sf.write(root / "site1" / "short.wav", _tone(0.1, seed=2), 16_000)
    return root


def test_detect_folder_all_formats(tiny: list[str], recordings: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    (recordings / "broken.wav").write_bytes(b"RIFF....WAVEnot really")
    out = tmp_path / "out"
    fmts = "tsv,csv,json,audacity,raven,scores,scores_filtered,npz,h5"
    code = main(["detect", str(recordings), "--model", "tiny", "--output", str(out), "--format", fmts,
                 "--threshold", "0.6", "--median-filter", "0.2", "--batch-size", "4"])  # fmt: skip
    assert code == 1  # one file failed
    err = capsys.readouterr().err
    assert "broken.wav" in err and "3 file(s) processed" in err and "1 failed" in err
    lines = (out / "events.tsv").read_text().splitlines()
    assert lines[0] == "filename\tonset\toffset\tevent_label"
    names = {ln.split("\t")[0] for ln in lines[1:]}
    assert names <= {"a.wav", "site1/b.flac", "site1/short.wav"} and "a.wav" in names
    for rel in ["scores/a.tsv", "scores_filtered/site1/b.tsv", "frames/site1/short.npz", "audacity/a.txt",
                "raven/site1/b.selections.txt", "events.csv", "events.json", "frame_scores.h5"]:  # fmt: skip
        assert (out / rel).is_file(), rel
    short = (out / "scores" / "site1" / "short.tsv").read_text().splitlines()
    assert len(short) == 1 + 3 and short[-1].split("\t")[1] == "0.1"  # 0.1 s: 3 frames, the last one cut at 0.1 s
    doc = json.loads((out / "events.json").read_text())
    assert doc["settings"]["postprocess"]["threshold"] == 0.6
    manifest = [json.loads(x) for x in (out / "ptsed_manifest.jsonl").read_text().splitlines()]
    assert manifest[0]["record"] == "start" and manifest[-1]["record"] == "end"
    assert manifest[-1]["status"] == "finished" and "events.tsv" in manifest[-1]["tables"]
    assert {m["name"]: m["ok"] for m in manifest[1:-1]} == {
        "a.wav": True,
        "broken.wav": False,
        "site1/b.flac": True,
        "site1/short.wav": True,
    }


def test_resume_skips_done_files_and_redoes_on_new_settings(tiny: list[str], recordings: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["detect", str(recordings), "--model", "tiny", "--output", str(out), "--format", "tsv,scores", "-q"]
    assert main(args) == 0
    first = (out / "events.tsv").read_text()
    stamp = (out / "scores" / "a.tsv").stat().st_mtime_ns
    (out / "scores" / "site1" / "b.tsv").unlink()  # one output lost: only that file is redone
    calls: list[int] = []
    import ptsed.inference.predictor as pred

    real_forward = pred.Predictor._forward

    def counting(self, batch, task, layer):  # noqa: ANN001, ANN202
        calls.append(batch.shape[0])
        return real_forward(self, batch, task, layer)

    pred.Predictor._forward = counting
    try:
        assert main([*args, "--resume"]) == 0
        assert sum(calls) == 1  # b.flac (4 s) is one window
        assert (out / "scores" / "a.tsv").stat().st_mtime_ns == stamp
        assert (out / "events.tsv").read_text() == first  # combined table rebuilt from the manifest
        calls.clear()
        assert main([*args, "--resume", "--threshold", "0.3"]) == 2  # other settings: refused, never mixed
        assert sum(calls) == 0 and (out / "events.tsv").read_text() == first
        assert main([*args, "--overwrite", "--threshold", "0.3"]) == 0  # the old outputs go first
        assert sum(calls) > 3
    finally:
        pred.Predictor._forward = real_forward


def test_prints_table_without_output(tiny: list[str], recordings: Path, capsys) -> None:  # noqa: ANN001
    assert main(["detect", str(recordings / "a.wav"), "--model", "tiny", "--threshold", "0.5", "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["filename", "onset", "offset", "score", "event_label"]
    assert len(out) > 1 and all(line.startswith("a.wav") for line in out[1:])
    onsets = [float(line.split()[1]) for line in out[1:]]
    assert onsets == sorted(onsets)


def test_ensemble_and_replay_from_npz(tiny: list[str], recordings: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    wav = str(recordings / "a.wav")
    args = ["detect", wav, "--model", "tiny", "--model", "tiny2", "--output", str(out), "--format", "npz,tsv", "-q"]
    assert main(args) == 0
    assert tiny == ["tiny", "tiny2"]
    from ptsed.io.results import read_events, read_frame_scores
    from ptsed.postprocess.pipeline import PostProcessor

    def spans(events: list) -> list[tuple]:
        return [(e.filename, e.onset, e.offset, e.label) for e in events]

    saved = read_frame_scores(out / "frames" / "a.npz")[0]
    assert spans(read_events(out / "events.tsv")) == spans(PostProcessor()(saved, "a.wav")[1])
    # post-processing again from the saved scores, no model
    assert main(["detect", str(out / "frames"), "--threshold", "0.9", "--output", str(tmp_path / "re"), "-q"]) == 0
    redone = read_events(tmp_path / "re" / "events.tsv")
    assert redone and spans(redone) == spans(PostProcessor(threshold=0.9)(saved, "a.wav")[1])
    assert len(tiny) == 2


def test_plot(tiny: list[str], recordings: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    assert main(["detect", str(recordings / "a.wav"), "--model", "tiny", "--output", str(out), "--plot", "-q"]) == 0
    png = out / "plots" / "a.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_embed(tiny: list[str], recordings: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb"
    code = main(["embed", str(recordings), "--model", "tiny", "--layer", "0", "--output", str(out), "-q"])
    assert code == 0
    emb = np.load(out / "embeddings" / "a.npy")
    assert emb.shape == (int(np.ceil(12.3 / 0.04)), 16)
    assert np.load(out / "embeddings" / "site1" / "short.npy").shape == (3, 16)


def test_interface_and_errors(tiny: list[str], recordings: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    code = main(["detect", str(recordings / "a.wav"), "--model", "tiny", "--output", str(out),
                 "--format", "tsv,scores", "--threshold", "0.5", "--median-filter", "0.36",
                 "--upstream-chunking", "-q"])  # fmt: skip
    assert code == 0
    scores = (out / "scores" / "a.tsv").read_text().splitlines()
    assert len(scores) == 1 + 308 and scores[-1].split("\t")[1] == "12.3"  # padded frames left out of scores
    assert main(["detect", str(recordings / "a.wav")]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "missing.wav"), "--model", "tiny"]) == 2
    assert main(["detect", str(recordings / "a.wav"), "--model", "tiny", "--format", "xls"]) == 2
    assert "unknown output format" in capsys.readouterr().err


def test_real_arch_from_a_ptsed_checkpoint_without_model_name(recordings: Path, tmp_path: Path) -> None:
    """A zoo architecture (1 block) saved in ptsed's format: ``--checkpoint`` alone names the model."""
    import ptsed
    from ptsed.models.factory import save_checkpoint

    model = ptsed.create_model("atst_frame", pretrained=False, depth=1)
    ckpt = save_checkpoint(model, tmp_path / "atst_depth1.pt")
    out = tmp_path / "out"
    code = main(["detect", str(recordings / "site1"), "--checkpoint", str(ckpt), "--output", str(out),
                 "--format", "tsv,npz", "--device", "cpu", "-q"])  # fmt: skip
    assert code == 0
    from ptsed.io.results import read_frame_scores

    fs = read_frame_scores(out / "frames" / "b.npz")[0]  # names are relative to the folder given
    assert fs.scores.shape == (100, 447) and fs.labels[0] == "Accelerating, revving, vroom"


def test_postprocessing_stored_in_a_checkpoint_is_applied_unless_overridden(
    recordings: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    """A fine-tuned checkpoint's per-class thresholds and median filters are the defaults of ``detect``;
    each option given on the command line replaces its stored value."""
    import ptsed
    from ptsed.models.factory import save_checkpoint

    model = ptsed.create_model("frame_mn06", pretrained=False)
    stored = {
        "thresholds": {lab: 1.0 for lab in model.labels},  # nothing is > 1: no events
        "median_filter_s": {lab: 0.2 for lab in model.labels},
    }
    ckpt = save_checkpoint(model, tmp_path / "tuned.pt", postprocess=stored)
    wav = str(recordings / "a.wav")

    def run(out: str, *options: str) -> tuple[list[str], dict]:
        assert main(["detect", wav, "--checkpoint", str(ckpt), "--output", str(tmp_path / out), *options]) == 0
        rows = (tmp_path / out / "events.tsv").read_text().splitlines()[1:]
        settings = json.loads((tmp_path / out / "ptsed_settings.json").read_text())["settings"]["postprocess"]
        return rows, settings

    rows, settings = run("stored")
    assert rows == [] and settings["threshold"] == stored["thresholds"]
    assert settings["median_filter_s"] == stored["median_filter_s"]
    assert "per-class thresholds and median filter lengths stored in the checkpoint" in capsys.readouterr().err
    rows, settings = run("threshold0", "--threshold", "0")
    assert len(rows) > 0 and settings["threshold"] == 0.0
    assert settings["median_filter_s"] == stored["median_filter_s"]  # not given: still the checkpoint's
    assert "the per-class median filter lengths stored in the checkpoint" in capsys.readouterr().err
    rows, settings = run("both", "--threshold", "0", "--median-filter", "0.36")
    assert settings["median_filter_s"] == 0.36 and "stored in the checkpoint" not in capsys.readouterr().err


def test_console_script_exits_with_the_run_code_and_complete_outputs(tmp_path: Path) -> None:
    """``python -m ptsed`` (the console script's path) ends detect runs with ``os._exit``: the exit code
    must still be the run's, and the outputs and the printed table complete."""
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[1] / "examples" / "soundscape.wav"
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ptsed", "detect", str(example), str(bad), "--model", "demo", "--device", "cpu"]
    run = subprocess.run([*cmd, "--output", str(out), "--format", "tsv,json"], capture_output=True, text=True)
    assert run.returncode == 1, run.stderr  # one bad file
    assert "FAILED bad.wav" in run.stderr
    rows = (out / "events.tsv").read_text().splitlines()
    assert rows[0] == "filename\tonset\toffset\tevent_label" and len(rows) > 2
    assert json.loads((out / "events.json").read_text())
    printed = subprocess.run([*cmd[:5], *cmd[6:]], capture_output=True, text=True)  # the example alone
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.count("soundscape.wav") == len(rows) - 1  # the same events, all printed


# -- issue 17 ------------------------------------------------------------------------------------------------
EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "soundscape.wav")


@pytest.mark.parametrize("command", [["models"], ["detect", EXAMPLE, "--model", "demo", "--device", "cpu"]])
def test_output_into_a_closed_pipe_ends_quietly(command: list[str]) -> None:
    """``ptsed ... | head``: the reader has gone; no BrokenPipeError traceback, exit 141 (128 + SIGPIPE)."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # the reader is gone before ptsed writes anything
    try:
        run = subprocess.run([sys.executable, "-m", "ptsed", *command], stdout=write, stderr=subprocess.PIPE,
                             text=True, timeout=120)  # fmt: skip
    finally:
        os.close(write)
    assert run.returncode == 141, run.stderr
    assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr and "Exception ignored" not in run.stderr


def test_a_checkpoint_with_nan_weights_is_refused_in_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import torch

    import ptsed
    from ptsed.models.factory import save_checkpoint

    model = ptsed.create_model("demo")
    with torch.no_grad():
        next(iter(model.head.parameters())).fill_(float("nan"))
    ckpt = save_checkpoint(model, tmp_path / "nan.pt")
    code = main(["detect", EXAMPLE, "--checkpoint", str(ckpt), "--device", "cpu", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "nan.pt" in err[0] and "NaN or infinite weights" in err[0]


def test_non_finite_model_outputs_fail_the_file_and_name_the_model(
    tiny: list[str],
    recordings: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finite weights, NaN outputs (here a NaN buffer of the front-end): each file fails with a message, the
    run exits 1, and the windows still in flight after the failure are dropped."""
    real = factory.create_model

    def nan_model(name: str, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        model = real(name, *args, **kwargs)
        model.frontend.proj.fill_(float("nan"))
        return model

    monkeypatch.setattr(factory, "create_model", nan_model)
    out = tmp_path / "out"
    code = main(["detect", str(recordings / "a.wav"), str(recordings / "site1"), "--model", "tiny", "-o", str(out),
                 "--batch-size", "1", "--hop", "2"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "3 failed" in err, err
    for name in ("a.wav", "b.flac", "short.wav"):
        assert f"FAILED {name}: " in err
    assert err.count("the model 'tiny' gave NaN or infinite scores (window at 0.00 s, precision fp32)") >= 3, err


def test_embed_help_says_output_is_required(capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "events are printed" not in text and "--output DIR, -o DIR output folder (required" in text
    with pytest.raises(SystemExit) as info:
        main(["embed", EXAMPLE, "--model", "demo"])
    assert info.value.code == 2 and "required: --output" in capsys.readouterr().err


def test_the_printed_table_shows_file_names_in_full(tiny: list[str], tmp_path: Path, capsys) -> None:  # noqa: ANN001
    names = ["site_north/recorder_A_2023-05-01_morning.wav", "site_south/recorder_A_2023-05-01_morning.wav", "b.wav"]
    for i, name in enumerate(names):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        sf.write(tmp_path / name, _tone(3.0, seed=i), 16_000)
    assert main(["detect", str(tmp_path), "--model", "tiny", "--threshold", "0.3", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["filename", "onset", "offset", "score", "event_label"]
    assert {line.split()[0] for line in lines[1:]} == set(names)  # every file has events, named in full
    onset_end = lines[0].index("onset") + len("onset")
    assert all(line[onset_end - 1] != " " and line[onset_end] == " " for line in lines[1:])  # one column
