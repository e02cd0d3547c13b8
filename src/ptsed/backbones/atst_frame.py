"""ATST-Frame backbone (Li et al., TASLP 2024): a ViT over 64 x 4 spectrogram patches, one token per 40 ms.

Features (B, 1, 64, T) are cut into ``T // 4`` patches of 64 mel bins x 4 frames (a trailing remainder of
fewer than 4 frames is dropped), each flattened bin-major and projected by a linear layer to D = 768.
Learned position embeddings (the first ``T // 4`` of 250, the table's first slot being an unused class
position) are added, 12 pre-norm blocks without qkv bias follow, and ``norm_frame`` gives the output
sequence (B, T // 4, 768): upstream's ``get_intermediate_layers(x, length, n=1, scene=False)``.

Module names equal upstream's (``model.atst.X`` in a released file is ``backbone.X`` here).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ptsed.backbones.vit import ViTBackbone
from ptsed.frontends.atst import ATSTMel


class PatchEmbedLinear(nn.Module):
    """Patches of ``patch_h`` bins x ``patch_w`` frames, flattened as (bin, frame) and projected linearly.

    The only parameter is ``patch_embed`` (a Linear), as upstream names it.
    """

    def __init__(self, patch_h: int = 64, patch_w: int = 4, embed_dim: int = 768, in_chans: int = 1) -> None:
        super().__init__()
        self.patch_h = patch_h
        self.patch_w = patch_w
        self.patch_embed = nn.Linear(patch_h * patch_w * in_chans, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, F, T) -> tokens (B, (T // pw) * (F // ph), D), time-major."""
        b, c, f, t = x.shape
        nh, nw = f // self.patch_h, t // self.patch_w
        x = x[:, :, : nh * self.patch_h, : nw * self.patch_w]
        x = x.reshape(b, c, nh, self.patch_h, nw, self.patch_w).permute(0, 4, 2, 3, 5, 1)
        return self.patch_embed(x.reshape(b, nw * nh, self.patch_h * self.patch_w * c))


class ATSTFrame(ViTBackbone):
    """ATST-Frame transformer: features (B, 1, 64, T) -> (B, T // 4, 768).

    Args:
        embed_dim: token width D.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width relative to D.
        n_mels: feature bins F (= patch height).
        patch_w: frames per patch.
        max_frames: feature frames covered by the position table (1001 for 10 s).
        drop_rate: dropout (training only; upstream's fine-tuning uses 0).
        drop_path_rate: stochastic depth of the last block (linear ramp from 0).
    """

    def __init__(
        self,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        n_mels: int = 64,
        patch_w: int = 4,
        max_frames: int = 1001,
        hop_s: float = 0.01,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__(
            embed_dim,
            depth,
            num_heads,
            mlp_ratio,
            qkv_bias=False,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            norm_name="norm_frame",
            stem=("patch_embed.", "pos_embed", "mask_embed"),
        )
        self.frame_hop_s = patch_w * hop_s
        num_patches = max_frames // patch_w
        self.max_input_s = num_patches * patch_w * hop_s
        self.patch_embed = PatchEmbedLinear(n_mels, patch_w, embed_dim)
        self.mask_embed = nn.Parameter(torch.zeros(1, 1, embed_dim))  # masked-prediction token (pre-training)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.mask_embed, std=0.02)

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, 1, 64, T) -> patch tokens with positions (B, T // 4, D)."""
        x = self.patch_embed(features)
        n = x.shape[1]
        if n > self.pos_embed.shape[1] - 1:
            raise ValueError(
                f"ATST-Frame takes at most {self.max_input_s:g} s ({self.pos_embed.shape[1] - 1} patches); "
                f"got features of {features.shape[-1]} frames ({n} patches)"
            )
        return self.pos_drop(x + self.pos_embed[:, 1 : n + 1])


def build(**kwargs: Any) -> tuple[ATSTMel, ATSTFrame]:
    """ATST-Frame front-end and backbone; keyword arguments go to :class:`ATSTFrame` (e.g. ``depth=2``)."""
    return ATSTMel(), ATSTFrame(**kwargs)
