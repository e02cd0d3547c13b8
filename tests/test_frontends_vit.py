"""ATST-Frame, M2D and ASiT: front-end frame counts, per-clip features, key layout, backbone details.

Numerical parity with upstream is in ``test_parity.py``; these tests cover what the fixtures cannot:
other input lengths, batches, reduced configurations and the released-key round trip.
"""

from __future__ import annotations

import math

import pytest
import torch

from conformance import manifest
from ptsed.core.errors import AudioError
from ptsed.hub.checkpoint import ptsed_to_released, released_to_ptsed
from ptsed.models.zoo import ARCHS

MINE = [a for a in ("atst_frame", "m2d", "asit") if ARCHS[a].implemented]
SR = 16_000
SMALL = {"depth": 2, "embed_dim": 64, "num_heads": 4}


@pytest.fixture(scope="module", params=MINE)
def parts(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    frontend, backbone = ARCHS[request.param].build_parts(**SMALL)
    return request.param, frontend.eval(), backbone.eval()


def test_num_frames_is_closed_form(parts) -> None:
    _, frontend, _ = parts
    g = torch.Generator().manual_seed(0)
    lengths = [1024, 1025, 1119, 1120, 1121, 1600, 16_000, 16_159, 16_160, 16_161, 160_000]
    lengths += torch.randint(1100, 24_000, (8,), generator=g).tolist()
    for n in lengths:
        feats = frontend(0.1 * torch.randn(1, n, generator=g))
        assert feats.shape[0] == 1 and feats.shape[1] == 1 and feats.shape[2] == frontend.n_bins
        assert feats.shape[-1] == frontend.num_frames(n), f"{n} samples"


def test_features_do_not_depend_on_the_batch(parts) -> None:
    _, frontend, _ = parts
    g = torch.Generator().manual_seed(1)
    waves = torch.randn(3, 3 * SR, generator=g) * torch.tensor([[1e-4], [0.3], [1.0]])
    waves[0, : SR // 2] = 0.0  # digital silence inside a quiet clip
    with torch.no_grad():
        batch = frontend(waves)
        for i in range(3):
            torch.testing.assert_close(batch[i : i + 1], frontend(waves[i : i + 1]), atol=1e-5, rtol=1e-5)


def test_features_stay_float32_under_autocast(parts) -> None:
    _, frontend, _ = parts
    wave = 0.1 * torch.randn(1, SR, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = frontend(wave)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = frontend(wave)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, ref)


def test_too_short_input_is_a_clear_error(parts) -> None:
    _, frontend, _ = parts
    with pytest.raises(AudioError, match="samples"):
        frontend(torch.zeros(1, 100))


def test_reduced_backbone_interface(parts) -> None:
    _, frontend, backbone = parts
    with torch.no_grad():
        feats = frontend(0.1 * torch.randn(2, 4 * SR))
        seq = backbone(feats)
        inter = backbone.forward_intermediates(feats, [1, 0, -1])
    assert backbone.num_layers == 2 and seq.shape[-1] == backbone.embed_dim
    torch.testing.assert_close(inter[0], seq)
    torch.testing.assert_close(inter[2], seq)
    assert inter[1].shape == seq.shape and not torch.allclose(inter[1], seq)
    groups = backbone.param_groups()
    assert len(groups) == 2
    assert any("patch_embed" in n for n in groups[0]) and all(
        n.startswith("blocks.1.") or "norm" in n for n in groups[1]
    )


def test_input_longer_than_the_position_table_is_rejected(parts) -> None:
    _, frontend, backbone = parts
    if math.isinf(backbone.max_input_s):
        pytest.skip("this backbone takes inputs of any length")
    n = int((backbone.max_input_s + 0.5) * SR)
    with torch.no_grad(), pytest.raises(ValueError, match="at most"):
        backbone(frontend(torch.zeros(1, n)))


def test_m2d_encodes_long_inputs_in_10s_chunks() -> None:
    """Upstream encodes 1001-frame chunks separately, zero-padding the last one to a multiple of 16 frames."""
    if "m2d" not in MINE:
        pytest.skip("m2d is not implemented")
    torch.manual_seed(0)
    _, backbone = ARCHS["m2d"].build_parts(**SMALL)
    backbone.eval()
    feats = torch.randn(2, 1, 80, 2 * 1001 + 300)
    with torch.no_grad():
        seq = backbone(feats)
        first = backbone(feats[..., :1001])
        second = backbone(feats[..., 1001:2002])
        rest = backbone(torch.nn.functional.pad(feats[..., 2002:], (0, 4)))
        rest_unpadded = backbone(feats[..., 2002:])
    assert first.shape == (2, 62, backbone.embed_dim) and rest.shape[1] == 19
    torch.testing.assert_close(seq, torch.cat([first, second, rest], dim=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rest_unpadded, rest, atol=1e-5, rtol=1e-5)
    inter = backbone.forward_intermediates(feats, [0, 1])
    torch.testing.assert_close(inter[1], seq)
    assert inter[0].shape == seq.shape


@pytest.mark.parametrize("arch", MINE)
def test_released_layout_round_trip(arch: str) -> None:
    """Exported keys and shapes are those of upstream's released files; loading them back is lossless."""
    spec = ARCHS[arch]
    entries = {e["key"]: e for e in manifest(spec.upstream_name)["entries"] if e["in_released_file"]}
    frontend, backbone = spec.build_parts()
    own = {f"frontend.{k}": v for k, v in frontend.state_dict().items()}
    own.update({f"backbone.{k}": v for k, v in backbone.state_dict().items()})
    released = ptsed_to_released(spec, own)
    heads = {k for k in entries if k.startswith(("strong_head.", "weak_head."))}
    assert set(released) == set(entries) - heads
    for k, v in released.items():
        assert list(v.shape) == entries[k]["shape"], k
    back = released_to_ptsed(spec, released)
    assert set(back) <= set(own)
    assert set(own) - set(back) <= {k for k in own if k.startswith("frontend.")}


@pytest.mark.parametrize(("arch", "wrapper"), [("asit", "model.asit."), ("m2d", "model.m2d.")])
def test_wrapper_spelling_loads_like_the_released_one(arch: str, wrapper: str) -> None:
    """Upstream's in-memory wrapper keys (``model.asit.X``, ``model.m2d.X``) map like released keys."""
    if arch not in MINE:
        pytest.skip(f"{arch} is not implemented")
    spec = ARCHS[arch]
    released = {e["key"]: e["shape"] for e in manifest(spec.upstream_name)["entries"] if e["in_released_file"]}
    plain = released_to_ptsed(spec, {k: torch.zeros(1) for k in released})
    wrapped = {(wrapper + k[len("model.") :] if k.startswith("model.") else k): torch.zeros(1) for k in released}
    assert set(released_to_ptsed(spec, wrapped)) == set(plain)
