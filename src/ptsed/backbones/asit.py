"""ASiT backbone (Atito et al., TASLP 2024): a ViT-Base over 16 x 16 patches of a Kaldi fbank.

Features (B, 1, 128, T) are transposed to (time, frequency) and patchified by a 16 x 16 conv into
``T // 16`` time steps x 8 frequency rows, time-major (8 consecutive tokens per 160 ms). The class token
is prepended and position embeddings are added: the trained table covers 8 x 37 patches and is resized
bicubically to the actual grid on every call (so any input length is accepted), exactly as upstream does,
including its quirk of reading the table as an (8, 37) grid. 12 pre-norm blocks and a final LayerNorm
give the sequence (B, 1 + 8 * (T // 16), 768), class token at index 0: (B, 497, 768) for 10 s.

Module names equal upstream's (``model.X`` in a released file is ``backbone.X`` here).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ptsed.backbones.vit import ViTBackbone
from ptsed.frontends.kaldi import ASIT_FBANK, KaldiFbank
from ptsed.layers.vit import PatchEmbed


class ASiT(ViTBackbone):
    """ASiT ViT: features (B, 1, F, T) -> (B, 1 + (F // 16) * (T // 16), embed_dim), class token first.

    Args:
        embed_dim: token width D.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width relative to D.
        n_mels: feature bins F.
        patch: patch side in bins and frames.
        pos_grid: grid (rows, cols) of the trained position table, as upstream reshapes it ((8, 37)).
        window_frames: feature frames of a 10 s input (998), which set the nominal ``frame_hop_s``.
        drop_rate: dropout after the position embeddings and in the blocks (training only).
        drop_path_rate: stochastic depth of the last block (linear ramp from 0), training only.
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        n_mels: int = 128,
        patch: int = 16,
        pos_grid: tuple[int, int] = (8, 37),
        window_frames: int = 998,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__(
            embed_dim, depth, num_heads, mlp_ratio, qkv_bias=True, drop_rate=drop_rate, drop_path_rate=drop_path_rate
        )
        self.patch = patch
        self.pos_grid = pos_grid
        tokens_10s = 1 + (window_frames // patch) * (n_mels // patch)
        self.frame_hop_s = 10.0 / tokens_10s  # nominal: S tokens per 10 s, class token included
        self.max_input_s = math.inf  # the position table is resized to any grid
        self.patch_embed = PatchEmbed(patch, 1, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, pos_grid[0] * pos_grid[1] + 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def _positions(self, frames: int, bins: int) -> torch.Tensor:
        """Position embeddings (1, 1 + rows * cols, D) for a (frames x bins) input, resized as upstream."""
        n = self.pos_embed.shape[1] - 1
        if (frames / self.patch) * (bins / self.patch) == n:
            return self.pos_embed
        rows, cols = frames // self.patch, bins // self.patch
        grid = self.pos_embed[:, 1:].transpose(1, 2).reshape(1, -1, *self.pos_grid)
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
        return torch.cat([self.pos_embed[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, 1, F, T) -> class token and patch tokens with positions (B, 1 + (T // 16) * (F // 16), D)."""
        x = features.transpose(2, 3)  # (B, 1, T, F)
        frames, bins = x.shape[-2:]
        x = self.patch_embed(x)  # (B, (T // 16) * (F // 16), D), time-major
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos_drop(x + self._positions(frames, bins))


def convert_released(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept upstream's in-memory wrapper spelling too: ``model.asit.X`` (renamed ``backbone.asit.X`` by
    the ``model.`` prefix) becomes ``backbone.X``; released files spell it ``model.X``."""
    return {
        ("backbone." + k[len("backbone.asit.") :] if k.startswith("backbone.asit.") else k): v for k, v in state.items()
    }


def build(**kwargs: Any) -> tuple[KaldiFbank, ASiT]:
    """ASiT front-end (Kaldi fbank, Hann window, clip mean removed, 128 bins) and backbone; keyword
    arguments go to :class:`ASiT` (e.g. ``depth=2``)."""
    frontend = KaldiFbank(ASIT_FBANK)
    return frontend, ASiT(n_mels=frontend.n_bins, **kwargs)
