"""BEATs backbone: key layout, legacy checkpoint spellings, attention numerics, shapes (small configs)."""

from __future__ import annotations

import math

import pytest
import torch

import ptsed
from conformance import manifest, require_shared
from ptsed.backbones.beats import (
    BEATs,
    GatedRelativeAttention,
    build,
    convert_released,
    relative_position_buckets,
)
from ptsed.core.errors import ConfigError
from ptsed.hub.checkpoint import ptsed_to_released, released_to_ptsed
from ptsed.models.zoo import ARCHS

SMALL = {"depth": 2, "embed_dim": 48, "num_heads": 4, "ffn_dim": 96, "patch_embed_dim": 32, "conv_pos": 16,
         "conv_pos_groups": 4}  # fmt: skip


def _small(seed: int = 0, **overrides: float) -> BEATs:
    torch.manual_seed(seed)
    _, bb = build(**{**SMALL, **overrides})
    with torch.no_grad():  # non-trivial values for the parameters that start as constants
        for name, p in bb.named_parameters():
            if name.endswith(("grep_a", "original0")) or "norm" in name or name.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
    return bb.eval()


def _features(b: int = 2, frames: int = 160, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 1, 128, frames, generator=torch.Generator().manual_seed(seed))


def test_released_layout_round_trip() -> None:
    """ptsed's state dict, written in the released spelling, has exactly the manifest's keys and shapes."""
    require_shared()
    model = ptsed.create_model("beats", pretrained=False)
    released = ptsed_to_released(ARCHS["beats"], model.state_dict())
    expected = {e["key"]: tuple(e["shape"]) for e in manifest("BEATs")["entries"] if e["in_released_file"]}
    assert {k: tuple(v.shape) for k, v in released.items()} == expected


def test_legacy_weight_norm_spelling_and_single_bias_copy() -> None:
    """A file with ``weight_g``/``weight_v`` and the shared table listed once loads to the same model."""
    src = _small(0)
    released = {"model.model." + k: v.clone() for k, v in src.state_dict().items()}
    for leaf, old in (("original0", "weight_g"), ("original1", "weight_v")):
        released[f"model.model.encoder.pos_conv.0.{old}"] = released.pop(
            f"model.model.encoder.pos_conv.0.parametrizations.weight.{leaf}"
        )
    del released["model.model.encoder.layers.1.self_attn.relative_attention_bias.weight"]
    state = released_to_ptsed(ARCHS["beats"], released)
    dst = _small(1)
    missing, unexpected = dst.load_state_dict({k[len("backbone.") :]: v for k, v in state.items()})
    assert not missing and not unexpected
    feats = _features()
    with torch.no_grad():
        torch.testing.assert_close(dst(feats), src(feats), atol=0, rtol=0)


def test_last_bias_copy_wins_and_stays_shared() -> None:
    bb = _small(0)
    state = {k: v.clone() for k, v in bb.state_dict().items()}
    table = torch.randn_like(state["encoder.layers.1.self_attn.relative_attention_bias.weight"])
    state["encoder.layers.1.self_attn.relative_attention_bias.weight"] = table
    bb.load_state_dict(convert_released(state))
    for layer in bb.encoder.layers:
        assert layer.self_attn.relative_attention_bias is bb.encoder.layers[0].self_attn.relative_attention_bias
        torch.testing.assert_close(layer.self_attn.relative_attention_bias.weight.detach(), table)


