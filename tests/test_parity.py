"""Parity with upstream: synthetic checkpoints in the released layout, loaded through the public API,
must reproduce the reference arrays of ``../shared/conformance`` within its tolerances (never loosened).

Set ``PTSED_PARITY_REPORT=path.jsonl`` to record every measured deviation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import ptsed
from conformance import fixture, read_wav, require_shared, tolerances, write_released_checkpoint
from ptsed.models.zoo import ARCHS

pytestmark = pytest.mark.parity

IMPLEMENTED = [a.name for a in ARCHS.values() if a.implemented]


def _deviation(arch: str, what: str, ours: torch.Tensor, ref: np.ndarray, tol_key: str, failures: list[str]) -> None:
    ours_np = ours.detach().float().numpy()
    if ours_np.shape != ref.shape:
        failures.append(f"{what}: shape {ours_np.shape} vs reference {ref.shape}")
        return
    if not np.isfinite(ours_np).all():
        failures.append(f"{what}: non-finite values")
        return
    dev = float(np.abs(ours_np - ref).max())
    tol = tolerances(ARCHS[arch].upstream_name)[tol_key]
    report = os.environ.get("PTSED_PARITY_REPORT")
    if report:
        with open(report, "a") as fh:
            fh.write(json.dumps({"arch": arch, "array": what, "max_abs_dev": dev, "atol": tol}) + "\n")
    if dev > tol:
        failures.append(f"{what}: max |ours - upstream| = {dev:.3g} > atol {tol:.3g}")


@pytest.mark.parametrize("form", ["student", "teacher"])
@pytest.mark.parametrize("arch", IMPLEMENTED)
def test_parity(arch: str, form: str, tmp_path: Path) -> None:
    """Features, backbone sequence, strong and weak logits, from the WAV and from reference features."""
    require_shared()
    upstream = ARCHS[arch].upstream_name
    path = write_released_checkpoint(tmp_path / f"{upstream}_{form}.pt", upstream, teacher=form == "teacher")
    model = ptsed.create_model(arch, checkpoint_path=path)
    assert model.head_config.is_teacher == (form == "teacher")
    fx = fixture(upstream)
    tol = tolerances(upstream)
    failures: list[str] = []
    wav = read_wav()
    with torch.no_grad():
        feats = model.features(wav)
        from_ref = model.forward_features(torch.from_numpy(fx["features"]), 250)
        e2e = model(wav)
    if form == "student":
        _deviation(arch, "features", feats, fx["features"], "features", failures)
        if feats.shape == fx["features"].shape:
            p999 = float(np.quantile(np.abs(feats.numpy() - fx["features"]), 0.999))
            if p999 > tol["features_p999"]:
                failures.append(f"features: 99.9th percentile {p999:.3g} > {tol['features_p999']:.3g}")
        checks = [
            (
                "sequence (reference features)",
                from_ref.sequence,
                "sequence",
                "sequence_from_reference_features",
            ),
            (
                "strong_logits (reference features)",
                from_ref.strong_logits,
                "strong_logits",
                "strong_logits_from_reference_features",
            ),
            (
                "weak_logits (reference features)",
                from_ref.weak_logits,
                "weak_logits",
                "weak_logits_from_reference_features",
            ),
            ("sequence (end to end)", e2e.sequence, "sequence", "sequence_end_to_end"),
            ("strong_logits (end to end)", e2e.strong_logits, "strong_logits", "strong_logits_end_to_end"),
            ("weak_logits (end to end)", e2e.weak_logits, "weak_logits", "strong_logits_end_to_end"),
        ]
    else:
        checks = [
            (
                "teacher_strong_logits (reference features)",
                from_ref.strong_logits,
                "teacher_strong_logits",
                "teacher_strong_logits_from_reference_features",
            ),
            (
                "teacher_weak_logits (reference features)",
                from_ref.weak_logits,
                "teacher_weak_logits",
                "teacher_strong_logits_from_reference_features",
            ),
            (
                "teacher_strong_logits (end to end)",
                e2e.strong_logits,
                "teacher_strong_logits",
                "teacher_strong_logits_end_to_end",
            ),
            (
                "teacher_weak_logits (end to end)",
                e2e.weak_logits,
                "teacher_weak_logits",
                "teacher_strong_logits_end_to_end",
            ),
        ]
    for what, ours, ref_key, tol_key in checks:
        _deviation(arch, what, ours, fx[ref_key], tol_key, failures)
    assert not failures, f"{arch} {form} deviates from upstream:\n  " + "\n  ".join(failures)
