"""End-to-end parity of ``ptsed detect --upstream-chunking`` with upstream ``inference.py``.

Synthetic checkpoints in the released layout (``tests/conformance.py``) are run on ``test_25s.wav``
through the CLI; the frame probabilities must match ``inference/<Model>_25s.npz`` within the
``probabilities_25s`` tolerance, and the event CSVs must equal upstream's except for frames whose
median-filtered score lies within that tolerance of the threshold (README "Suggested test structure" 5-6).
Parametrised over every implemented architecture. ``PTSED_PARITY_REPORT=path.jsonl`` records the deviations.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conformance import CONFORMANCE, require_shared, tolerances, write_released_checkpoint
from ptsed.cli.main import main
from ptsed.io.results import read_frame_scores
from ptsed.models.zoo import ARCHS
from ptsed.postprocess.filters import median_filter

pytestmark = pytest.mark.parity

IMPLEMENTED = [a.name for a in ARCHS.values() if a.implemented]


def _rows(path: Path) -> list[tuple[str, str, str, str]]:
    with open(path, newline="") as fh:
        return [tuple(r) for r in list(csv.reader(fh))[1:]]  # type: ignore[misc]


@pytest.mark.parametrize("arch", IMPLEMENTED)
def test_detect_upstream_chunking_matches_inference_py(arch: str, tmp_path: Path) -> None:
    require_shared()
    upstream = ARCHS[arch].upstream_name
    ckpt = write_released_checkpoint(tmp_path / f"{upstream}_strong_1.pt", upstream)
    wav = CONFORMANCE / "test_25s.wav"
    out = tmp_path / "out"
    code = main(["detect", str(wav), "--model", arch, "--checkpoint", str(ckpt), "--upstream-chunking",
                 "--threshold", "0.5", "--median-filter", "0.36", "--output", str(out), "--format", "csv,npz",
                 "--batch-size", "3", "--device", "cpu", "-q"])  # fmt: skip
    assert code == 0
    with np.load(CONFORMANCE / "inference" / f"{upstream}_25s.npz") as z:
        ref_probs, ref_filtered = z["probabilities"][0].T, z["median_filtered"]
    ours = read_frame_scores(out / "frames" / "test_25s.npz")[0]
    tol = tolerances(upstream)["probabilities_25s"]
    assert ours.scores.shape == ref_probs.shape == (750, 447)
    dev = float(np.abs(ours.scores - ref_probs).max())
    report = os.environ.get("PTSED_PARITY_REPORT")
    if report:
        with open(report, "a") as fh:
            fh.write(json.dumps({"arch": arch, "array": "probabilities_25s (ptsed detect)", "max_abs_dev": dev,
                                 "atol": tol}) + "\n")  # fmt: skip
    assert dev <= tol, f"{arch}: max |ours - upstream| = {dev:.3g} > {tol:.3g}"
    ours_filtered = median_filter(ours.scores, 0.36, 0.04)
    labels = ours.labels
    for th in (0.1, 0.2, 0.5):
        if th == 0.5:
            table = out / "events.csv"
        else:  # the other thresholds from the saved scores, as `ptsed detect out/frames` does
            re_out = tmp_path / f"th{th}"
            assert main(["detect", str(out / "frames"), "--upstream-chunking", "--threshold", str(th),
                         "--output", str(re_out), "--format", "csv", "-q"]) == 0  # fmt: skip
            table = re_out / "events.csv"
        ours_rows = _rows(table)
        ref_rows = _rows(CONFORMANCE / "inference" / f"{upstream}_25s_th{th}.csv")
        if report:
            with open(report, "a") as fh:
                same = ours_rows == ref_rows
                fh.write(json.dumps({"arch": arch, "array": f"events th={th}", "identical": same}) + "\n")
        if ours_rows == ref_rows:
            continue
        flips = (ours_filtered > np.float32(th)) != (ref_filtered > np.float32(th))
        near = np.abs(ref_filtered - th) <= tol
        assert not (flips & ~near).any(), f"{arch} th={th}: activity differs at frames far from the threshold"
        flipped = {labels[k] for k in np.flatnonzero(flips.any(axis=0))}
        assert [r for r in ours_rows if r[0] not in flipped] == [r for r in ref_rows if r[0] not in flipped]
