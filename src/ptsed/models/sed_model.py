"""SEDModel = front-end + backbone + head, the one model class of ptsed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ptsed.backbones.base import Backbone
from ptsed.core.frames import FRAME_HOP_S
from ptsed.frontends.base import Frontend
from ptsed.heads.sed_head import HeadConfig, SEDHead


@dataclass
class SEDOutput:
    """What a model returns for a waveform batch.

    Attributes:
        strong_logits: frame logits (B, K, T), T = 25 frames per second (250 per 10 s); ``None`` for a
            head-less model. Probabilities (not logits) for ``head_type="attention"``.
        weak_logits: clip logits (B, K_weak), or ``None``.
        sequence: the backbone output (B, S, D) before resampling to the frame grid.
    """

    strong_logits: torch.Tensor | None
    weak_logits: torch.Tensor | None
    sequence: torch.Tensor


class SEDModel(nn.Module):
    """A complete sound event detection model.

    Call it on a waveform batch (B, N) at ``sample_rate``; the front-end runs inside. Build it with
    :func:`ptsed.create_model`, which returns it in eval mode.

    Attributes:
        name: zoo name (``"beats.as_strong"``), or the name of a fine-tuned checkpoint.
        arch: architecture name (``"beats"``); ``builder_kwargs`` are the builder's overrides.
        sample_rate: input sample rate in Hz.
        frame_hop_s: hop of the output frames in seconds (0.04).
        window_s: clip length in seconds the model was trained on (10 s); inference cuts windows of it.
        backbone_layer: ``None`` (the backbone output) or the backbone block whose output feeds the head
            (``-N - 1`` drops the top N blocks; see :meth:`backbone_sequence`).
    """

    def __init__(
        self,
        frontend: Frontend,
        backbone: Backbone,
        head_config: HeadConfig | None = None,
        *,
        name: str = "",
        labels: Sequence[str] | None = None,
        vocabulary: str | None = None,
        window_s: float = 10.0,
        arch: str = "",
        builder_kwargs: dict | None = None,
        backbone_layer: int | None = None,
    ) -> None:
        super().__init__()
        self.frontend = frontend
        self.backbone = backbone
        self.backbone_layer = None if backbone_layer is None else int(backbone_layer)
        if self.backbone_layer is not None:
            backbone.resolve_indices([self.backbone_layer], backbone.num_layers)
        head_dim = backbone.embed_dim if self.backbone_layer is None else self._sequence_dim(window_s)
        self.head = SEDHead(head_dim, head_config)
        self.name = name
        self.sample_rate = frontend.sample_rate
        self.frame_hop_s = FRAME_HOP_S
        self.window_s = window_s
        self.vocabulary = vocabulary
        self.arch = arch or name.partition(".")[0]
        self.builder_kwargs = dict(builder_kwargs or {})
        self.checkpoint_extra: dict = {}
        self._labels = list(labels) if labels is not None else None

    # -- metadata -----------------------------------------------------------------------------------------
    @property
    def head_config(self) -> HeadConfig:
        return self.head.config

    @property
    def num_classes(self) -> int:
        return self.head.config.n_strong

    @property
    def labels(self) -> list[str]:
        """Class names in output order (resolved from the label vocabulary on first use)."""
        if self._labels is None:
            if self.vocabulary is None:
                self._labels = [f"class_{i}" for i in range(self.num_classes)]
            else:
                from ptsed.hub.labels import get_labels

                self._labels = get_labels(self.vocabulary)
        if len(self._labels) != self.num_classes and self.num_classes > 0:
            raise RuntimeError(f"model {self.name!r} has {self.num_classes} outputs but {len(self._labels)} labels")
        return list(self._labels)

    @labels.setter
    def labels(self, value: Sequence[str]) -> None:
        self._labels = list(value)

    def frames_for(self, num_samples: int) -> int:
        """Number of output frames for ``num_samples`` input samples (250 for 10 s)."""
        return max(1, round(num_samples / self.sample_rate / self.frame_hop_s))

    # -- computation ----------------------------------------------------------------------------------
    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """waveform (B, N) -> front-end features (B, 1, F, T_feat)."""
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.dim() != 2:
            raise ValueError(f"expected a waveform batch of shape (B, N), got {tuple(waveform.shape)}")
        return self.frontend(waveform)

    def backbone_sequence(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, 1, F, T_feat) -> the sequence (B, S, D) the head reads: the backbone output, or the
        output of block ``backbone_layer`` when top blocks are dropped."""
        if self.backbone_layer is None:
            return self.backbone(features)
        return self.backbone.forward_intermediates(features, [self.backbone_layer])[0]

    def _sequence_dim(self, window_s: float) -> int:
        """D of block ``backbone_layer``, measured on one window of silence."""
        modes = self.frontend.training, self.backbone.training
        self.frontend.eval()
        self.backbone.eval()
        with torch.no_grad():
            wave = torch.zeros(1, round(window_s * self.frontend.sample_rate))
            dim = self.backbone_sequence(self.frontend(wave)).shape[-1]
        self.frontend.train(modes[0])
        self.backbone.train(modes[1])
        return int(dim)

    def forward_features(self, features: torch.Tensor, num_frames: int | None = None) -> SEDOutput:
        """features (B, 1, F, T_feat) -> :class:`SEDOutput` with ``num_frames`` output frames (250)."""
        sequence = self.backbone_sequence(features)
        if not self.head.has_heads:
            return SEDOutput(None, None, sequence)
        strong, weak = self.head(sequence, num_frames or 250)
        return SEDOutput(strong, weak, sequence)

    def forward(self, waveform: torch.Tensor) -> SEDOutput:
        """waveform (B, N) at ``sample_rate`` -> :class:`SEDOutput`; T = N / sample_rate / 0.04 frames."""
        return self.forward_features(self.features(waveform), self.frames_for(waveform.shape[-1]))

    def embed(self, waveform: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """Frame embeddings (B, T, D) on the 40 ms grid.

        ``layer=None`` gives the head input (after the BiGRU for teachers); an integer picks the output
        of that backbone block (negative counts from the top), resampled to the frame grid.
        """
        return self.embed_features(self.features(waveform), self.frames_for(waveform.shape[-1]), layer)

    def embed_features(self, features: torch.Tensor, num_frames: int = 250, layer: int | None = None) -> torch.Tensor:
        """Front-end features (B, 1, F, T_feat) -> frame embeddings (B, num_frames, D); see :meth:`embed`."""
        if layer is None:
            return self.head.embed(self.backbone_sequence(features), num_frames)
        from ptsed.heads.sed_head import resample_sequence

        seq = self.backbone.forward_intermediates(features, [layer])[0]
        return resample_sequence(seq, num_frames)
