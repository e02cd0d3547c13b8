"""M2D backbone (Niizumi et al.): a ViT-Base over 16 x 16 log-mel patches, five frequency rows stacked.

Features (B, 1, 80, T) are encoded in chunks of 1001 frames (10 s; the last chunk is zero-padded to a
multiple of 16 frames). In each chunk a 16 x 16 conv patchifies the spectrogram into 5 frequency rows x
``frames // 16`` columns (frequency-major token order), learned position embeddings are added (cut to the
columns present), the class token is prepended, 12 pre-norm blocks and a final LayerNorm follow. The class
token is dropped and the 5 rows of each column are concatenated, giving (B, S, 5 * 768) = (B, 62, 3840)
for 10 s: upstream's ``PortableM2D.forward_mel`` with ``flat_features=False``.

Module names equal upstream's (``model.backbone.X`` in a released file is ``backbone.X`` here). The
released ``norm_stats`` is kept as a buffer for a faithful export; the forward pass never reads it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ptsed.backbones.vit import ViTBackbone
from ptsed.frontends.m2d import M2D_MEAN, M2D_STD, M2DMel
from ptsed.layers.vit import PatchEmbed


class M2D(ViTBackbone):
    """M2D ViT: features (B, 1, 80, T) -> (B, S, (80 // 16) * embed_dim), S = 62 per 10 s chunk.

    Args:
        embed_dim: token width D.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width relative to D.
        n_mels: feature bins F.
        patch_size: (bins, frames) of a patch.
        chunk_frames: frames per chunk, the width the position table was trained for (1001 = 10 s).
        hop_s: hop of the feature frames in seconds.
        drop_path_rate: stochastic depth of the last block (linear ramp from 0), training only.
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        n_mels: int = 80,
        patch_size: tuple[int, int] = (16, 16),
        chunk_frames: int = 1001,
        hop_s: float = 0.01,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__(embed_dim, depth, num_heads, mlp_ratio, qkv_bias=True, drop_path_rate=drop_path_rate)
        self.chunk_frames = chunk_frames
        self.patch_embed = PatchEmbed(patch_size, 1, embed_dim)
        self.grid = self.patch_embed.grid_size(n_mels, chunk_frames)  # (5, 62)
        self.embed_dim = self.grid[0] * embed_dim  # the rows of a column are concatenated
        self.frame_hop_s = patch_size[1] * hop_s
        self.max_input_s = math.inf  # longer inputs are encoded in chunks of ``chunk_frames``
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1] + 1, embed_dim))
        self.register_buffer("norm_stats", torch.tensor([M2D_MEAN, M2D_STD]))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def _chunks(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Split (B, 1, F, T) into upstream's chunks, batched: full chunks (B * n, 1, F, chunk) and the rest."""
        unit, pw = self.chunk_frames, self.patch_embed.patch_size[1]
        t = features.shape[-1]
        pad = (pw - (t % unit % pw)) % pw
        if pad:
            features = F.pad(features, (0, pad))
            t += pad
        n_full = t // unit
        parts = []
        if n_full:
            full = features[..., : n_full * unit]
            b, c, f, _ = full.shape
            parts.append(full.reshape(b, c, f, n_full, unit).permute(0, 3, 1, 2, 4).reshape(b * n_full, c, f, unit))
        if t > n_full * unit:
            parts.append(features[..., n_full * unit :])
        return parts

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """One chunk (B', 1, F, T' <= chunk_frames) -> class token and patch tokens (B', 1 + rows * cols, D)."""
        x = self.patch_embed(features)
        pos = self.pos_embed[:, 1:]
        if x.shape[1] < pos.shape[1]:  # a short chunk: the first columns of the table
            rows = self.grid[0]
            cols = x.shape[1] // rows
            pos = pos.reshape(1, rows, -1, pos.shape[-1])[:, :, :cols].reshape(1, rows * cols, -1)
        x = x + pos
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Block output (B', 1 + rows * cols, D) -> normalised, class token dropped, (B', cols, rows * D)."""
        x = self.norm(x)[:, 1:]
        bn, n_tok, d = x.shape
        rows = self.grid[0]
        return x.reshape(bn, rows, n_tok // rows, d).permute(0, 2, 1, 3).reshape(bn, n_tok // rows, rows * d)

    def run(self, features: torch.Tensor, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Encode the chunks (at most two groups: the full chunks, batched, and the rest) and concatenate
        them in time: (B, S, rows * D) per requested output; S = 62 for T = 1001."""
        batch = features.shape[0]
        per_chunk = []
        for chunk in self._chunks(features):
            outs = self.encode(self.tokens(chunk), indices)
            per_chunk.append([o.reshape(batch, -1, o.shape[-1]) for o in outs])
        return [torch.cat(seqs, dim=1) if len(seqs) > 1 else seqs[0] for seqs in zip(*per_chunk, strict=True)]


def build(**kwargs: Any) -> tuple[M2DMel, M2D]:
    """M2D front-end and backbone; keyword arguments go to :class:`M2D` (e.g. ``depth=2``)."""
    return M2DMel(), M2D(**kwargs)