def _reference_attention(attn: GatedRelativeAttention, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The reference formulation: temperature-shifted logits (alpha 32) plus the gated bias, explicit softmax."""
    b, n, d = x.shape
    h, hd = attn.num_heads, attn.head_dim
    scaling, alpha = hd**-0.5, 32.0
    q = (attn.q_proj(x) * scaling / alpha).view(b, n, h, hd).transpose(1, 2)
    k = attn.k_proj(x).view(b, n, h, hd).transpose(1, 2)
    v = attn.v_proj(x).view(b, n, h, hd).transpose(1, 2)
    logits = q @ k.transpose(-1, -2)
    logits = (logits - logits.amax(-1, keepdim=True)) * alpha
    g = torch.sigmoid(attn.grep_linear(q * alpha / scaling).view(b, h, n, 2, 4).sum(-1))
    gate = g[..., 0:1] * (g[..., 1:2] * attn.grep_a - 1.0) + 2.0
    w = torch.softmax(logits + gate * bias, dim=-1)
    return attn.out_proj((w @ v).transpose(1, 2).reshape(b, n, d))


def test_attention_matches_reference_formula() -> None:
    attn = _small(0).encoder.layers[0].self_attn
    x = torch.randn(2, 37, 48, generator=torch.Generator().manual_seed(3))
    bias = attn.position_bias(relative_position_buckets(37, 320, 800))
    with torch.no_grad():
        torch.testing.assert_close(attn(x, bias), _reference_attention(attn, x, bias), atol=2e-6, rtol=1e-5)


def test_relative_position_buckets() -> None:
    n = 1000
    bk = relative_position_buckets(n, 320, 800)
    assert bk.shape == (n, n) and bk.dtype == torch.long
    row = bk[500]  # offsets -500 .. 499 from query 500
    offset = torch.arange(n) - 500
    assert row[500] == 0
    small = offset.abs() < 80
    assert torch.equal(row[small & (offset > 0)], 160 + offset[small & (offset > 0)])
    assert torch.equal(row[small & (offset < 0)], -offset[small & (offset < 0)])

    def far(d: int) -> int:  # log-spaced buckets between 80 and 800 tokens
        return min(159, 80 + int(math.log(d / 80) / math.log(10) * 80))

    for d in (100, 150, 333, 499):
        assert bk[0, d] == 160 + far(d) and bk[d, 0] == far(d)
    assert bk[0, 999] == 319 and bk[999, 0] == 159  # beyond max_distance: the outermost bucket
    # buckets never decrease with distance, on either side
    assert torch.all(torch.diff(bk[0, 1:]) >= 0) and torch.all(torch.diff(bk[999].flip(0)[1:]) >= 0)


def test_shapes_hops_and_intermediates() -> None:
    bb = _small(0)
    feats = _features(frames=160)  # 1.6 s -> 10 time patches x 8 frequency patches
    with torch.no_grad():
        seq = bb(feats)
        inter = bb.forward_intermediates(feats)
        picked = bb.forward_intermediates(feats, [-1, 0])
    assert seq.shape == (2, 80, 48)
    assert len(inter) == 2 and torch.equal(inter[-1], seq)
    assert torch.equal(picked[0], seq) and torch.equal(picked[1], inter[0])
    assert bb.frame_hop_s == pytest.approx(0.02) and bb.max_input_s == pytest.approx(16.0)
    full = BEATs()
    assert full.num_layers == 12 and full.embed_dim == 768
    with pytest.raises(ValueError, match="at least 16"):
        bb(_features(frames=15))
    with pytest.raises(ValueError, match=r"\(B, 1, F, T\)"):
        bb(torch.zeros(2, 128, 100))


def test_param_groups_follow_upstream_layer_split() -> None:
    bb = _small(0)
    groups = bb.param_groups()
    assert len(groups) == 2
    stem = [n for n in groups[0] if not n.startswith("encoder.layers.0.")]
    assert sorted(stem) == sorted(n for n, _ in bb.named_parameters() if not n.startswith("encoder.layers.")) and any(
        "pos_conv" in n for n in stem
    )
    assert all(n.startswith("encoder.layers.1.") for n in groups[1])
    # the shared bias table is one parameter and counted once (in layer 0's group)
    assert sum("relative_attention_bias" in n for g in groups for n in g) == 1


def test_training_mode_and_gradients() -> None:
    bb = _small(0, layerdrop=0.0).train()  # every layer runs: each parameter must get a gradient
    torch.manual_seed(0)
    out = bb(_features(frames=64))
    out.square().mean().backward()
    no_grad = [n for n, p in bb.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad
    assert bb.encoder.layers[0].self_attn.relative_attention_bias.weight.grad.abs().sum() > 0


def test_builder_rejects_unknown_options() -> None:
    with pytest.raises(ConfigError, match="unknown BEATs option"):
        build(dept=2)


def test_layerdrop_skips_layers_in_training_only() -> None:
    bb = _small(0, layerdrop=1.0, dropout=0.0, dropout_input=0.0, attention_dropout=0.0)
    feats = _features(frames=32)
    with torch.no_grad():
        tokens = bb.tokens(feats)
        no_layers = bb.encoder.layer_norm(tokens + bb.encoder.pos_conv(tokens.transpose(1, 2)).transpose(1, 2))
        torch.testing.assert_close(bb.train()(feats), no_layers, atol=0, rtol=0)
        assert (bb.eval()(feats) - no_layers).abs().max() > 0.1
