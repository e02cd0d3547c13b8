"""Common body of the plain ViT backbones (ATST-Frame, M2D, ASiT): tokens -> pre-norm blocks -> final norm.

A subclass builds its embeddings, implements :meth:`ViTBackbone.tokens` (features -> tokens) and, where
upstream reshapes the normalised tokens, :meth:`ViTBackbone.finish` (or, where it splits the input into
chunks, :meth:`ViTBackbone.run`). ``forward``,
``forward_intermediates`` (every chosen block through the final norm and ``finish``, as upstream's
``get_intermediate_layers``) and ``param_groups`` (as upstream's ``separate_params``) come from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ptsed.backbones.base import Backbone
from ptsed.layers.vit import block_param_groups, make_blocks, run_blocks


class ViTBackbone(Backbone):
    """Blocks ``blocks.0 .. blocks.{depth-1}`` and a final LayerNorm named ``norm_name``.

    Args:
        embed_dim: token width D.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width relative to D.
        qkv_bias: bias on the qkv projections.
        drop_rate: dropout in the blocks (training only).
        drop_path_rate: stochastic depth of the last block (linear ramp from 0), training only.
        norm_name: attribute name of the final LayerNorm (upstream's name, for the key mapping).
        stem: names (prefixes) of the input-side parameters, grouped with block 0 by :meth:`param_groups`.
    """

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_name: str = "norm",
        stem: Sequence[str] = ("cls_token", "pos_embed", "patch_embed."),
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_layers = depth
        self._norm_name = norm_name
        self._stem = tuple(stem)
        self.blocks = make_blocks(
            depth,
            embed_dim,
            num_heads,
            drop_path_rate,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop=drop_rate,
            eps=1e-6,
        )
        setattr(self, norm_name, nn.LayerNorm(embed_dim, eps=1e-6))

    def tokens(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """features (B, 1, F, T) -> tokens (B, N, D) ready for the first block."""
        raise NotImplementedError

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Block output (B, N, D) -> output sequence; by default the final LayerNorm."""
        return getattr(self, self._norm_name)(x)

    def encode(self, tokens: torch.Tensor, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Run the blocks on ``tokens``; ``[finish(last block)]`` for ``indices=None``, else ``finish`` of
        each block in the sorted, de-duplicated ``indices`` (0-based), stopping after the highest."""
        if indices is None:
            x, _ = run_blocks(self.blocks, tokens)
            return [self.finish(x)]
        _, outs = run_blocks(self.blocks, tokens, collect=indices, stop_early=True)
        return [self.finish(o) for o in outs]

    def run(self, features: torch.Tensor, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """``encode(tokens(features), indices)``; a subclass that splits the input overrides this."""
        return self.encode(self.tokens(features), indices)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, 1, F, T) -> sequence (B, S, embed_dim)."""
        return self.run(features)[0]

    def forward_intermediates(self, features: torch.Tensor, indices: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Outputs of the blocks in ``indices`` through the final norm (and ``finish``), like :meth:`forward`."""
        idx = self.resolve_indices(indices, self.num_layers)
        uniq = sorted(set(idx))
        by_index = dict(zip(uniq, self.run(features, uniq), strict=True))
        return [by_index[i] for i in idx]

    def param_groups(self) -> list[list[str]]:
        """One group per block; the stem joins block 0 and the final norm joins the last block."""
        return block_param_groups(self, self.num_layers, stem=self._stem, top=(f"{self._norm_name}.",))
