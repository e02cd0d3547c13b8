"""The prediction head of every ptsed model (Eq. 1-3 of Schmid et al., ICASSP 2025).

The backbone sequence (B, S, D) is resampled to the 40 ms frame grid (average pooling when longer,
linear interpolation when shorter), optionally passed through a BiGRU (the "teacher" form), and mapped
by linear heads to strong frame logits (B, K, T) and weak clip logits (B, K_weak).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ptsed.heads.config import HeadConfig

__all__ = ["BiGRU", "HeadConfig", "SEDHead", "resample_sequence"]


class BiGRU(nn.Module):
    """Bidirectional GRU on (B, T, D) -> (B, T, 2 * hidden). Submodule name ``rnn`` as upstream."""

    def __init__(self, n_in: int, hidden: int, num_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.rnn = nn.GRU(n_in, hidden, num_layers=num_layers, dropout=dropout, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def resample_sequence(x: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Map a sequence (B, S, D) to (B, seq_len, D) as upstream does.

    Longer sequences are average-pooled (``adaptive_avg_pool1d``), shorter ones linearly interpolated
    (``align_corners=False``); a sequence of the right length is returned unchanged.
    """
    s = x.size(1)
    if s == seq_len:
        return x
    x = x.transpose(1, 2)
    x = F.adaptive_avg_pool1d(x, seq_len) if s > seq_len else F.interpolate(x, size=seq_len, mode="linear")
    return x.transpose(1, 2)


class SEDHead(nn.Module):
    """Optional BiGRU plus strong and weak heads.

    Submodule names follow upstream's ``PredictionsWrapper`` (``seq_model.rnn``, ``strong_head``,
    ``weak_head``), so released checkpoints map onto it with a plain prefix.
    """

    def __init__(self, embed_dim: int, config: HeadConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or HeadConfig()
        self.embed_dim = embed_dim
        if config.rnn_dim is not None:
            self.seq_model: nn.Module = BiGRU(embed_dim, config.rnn_dim, config.rnn_layers, config.rnn_dropout)
            num_features = 2 * config.rnn_dim
        else:
            self.seq_model = nn.Identity()
            num_features = embed_dim
        self.num_features = num_features
        if config.head_type not in ("linear", "attention"):
            raise ValueError(f"unknown head_type {config.head_type!r}; expected 'linear' or 'attention'")
        n_weak = config.n_weak if config.n_weak is not None else config.n_strong
        if config.head_type == "attention" and n_weak != config.n_strong:
            raise ValueError("head_type='attention' needs as many weak classes as strong classes")
        self.has_heads = config.n_strong > 0
        if self.has_heads:
            self.strong_head = nn.Linear(num_features, config.n_strong)
            self.weak_head = nn.Linear(num_features, n_weak)

    def embed(self, sequence: torch.Tensor, seq_len: int) -> torch.Tensor:
        """Backbone sequence (B, S, D) -> head input (B, seq_len, num_features) (after the BiGRU)."""
        return self.seq_model(resample_sequence(sequence, seq_len))

    def forward(self, sequence: torch.Tensor, seq_len: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone sequence (B, S, D) -> strong logits (B, K, seq_len) and weak logits (B, K_weak).

        With ``head_type="attention"`` both outputs are probabilities, as upstream.
        """
        if not self.has_heads:
            raise RuntimeError("this model has no classification heads (ssl stage); use its embeddings")
        x = self.embed(sequence, seq_len)
        if self.config.head_type == "attention":
            strong = torch.sigmoid(self.strong_head(x))
            att = torch.softmax(self.weak_head(x), dim=-1).clamp(1e-7, 1.0)
            weak = (strong * att).sum(1) / att.sum(1)
            return strong.transpose(1, 2), weak
        strong = self.strong_head(x)
        weak = self.weak_head(x.mean(dim=1))
        return strong.transpose(1, 2), weak
