"""ONNX parity with upstream: synthetic checkpoints in the released layout, exported with ``ptsed export
--format onnx`` and run by ONNX Runtime, must reproduce the reference arrays of ``../shared/conformance``
within the tolerances of the torch parity tests (``tests/test_parity.py``; never loosened).

The default run covers frame_mn06, ATST-F and BEATs (students); every other arch and every teacher form is
``slow`` (a full transformer exports in about 15-25 s on one core).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conformance import fixture, read_wav, require_shared, tolerances, write_released_checkpoint
from ptsed.cli.main import main
from ptsed.models.zoo import ARCHS

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.parity

DEFAULT = {("frame_mn06", "student"), ("atst_frame", "student"), ("beats", "student")}
CASES = [
    pytest.param(arch, form, marks=() if (arch, form) in DEFAULT else pytest.mark.slow, id=f"{arch}-{form}")
    for arch in (a.name for a in ARCHS.values() if a.implemented)
    for form in ("student", "teacher")
]


def run_onnx(path: Path, waveform: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """(strong, weak, metadata) of ONNX Runtime on ``waveform`` (B, N)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    strong, weak = sess.run(["strong_logits", "weak_logits"], {"waveform": waveform})
    return strong, weak, dict(sess.get_modelmeta().custom_metadata_map)


@pytest.mark.parametrize(("arch", "form"), CASES)
def test_onnx_parity(arch: str, form: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    require_shared()
    upstream = ARCHS[arch].upstream_name
    ckpt = write_released_checkpoint(tmp_path / f"{upstream}_{form}.pt", upstream, teacher=form == "teacher")
    out = tmp_path / "model.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--output", str(out)]) == 0
    assert "ONNX" in capsys.readouterr().out
    wav = read_wav().numpy()
    strong, weak, meta = run_onnx(out, wav)
    fx, tol = fixture(upstream), tolerances(upstream)
    prefix = "teacher_" if form == "teacher" else ""
    ref_strong = fx[f"{prefix}strong_logits"]
    ref_weak = fx[f"{prefix}weak_logits"]
    atol = tol[f"{prefix}strong_logits_end_to_end"]  # the torch test's tolerance of both outputs end to end
    dev = {
        "strong_logits": float(np.abs(strong - ref_strong).max()),
        "weak_logits": float(np.abs(weak - ref_weak).max()),
    }
    report = os.environ.get("PTSED_PARITY_REPORT")
    if report:
        with open(report, "a") as fh:
            for what, d in dev.items():
                row = {"arch": arch, "array": f"onnx {form} {what}", "max_abs_dev": d, "atol": atol}
                fh.write(json.dumps(row) + "\n")
    assert strong.shape == ref_strong.shape and weak.shape == ref_weak.shape
    assert dev["strong_logits"] <= atol and dev["weak_logits"] <= atol, f"{arch} {form}: {dev} > atol {atol}"
    assert meta["head"] == form and meta["arch"] == arch and len(json.loads(meta["labels"])) == ref_strong.shape[1]
