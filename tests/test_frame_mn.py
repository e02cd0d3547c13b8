"""Frame-level MobileNetV3 backbones (frame_mn06, frame_mn10) and the MobileNet layers.

Numerical parity with upstream is ``test_parity.py``; here: the released layout, the channel plan,
the frame grid for any input length, intermediate outputs and parameter groups, on tiny widths.
"""

from __future__ import annotations

import math

import pytest
import torch

from conformance import manifest, require_shared
from ptsed.backbones.frame_mn import FrameMN, build
from ptsed.layers.mobilenet import ChannelSE, InvertedResidual, make_divisible


@pytest.fixture(scope="module")
def tiny() -> FrameMN:
    torch.manual_seed(0)
    return FrameMN(width_mult=0.2).eval()


def test_make_divisible() -> None:
    assert [make_divisible(c * 0.6) for c in (16, 64, 72, 120, 160, 960)] == [16, 40, 40, 72, 96, 576]
    assert make_divisible(3.0) == 8 and make_divisible(100 * 0.55) == 56


@pytest.mark.parametrize(("width", "upstream", "embed_dim"), [(0.6, "frame_mn06", 576), (1.0, "frame_mn10", 960)])
def test_released_layout(width: float, upstream: str, embed_dim: int) -> None:
    """Every backbone entry of the released file has a tensor of the same name and shape, and vice versa."""
    require_shared()
    frontend, backbone = build(width_mult=width)
    assert backbone.embed_dim == embed_dim and backbone.num_layers == 17
    prefix = "model.frame_mn."
    released = {
        e["key"][len(prefix) :]: tuple(e["shape"]) for e in manifest(upstream)["entries"] if e["key"].startswith(prefix)
    }
    ours = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    assert ours == released
    assert released["features.16.1.bias"] == (embed_dim,)
    assert frontend.state_dict() == {}


@pytest.mark.parametrize("num_frames", [1000, 999, 998, 37, 4, 3000])
def test_frame_grid(tiny: FrameMN, num_frames: int) -> None:
    feats = torch.randn(2, 1, 128, num_frames)
    with torch.no_grad():
        out = tiny(feats)
    expected = math.ceil(math.ceil(num_frames / 2) / 2)
    assert tiny.output_frames(num_frames) == expected
    assert out.shape == (2, expected, tiny.embed_dim)


def test_forward_intermediates(tiny: FrameMN) -> None:
    feats = torch.randn(1, 1, 128, 400)
    with torch.no_grad():
        final = tiny(feats)
        inter = tiny.forward_intermediates(feats)
        some = tiny.forward_intermediates(feats, [-1, 0, 5])
    assert len(inter) == 17
    assert [t.shape[-1] for t in inter] == tiny.stage_dims()
    assert all(t.shape[:2] == (1, 100) for t in inter)
    assert torch.equal(inter[-1], final)
    assert torch.equal(some[0], final) and torch.equal(some[1], inter[0]) and torch.equal(some[2], inter[5])
    # the stem output (200 frames) is pooled in pairs onto the 100-frame grid
    with torch.no_grad():
        stem = tiny.features[0](feats).mean(2)
    assert torch.allclose(inter[0][0, 3], stem[0, :, 6:8].mean(-1), atol=1e-6)
    with pytest.raises(ValueError):
        tiny.forward_intermediates(feats, [17])


def test_param_groups(tiny: FrameMN) -> None:
    groups = tiny.param_groups()
    assert len(groups) == 17
    assert groups[0] == ["features.0.0.weight", "features.0.1.weight", "features.0.1.bias"]
    assert all(n.startswith("features.16.") for n in groups[-1])
    flat = [n for g in groups for n in g]
    assert sorted(flat) == sorted(n for n, _ in tiny.named_parameters())


def test_long_input_is_fully_convolutional(tiny: FrameMN) -> None:
    """No position information: 30 s of features give 750 frames."""
    with torch.no_grad():
        long = tiny(torch.randn(1, 1, 128, 3000))
    assert long.shape == (1, 750, tiny.embed_dim) and tiny.max_input_s == float("inf")


def test_blocks() -> None:
    torch.manual_seed(0)
    net = FrameMN(width_mult=1.0)
    bottlenecks = [m for m in net.features if isinstance(m, InvertedResidual)]
    assert len(bottlenecks) == 15
    assert [i for i, b in enumerate(bottlenecks) if b.use_residual] == [0, 4, 8, 9, 11, 13]
    assert sum(isinstance(m, ChannelSE) for m in net.modules()) == 8
    se = ChannelSE(8, 8)
    x = torch.randn(2, 8, 3, 5)
    gate = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.mean((2, 3))))))
    assert torch.allclose(se(x), x * gate[:, :, None, None])
