"""Frame-level PaSST backbone (``ptsed.backbones.fpasst``).

Numerical parity with upstream is ``test_parity.py``; here: the released layout, the token grid and the
10 s limit of the position table, intermediate layers, parameter groups and training-mode behaviour,
mostly on a tiny configuration.
"""

from __future__ import annotations

import pytest
import torch

from conformance import manifest, require_shared
from ptsed.backbones.fpasst import FPaSST, build


@pytest.fixture(scope="module")
def tiny() -> FPaSST:
    torch.manual_seed(0)
    return FPaSST(embed_dim=64, depth=3, num_heads=4).eval()


def test_released_layout() -> None:
    """Every backbone entry of the released file has a tensor of the same name and shape, and vice versa."""
    require_shared()
    frontend, backbone = build()
    released = {e["key"][len("model.") :]: tuple(e["shape"]) for e in manifest("fpasst")["entries"]
                if e["key"].startswith("model.")}  # fmt: skip
    assert {k: tuple(v.shape) for k, v in backbone.state_dict().items()} == released
    assert backbone.embed_dim == 768 and backbone.num_layers == 12 and backbone.max_input_s == pytest.approx(10.0)
    assert frontend.state_dict() == {}


@pytest.mark.parametrize(("frames", "tokens"), [(1000, 250), (1003, 250), (1004, 250), (400, 100), (37, 10)])
def test_token_grid(tiny: FPaSST, frames: int, tokens: int) -> None:
    with torch.no_grad():
        out = tiny(torch.randn(2, 1, 128, frames))
    assert out.shape == (2, tokens, 64)


def test_longer_than_position_table_is_rejected(tiny: FPaSST) -> None:
    with pytest.raises(ValueError, match="at most 10 s"):
        tiny(torch.randn(1, 1, 128, 1100))
    with pytest.raises(ValueError, match="mel bins"):
        tiny(torch.randn(1, 1, 64, 1000))
    with pytest.raises(ValueError, match="divisible by 4"):
        FPaSST(n_mels=126, embed_dim=64, depth=1, num_heads=4)


def test_short_input_uses_start_of_position_table(tiny: FPaSST) -> None:
    """A shorter clip sees the first time positions, so its output equals the first frames of a longer
    clip's computation up to attention over the other frames: check the token construction directly."""
    feats = torch.randn(1, 1, 128, 1000)
    with torch.no_grad():
        full = tiny.tokens(feats)
        part = tiny.tokens(feats[..., :400])
    # the input convolutions only see a few neighbouring frames: away from the cut the tokens agree
    assert torch.allclose(full[:, :80], part[:, :80], atol=1e-5)


def test_forward_intermediates(tiny: FPaSST) -> None:
    feats = torch.randn(1, 1, 128, 200)
    with torch.no_grad():
        final = tiny(feats)
        inter = tiny.forward_intermediates(feats)
        some = tiny.forward_intermediates(feats, [0, -1])
        x = tiny.tokens(feats)
        first = tiny.blocks[0](x)[:, 2:]
    assert len(inter) == 3 and all(t.shape == (1, 50, 64) for t in inter)
    assert torch.equal(inter[-1], final) and torch.equal(some[1], final)
    assert torch.equal(inter[0], first) and torch.equal(some[0], first)
    with pytest.raises(ValueError):
        tiny.forward_intermediates(feats, [3])


def test_param_groups_follow_upstream(tiny: FPaSST) -> None:
    groups = tiny.param_groups()
    assert len(groups) == 3
    for name in (
        "cls_token",
        "time_new_pos_embed",
        "conv_in_1.weight",
        "patch_embed.proj.bias",
        "blocks.0.norm1.weight",
    ):
        assert name in groups[0]
    assert "norm.weight" in groups[-1] and "blocks.2.mlp.fc2.bias" in groups[-1]
    assert all(n.startswith("blocks.1.") for n in groups[1])
    assert sorted(n for g in groups for n in g) == sorted(n for n, _ in tiny.named_parameters())


def test_training_mode_offsets_time_positions() -> None:
    torch.manual_seed(0)
    net = FPaSST(embed_dim=64, depth=1, num_heads=4)
    feats = torch.randn(1, 1, 128, 400)
    with torch.no_grad():
        net.eval()
        ref = net(feats)
        net.train()
        outs = []
        for seed in range(4):
            torch.manual_seed(seed)
            outs.append(net(feats))
        net.eval()
        again = net(feats)
    assert torch.equal(ref, again)
    assert any(not torch.equal(o, ref) for o in outs)
    full = net.train()(torch.randn(1, 1, 128, 1000))  # a full-length clip has no offset to draw
    assert full.shape == (1, 250, 64)
