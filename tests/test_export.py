"""Export to upstream's released layout and to ptsed's format: exact manifest keys/shapes, lossless round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conformance import manifest, released_state_dict, require_shared
from ptsed.cli.main import main
from ptsed.heads.sed_head import HeadConfig
from ptsed.models.factory import create_model
from ptsed.models.profile import build_skeleton
from ptsed.models.zoo import ARCHS
from ptsed.recipes.export import load_trained
from ptsed.release.export import export_model
from ptsed.release.export import released_state_dict as export_state

IMPLEMENTED = [a for a, spec in ARCHS.items() if spec.implemented]
TINY = {
    "atst_frame": {"depth": 1, "embed_dim": 32, "num_heads": 2},
    "fpasst": {"depth": 1, "embed_dim": 32, "num_heads": 2},
    "asit": {"depth": 1, "embed_dim": 32, "num_heads": 2},
    "m2d": {"depth": 1, "embed_dim": 32, "num_heads": 2},
    "beats": {"depth": 1, "embed_dim": 32, "num_heads": 2, "ffn_dim": 64, "patch_embed_dim": 16, "conv_pos": 16,
              "conv_pos_groups": 4},
    "frame_mn06": {"width_mult": 0.1},
    "frame_mn10": {"width_mult": 0.1},
}  # fmt: skip


@pytest.mark.parametrize("teacher", [False, True], ids=["student", "teacher"])
@pytest.mark.parametrize("arch", IMPLEMENTED)
def test_released_layout_is_the_manifests(arch: str, teacher: bool) -> None:
    """Full-size models (on the meta device): exactly the keys and shapes upstream's loader expects."""
    require_shared()
    spec = ARCHS[arch]
    model = build_skeleton(spec, HeadConfig(n_strong=447, rnn_dim=2048 if teacher else None))
    exported = export_state(model, copy=False)
    entries = manifest(spec.upstream_name)["teacher_entries" if teacher else "entries"]
    expected = {e["key"]: tuple(e["shape"]) for e in entries if e["in_released_file"]}
    assert {k: tuple(v.shape) for k, v in exported.items()} == expected
    absent = {e["key"] for e in entries if not e["in_released_file"]}  # ATST-Frame's mel buffers must be absent
    assert not absent & set(exported)


FAST_FORWARD = [a for a in IMPLEMENTED if not a.startswith("frame_mn")]
"""Archs whose tiny forward pass is fast on CPU (the MobileNets' round trip is checked on the weights below)."""


@pytest.mark.parametrize("arch", FAST_FORWARD)
def test_round_trip_gives_identical_outputs(arch: str, tmp_path: Path) -> None:
    """Tiny models, both forms: export (released and ptsed) -> create_model(checkpoint_path=...) -> same outputs."""
    wave = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    for head in ("teacher", "student"):
        torch.manual_seed(1)
        tag = "as_weak" if "as_weak" in ARCHS[arch].tags else "as_strong"
        model = create_model(f"{arch}.{tag}", pretrained=False, head=head, num_classes=447, rnn_dim=8, **TINY[arch])
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))  # no parameter left at its initial constant
            ref = model(wave)
        released = export_model(model, tmp_path / f"{head}_released.pt", "released")
        own = export_model(model, tmp_path / f"{head}.pt", "ptsed")
        state = torch.load(released, weights_only=True)
        assert not any(k.startswith(("head.", "backbone.", "frontend.")) for k in state)
        for loaded in (
            create_model(arch, checkpoint_path=released, **TINY[arch]),
            create_model("x", checkpoint_path=own),
        ):
            assert loaded.head_config.rnn_dim == (8 if head == "teacher" else None)
            with torch.no_grad():
                out = loaded(wave)
            torch.testing.assert_close(out.strong_logits, ref.strong_logits, atol=0, rtol=0)
            torch.testing.assert_close(out.weak_logits, ref.weak_logits, atol=0, rtol=0)


def _released_round_trip(upstream_name: str, arch: str, teacher: bool, tmp_path: Path) -> None:
    """A file in upstream's layout (weights rule) -> ptsed -> export: the same tensors under the same keys."""
    original = released_state_dict(upstream_name, teacher=teacher)
    path = tmp_path / "in.pt"
    torch.save(original, path)
    model = create_model(arch, checkpoint_path=path)
    exported = export_state(model)
    assert set(exported) == set(original)
    for key, value in original.items():
        torch.testing.assert_close(exported[key], value, atol=0, rtol=0, msg=key)


def test_released_file_round_trip_frame_mn06_teacher(tmp_path: Path) -> None:
    require_shared()
    _released_round_trip("frame_mn06", "frame_mn06", True, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("arch", IMPLEMENTED)
def test_released_file_round_trip_full_size(arch: str, tmp_path: Path) -> None:
    require_shared()
    spec = ARCHS[arch]
    if arch == "m2d":  # nnAudio buffers: ptsed writes its own (computed as nnAudio does), so compare those
        model = create_model(arch, pretrained=False)
        original = released_state_dict(spec.upstream_name)
        frontend = {k: v for k, v in export_state(model).items() if k.startswith("model.to_spec.")}
        assert set(frontend) == {k for k in original if k.startswith("model.to_spec.")}
        original.update(frontend)
        path = tmp_path / "in.pt"
        torch.save(original, path)
        exported = export_state(create_model(arch, checkpoint_path=path))
        assert set(exported) == set(original)
        for key, value in original.items():
            torch.testing.assert_close(exported[key], value, atol=0, rtol=0, msg=key)
        return
    for teacher in (False, True):
        _released_round_trip(spec.upstream_name, arch, teacher, tmp_path)


def test_export_cli_from_a_ptsed_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    model = create_model("frame_mn06", pretrained=False, head="teacher", rnn_dim=8, width_mult=0.1)
    source = export_model(model, tmp_path / "model.pt", "ptsed")
    assert main(["export", str(source), "--format", "released", "-o", str(tmp_path / "r.pt")]) == 0
    assert "teacher (BiGRU)" in capsys.readouterr().out
    state = torch.load(tmp_path / "r.pt", weights_only=True)
    assert "seq_model.rnn.weight_hh_l1_reverse" in state and "model.frame_mn.features.0.0.weight" in state
    assert load_trained(tmp_path).head_config.rnn_dim == 8  # a folder with model.pt
    assert main(["export", str(tmp_path / "r.pt"), "-o", str(tmp_path / "x.pt")]) == 2  # already released
