"""Shared ViT layers: timm-compatible names, attention equals the explicit softmax formula."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ptsed.layers.vit import Attention, Block, PatchEmbed, block_param_groups, make_blocks, run_blocks


def test_attention_matches_explicit_softmax() -> None:
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4, qkv_bias=True).eval()
    x = torch.randn(2, 7, 32)
    b, n, d = x.shape
    q, k, v = attn.qkv(x).reshape(b, n, 3, 4, 8).permute(2, 0, 3, 1, 4)
    w = ((q @ k.transpose(-2, -1)) * 8**-0.5).softmax(-1)
    ref = attn.proj((w @ v).transpose(1, 2).reshape(b, n, d))
    torch.testing.assert_close(attn(x), ref, atol=1e-5, rtol=1e-5)


def test_block_names_are_timm_names() -> None:
    names = {n for n, _ in Block(16, 2, qkv_bias=False).named_parameters()}
    assert "attn.qkv.weight" in names and "attn.qkv.bias" not in names
    assert {"norm1.weight", "norm2.bias", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.bias"} <= names
    scaled = {n for n, _ in Block(16, 2, init_values=0.1).named_parameters()}
    assert {"ls1.gamma", "ls2.gamma"} <= scaled


def test_block_residual_form() -> None:
    torch.manual_seed(0)
    blk = Block(16, 2, qkv_bias=True, eps=1e-6).eval()
    x = torch.randn(3, 5, 16)
    h = x + blk.attn(blk.norm1(x))
    torch.testing.assert_close(blk(x), h + blk.mlp(blk.norm2(h)))


def test_run_blocks_collects_and_stops() -> None:
    blocks = make_blocks(3, 16, 2, qkv_bias=True).eval()
    x = torch.randn(1, 4, 16)
    y, outs = run_blocks(blocks, x, collect=[0, 2])
    assert len(outs) == 2 and torch.equal(outs[1], y)
    y1, outs1 = run_blocks(blocks, x, collect=[0], stop_early=True)
    assert torch.equal(y1, outs[0]) and torch.equal(outs1[0], outs[0])


def test_patch_embed_grid() -> None:
    pe = PatchEmbed((16, 16), 1, 8)
    for w in (16, 31, 1001):
        assert pe(torch.randn(1, 1, 80, w)).shape[1] == pe.grid_size(80, w)[0] * pe.grid_size(80, w)[1]


def test_param_groups_cover_every_parameter_once() -> None:
    m = nn.Module()
    m.stem = nn.Linear(2, 2)
    m.blocks = make_blocks(2, 8, 2)
    m.norm = nn.LayerNorm(8)
    groups = block_param_groups(m, 2, stem=("stem.",), top=("norm.",))
    flat = [n for g in groups for n in g]
    assert sorted(flat) == sorted(n for n, _ in m.named_parameters())
    assert "stem.weight" in groups[0] and "norm.weight" in groups[1]
    m.extra = nn.Linear(1, 1)
    with pytest.raises(ValueError, match="extra"):
        block_param_groups(m, 2, stem=("stem.",), top=("norm.",))
