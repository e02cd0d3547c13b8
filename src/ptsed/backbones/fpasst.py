"""Frame-level PaSST ("fPaSST") of PretrainedSED.

PaSST (Koutini et al., Interspeech 2022) made frame-level (Schmid et al., ICASSP 2025): three 3x3
convolutions (strides 2, 1, 2) shrink the log-mel input (B, 1, 128, T) to (B, 64, 32, T / 4), the
channel-frequency plane is regrouped into 16 maps of 128 bins, and a patch convolution spanning all 128
bins and 2 frames turns every 40 ms step into one token. Time and frequency position embeddings are added
separately (``time_new_pos_embed``, ``freq_new_pos_embed``), a class and a distillation token with their
own position embedding (``new_pos_embed``) are prepended, and a DeiT-B encoder (12 blocks, 768 wide) follows.
The output is the final-norm tokens without the two extra tokens: (B, T / 4, 768), 250 frames per 10 s.

Module names match the released checkpoints (``conv_in_1``, ``patch_embed.proj``, ``blocks.N...``, ``norm``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ptsed.backbones.base import Backbone
from ptsed.core.frames import FRAME_HOP_S
from ptsed.frontends.mel_stft import MelSTFT
from ptsed.layers.vit import PatchEmbed, block_param_groups, make_blocks

_STEM = (
    "cls_token",
    "dist_token",
    "new_pos_embed",
    "freq_new_pos_embed",
    "time_new_pos_embed",
    "conv_in_",
    "patch_embed.",
)


class FPaSST(Backbone):
    """Frame-level PaSST: features (B, 1, F, T) -> (B, S, embed_dim), S = ceil(T / 4).

    Args:
        n_mels: frequency bins F of the input (divisible by 4; the patch spans all of them).
        embed_dim: token width D.
        depth: number of transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width relative to D.
        pos_embed_length: frames of the time position embedding (250 = 10 s).
        drop_path_rate: stochastic depth of the last block (training only).

    Attributes:
        max_input_s: ``pos_embed_length * 0.04`` seconds (10 s): the time position table ends there.
        num_layers: ``depth``; layer ``depth - 1`` includes the final LayerNorm.
    """

    frame_hop_s = FRAME_HOP_S

    def __init__(
        self,
        n_mels: int = 128,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        pos_embed_length: int = 250,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if n_mels % 4:
            raise ValueError(f"fpasst needs a number of mel bins divisible by 4, got {n_mels}")
        self.n_mels = n_mels
        self.embed_dim = embed_dim
        self.num_layers = depth
        self.pos_embed_length = pos_embed_length
        self.max_input_s = pos_embed_length * self.frame_hop_s
        self.conv_in_1 = nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1)
        self.conv_in_2 = nn.Conv2d(16, 32, kernel_size=3, stride=1, padding=1)
        self.conv_in_3 = nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1)
        # after conv_in_3: 64 channels x F / 4 bins, regrouped into 16 maps of F bins
        self.patch_embed = PatchEmbed((n_mels, 2), in_chans=16, embed_dim=embed_dim, stride=1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, embed_dim))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, 1, 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, 1, pos_embed_length))
        self.blocks = make_blocks(
            depth, embed_dim, num_heads, drop_path_rate=drop_path_rate, mlp_ratio=mlp_ratio, qkv_bias=True, eps=1e-6
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        for p in (
            self.cls_token,
            self.dist_token,
            self.new_pos_embed,
            self.freq_new_pos_embed,
            self.time_new_pos_embed,
        ):
            nn.init.trunc_normal_(p, std=0.02)

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, 1, F, T) -> encoder input (B, 2 + S, D): [cls, dist, frame tokens]."""
        b, _, f, t = features.shape
        if f != self.n_mels:
            raise ValueError(f"fpasst expects {self.n_mels} mel bins, got features of shape {tuple(features.shape)}")
        x = F.gelu(self.conv_in_1(features))
        x = F.gelu(self.conv_in_2(x))
        x = F.gelu(self.conv_in_3(x))  # (B, 64, F / 4, S)
        x = x.reshape(b, x.shape[1] * x.shape[2] // f, f, x.shape[3])  # (B, 16, F, S)
        # kernel (F, 2) over frames (s, s + 1), the last frame paired with a zero column
        x = self.patch_embed(F.pad(x, (0, 1)), flatten=False)  # (B, D, 1, S)
        pos = self.time_new_pos_embed
        s, limit = x.shape[-1], pos.shape[-1]
        if s > limit + 1:
            raise ValueError(
                f"fpasst takes at most {self.max_input_s:g} s per window ({limit} frames); these features give "
                f"{s} frames: split longer audio into windows (ptsed's inference does this)"
            )
        if s > limit:  # one frame of rounding slack, cut as upstream does
            x, s = x[..., :limit], limit
        elif s < limit:
            offset = int(torch.randint(1 + limit - s, (1,))) if self.training else 0
            pos = pos[..., offset : offset + s]
        x = (x + pos + self.freq_new_pos_embed).flatten(2).transpose(1, 2)  # (B, S, D)
        cls = self.cls_token.expand(b, -1, -1) + self.new_pos_embed[:, :1]
        dist = self.dist_token.expand(b, -1, -1) + self.new_pos_embed[:, 1:]
        return torch.cat((cls, dist, x), dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, 1, F, T) -> frame embeddings (B, S, embed_dim)."""
        x = self.tokens(features)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 2:]

    def forward_intermediates(self, features: torch.Tensor, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Frame tokens (B, S, D) after the chosen blocks (the cls/dist tokens removed).

        Layer ``num_layers - 1`` includes the final LayerNorm (it equals :meth:`forward`); earlier layers are
        the raw block outputs. Blocks above the highest requested index are not run.
        """
        wanted = self.resolve_indices(indices, self.num_layers)
        outs: dict[int, torch.Tensor] = {}
        x = self.tokens(features)
        for i, blk in enumerate(self.blocks[: max(wanted) + 1]):
            x = blk(x)
            if i in wanted:
                y = self.norm(x) if i == self.num_layers - 1 else x
                outs[i] = y[:, 2:]
        return [outs[i] for i in wanted]

    def param_groups(self) -> list[list[str]]:
        """As upstream's ``separate_params``: tokens, position tables, input convs and patch embedding join
        block 0; the final norm joins the last block."""
        return block_param_groups(self, self.num_layers, stem=_STEM, top=("norm.",))


def build(
    n_mels: int = 128,
    embed_dim: int = 768,
    depth: int = 12,
    num_heads: int = 12,
    pos_embed_length: int = 250,
    drop_path_rate: float = 0.0,
    **frontend_kwargs: Any,
) -> tuple[MelSTFT, FPaSST]:
    """Front-end (periodic-window log-mel) and :class:`FPaSST`; smaller sizes give tiny test models.

    ``frontend_kwargs`` go to :class:`~ptsed.frontends.mel_stft.MelSTFT`.
    """
    frontend = MelSTFT(n_mels=n_mels, periodic_window=True, **frontend_kwargs)
    backbone = FPaSST(
        n_mels=n_mels,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        pos_embed_length=pos_embed_length,
        drop_path_rate=drop_path_rate,
    )
    return frontend, backbone


__all__ = ["FPaSST", "build"]
