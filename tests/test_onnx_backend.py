"""``--backend onnx``: the same windows and stitching as torch, through ONNX Runtime on a graph exported on
first use into ``$PTSED_HOME/onnx`` (demo model, the 20 s example soundscape)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ptsed
from ptsed.cli.main import main

pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parents[1]
WAV = REPO / "examples" / "soundscape.wav"


@pytest.fixture(scope="module")
def onnx_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module's tests, so that each graph is exported once."""
    return tmp_path_factory.mktemp("ptsed_home")


@pytest.fixture(autouse=True)
def _shared_cache(onnx_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTSED_HOME", str(onnx_home))


def onnx_files() -> dict[str, int]:
    """Cached ONNX files and their modification times (ns)."""
    return {p.name: p.stat().st_mtime_ns for p in (ptsed.hub.cache.cache_dir() / "onnx").glob("*.onnx")}


def frames(folder: Path) -> np.ndarray:
    with np.load(folder / "frames" / "soundscape.npz") as z:
        return z["scores"]


def test_detect_backend_onnx_equals_torch(tmp_path: Path) -> None:
    """CLI: frame probabilities within 1e-4 of torch's; the graph is exported once and reused."""
    runs = {}
    for backend in ("torch", "onnx", "onnx"):
        out = tmp_path / f"{backend}{len(runs)}"
        argv = ["detect", str(WAV), "--model", "demo", "--output", str(out), "--format", "npz,tsv"]
        assert main([*argv, "--backend", backend]) == 0
        runs[out.name] = frames(out)
        if len(runs) == 2:
            first = onnx_files()
            assert any(name.startswith("frame_mn06-") for name in first)
    assert runs["torch0"].shape == runs["onnx1"].shape and runs["torch0"].shape[0] == 500  # 20 s
    assert np.abs(runs["onnx1"] - runs["torch0"]).max() <= 1e-4
    np.testing.assert_array_equal(runs["onnx1"], runs["onnx2"])
    assert onnx_files() == first  # the second run reused the file


def test_predictor_embed_and_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    """Predictor(backend="onnx"): embeddings equal torch's; int8 is ONNX Runtime's quantised graph."""
    torch_p = ptsed.Predictor("demo", backend="torch")
    onnx_p = ptsed.Predictor("demo", backend="onnx")
    assert onnx_p.settings()["backend"] == "onnx" and "backend" not in torch_p.settings()
    e_torch, e_onnx = torch_p.embed(str(WAV), layer=-2), onnx_p.embed(str(WAV), layer=-2)
    assert e_onnx.values.shape == e_torch.values.shape
    assert np.abs(e_onnx.values - e_torch.values).max() <= 1e-4 * max(1.0, np.abs(e_torch.values).max())

    q = ptsed.Predictor("demo", backend="onnx", int8=True).frame_scores(str(WAV))
    ref = torch_p.frame_scores(str(WAV))
    assert q.scores.shape == ref.scores.shape and 0 < np.abs(q.scores - ref.scores).max() < 0.1
    assert any(name.endswith(".int8.onnx") for name in onnx_files())


def test_backend_errors(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ptsed.core.errors.ConfigError, match="fp32"):
        ptsed.Predictor("demo", backend="onnx", precision="bf16")
    with pytest.raises(ptsed.core.errors.ConfigError, match="backend must be one of torch, onnx"):
        ptsed.Predictor("demo", backend="tflite")
    assert main(["detect", str(WAV), "--model", "demo", "--backend", "onnx", "--precision", "fp16"]) != 0
    err = capsys.readouterr().err.strip()
    assert "onnx backend computes in fp32" in err and len(err.splitlines()) == 1


def test_cache_key_follows_weights_and_settings() -> None:
    """The same weights loaded twice share a file; other weights, windows, outputs or layers do not."""
    import torch

    from ptsed.inference.onnx_backend import cache_key

    a, b = ptsed.create_model("demo"), ptsed.create_model("demo")
    key = cache_key(a, window_s=10.0, outputs=("strong_logits",), layer=None)
    assert key == cache_key(b, window_s=10.0, outputs=("strong_logits",), layer=None)
    assert key != cache_key(a, window_s=5.0, outputs=("strong_logits",), layer=None)
    assert key != cache_key(a, window_s=10.0, outputs=("embeddings",), layer=None)
    assert cache_key(a, window_s=10.0, outputs=("embeddings",), layer=-1) != cache_key(
        a, window_s=10.0, outputs=("embeddings",), layer=None
    )
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-3
    assert key != cache_key(b, window_s=10.0, outputs=("strong_logits",), layer=None)
