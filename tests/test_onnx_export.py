"""``ptsed export --format onnx`` on the demo model: the graph's inputs, outputs, dynamic batch and metadata,
the sources it accepts (zoo name, released file, ptsed checkpoint, run folder), and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ptsed
from ptsed.cli.main import main

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def demo_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model exported once with an embeddings output of block -2."""
    out = tmp_path_factory.mktemp("onnx") / "demo.onnx"
    assert main(["export", "demo", "--format", "onnx", "--output", str(out), "--embeddings", "-2"]) == 0
    return out


def clip(batch: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((batch, 160_000)) * 0.1).astype(np.float32)


def test_graph_outputs_and_metadata(demo_onnx: Path) -> None:
    sess = ort.InferenceSession(str(demo_onnx), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "waveform" and inp.type == "tensor(float)" and inp.shape[1] == 160_000
    assert not isinstance(inp.shape[0], int)  # the batch size is dynamic
    assert [o.name for o in sess.get_outputs()] == ["strong_logits", "weak_logits", "embeddings"]
    meta = sess.get_modelmeta().custom_metadata_map
    model = ptsed.create_model("demo")
    assert json.loads(meta["labels"]) == model.labels
    assert int(meta["sample_rate"]) == 16000 and float(meta["window_s"]) == 10.0
    assert float(meta["frame_hop_s"]) == 0.04 and meta["ptsed_version"] == ptsed.__version__
    assert meta["source"] == "demo" and meta["embeddings_layer"] == "-2" and "postprocess" not in meta

    x = clip(3)
    strong, weak, emb = sess.run(None, {"waveform": x})
    assert strong.shape == (3, 10, 250) and weak.shape == (3, 10)
    with torch.no_grad():
        out = model(torch.from_numpy(x))
        ref_emb = model.embed(torch.from_numpy(x), layer=-2)
    assert emb.shape == tuple(ref_emb.shape) and emb.shape[:2] == (3, 250)
    assert np.abs(strong - out.strong_logits.numpy()).max() < 1e-3
    assert np.abs(weak - out.weak_logits.numpy()).max() < 1e-3
    assert np.abs(emb - ref_emb.numpy()).max() < 1e-3
    single = sess.run(["strong_logits"], {"waveform": x[1:2]})[0]  # batch 1 = the same row of batch 3
    np.testing.assert_allclose(single[0], strong[1], atol=1e-5)


def test_run_folder_and_ptsed_checkpoint_keep_postprocess(tmp_path: Path) -> None:
    """A fine-tuned run folder (model.pt with per-class thresholds) exports with its post-processing."""
    from ptsed.models.factory import save_checkpoint

    model = ptsed.create_model("demo")
    stored = {"thresholds": {model.labels[0]: 0.3}, "median_filter_s": {model.labels[1]: 0.5}}
    save_checkpoint(model, tmp_path / "run" / "model.pt", postprocess=stored)
    out = tmp_path / "sub" / "run.onnx"
    assert main(["export", str(tmp_path / "run"), "--format", "onnx", "-o", str(out)]) == 0
    meta = ort.InferenceSession(str(out)).get_modelmeta().custom_metadata_map
    assert json.loads(meta["postprocess"]) == {"threshold": {model.labels[0]: 0.3},
                                               "median_filter_s": {model.labels[1]: 0.5}}  # fmt: skip
    assert meta["source"] == str(tmp_path / "run") and json.loads(meta["outputs"]) == ["strong_logits", "weak_logits"]
    assert not list(out.parent.glob(".*tmp*"))  # written through a temporary file, which is gone


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no_such_model"], "no such file, and no model of that name"),
        (["demo", "--embeddings", "top"], "--embeddings takes 'head' or a backbone block number"),
        (["demo", "--embeddings", "40"], "embeddings layer 40"),
        (["{tmp}/missing.pt", "--model", "beats"], "no such file"),
        (["{tmp}/garbage.pt"], "garbage.pt"),
        (["{ckpt}", "--model", "nonsense"], "unknown model 'nonsense'"),
        (["demo", "--output", "{tmp}"], "is a folder"),
        (["demo", "--output", "{tmp}/file.txt/x.onnx"], "is not a writable folder"),
    ],
    ids=["unknown-name", "bad-layer", "layer-out-of-range", "missing-file", "not-a-checkpoint", "unknown-arch",
         "output-is-folder", "output-under-file"],
)  # fmt: skip
def test_bad_input_is_one_clear_line(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    from ptsed.models.demo import demo_checkpoint_path

    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "file.txt").write_text("x")
    argv = [a.format(tmp=tmp_path, ckpt=demo_checkpoint_path()) for a in argv]
    if "--output" not in argv:
        argv += ["--output", str(tmp_path / "out.onnx")]
    assert main(["export", *argv[:1], "--format", "onnx", *argv[1:]]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out.onnx").exists()


def test_consumer_example_needs_neither_ptsed_nor_torch(demo_onnx: Path) -> None:
    """examples/onnx_consumer.py, with ptsed and torch made unimportable, prints the events ptsed finds."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    wav = repo / "examples" / "soundscape.wav"
    blocker = (
        "import sys, runpy; sys.modules.update(ptsed=None, torch=None); "
        f"sys.argv = ['onnx_consumer.py', {str(demo_onnx)!r}, {str(wav)!r}]; "
        f"runpy.run_path({str(repo / 'examples' / 'onnx_consumer.py')!r}, run_name='__main__')"
    )
    proc = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "onset\toffset\tevent_label" and len(lines) > 1
    rows = [line.split("\t") for line in lines[1:]]
    found = {label for _, _, label in rows}
    expected = {e.label for e in ptsed.Predictor("demo").events(str(wav))}
    assert found == expected, (found, expected)
    assert all(0 <= float(on) < float(off) <= 20.0 for on, off, _ in rows)
