"""The backbone protocol shared by all seven model families.

A backbone maps front-end features (B, 1, F, T) to a sequence of frame embeddings (B, S, D). Every
backbone offers the same interface, so inference, the HEAR API and training never special-case a family:

- ``embed_dim``: D of the final output sequence.
- ``frame_hop_s``: nominal hop of the output sequence in seconds (10 s / S for a 10 s input).
- ``max_input_s``: the longest input (in seconds) that the position embeddings allow.
- ``num_layers``: number of blocks that :meth:`forward_intermediates` can return.
- ``forward(features)``: the final sequence (B, S, D), exactly the upstream output.
- ``forward_intermediates(features, indices)``: the outputs of chosen blocks, each (B, S, D_i).
- ``param_groups()``: parameter names grouped by depth (input side first) for layer-wise LR decay.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ptsed.core.frames import FRAME_HOP_S


class Backbone(nn.Module):
    """Base class of every backbone; subclasses set the attributes and implement the methods."""

    embed_dim: int = 0
    frame_hop_s: float = FRAME_HOP_S
    max_input_s: float = 10.0
    num_layers: int = 0

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """features (B, 1, F, T) -> sequence (B, S, embed_dim)."""
        raise NotImplementedError

    def forward_intermediates(
        self, features: torch.Tensor, indices: Sequence[int] | None = None
    ) -> list[torch.Tensor]:  # pragma: no cover - abstract
        """Outputs of the blocks in ``indices`` (0-based, negative counts from the top; ``None``: all).

        Each item is (B, S, D_i), on the same token grid as :meth:`forward`. The item for the last block
        equals ``forward(features)``.
        """
        raise NotImplementedError

    def param_groups(self) -> list[list[str]]:  # pragma: no cover - abstract
        """Names of all parameters grouped by depth, group 0 nearest the input. Every parameter is in
        exactly one group."""
        raise NotImplementedError

    @staticmethod
    def resolve_indices(indices: Sequence[int] | None, num_layers: int) -> list[int]:
        """Normalise block indices (negative ones count from the top) and check their range."""
        if indices is None:
            return list(range(num_layers))
        out = []
        for i in indices:
            j = i + num_layers if i < 0 else i
            if not 0 <= j < num_layers:
                raise ValueError(f"layer index {i} is out of range for a backbone with {num_layers} layers")
            out.append(j)
        return out
