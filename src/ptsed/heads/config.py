"""The settings of the prediction head, without torch: the zoo table reads them without loading a model."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class HeadConfig:
    """Settings of :class:`SEDHead`.

    Attributes:
        n_strong: number of strong (frame-level) classes; 0 for a head-less model (ssl stage).
        n_weak: number of weak (clip-level) classes; ``None`` means ``n_strong``.
        rnn_dim: hidden size of the BiGRU of the teacher form (upstream: 2048); ``None`` for the student.
        rnn_layers: number of BiGRU layers (upstream: 2).
        rnn_dropout: dropout between BiGRU layers.
        head_type: ``"linear"`` (strong and weak linear heads) or ``"attention"`` (weak = attention
            pooling of the strong probabilities, for DESED-style weak labels).
    """

    n_strong: int = 447
    n_weak: int | None = None
    rnn_dim: int | None = None
    rnn_layers: int = 2
    rnn_dropout: float = 0.0
    head_type: str = "linear"

    @property
    def is_teacher(self) -> bool:
        return self.rnn_dim is not None

    def to_dict(self) -> dict:
        return asdict(self)
