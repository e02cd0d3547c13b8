"""Implementation of the HEAR API (see :mod:`ptsed.hear`). Times are in milliseconds here, as in HEAR."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ptsed.core.errors import ConfigError
from ptsed.inference.windows import STITCH_MODES, Stitcher, window_starts
from ptsed.models.sed_model import SEDModel

HEAR_OPTIONS = ("window_hop_s", "stitch", "batch_size")
"""Keyword arguments of :func:`load_model` that configure the wrapper (the others go to ``create_model``)."""


class HEARModel(nn.Module):
    """A ptsed model as the HEAR API sees it.

    Attributes:
        model: the wrapped :class:`~ptsed.models.sed_model.SEDModel`.
        layer: the embedding layer (``None``: the head input, after the BiGRU for teacher heads; an int: that
            backbone block, negative counts from the top), as :meth:`SEDModel.embed`.
        sample_rate: input sample rate in Hz (HEAR attribute).
        scene_embedding_size, timestamp_embedding_size: D (HEAR attributes; found with one forward pass of
            one window on first use).
        window_hop_s: hop between the windows long audio is cut into, in seconds.
        stitch: how overlapping windows are joined: ``"centre"`` or ``"mean"``.
        batch_size: windows per forward pass.
    """

    def __init__(
        self,
        model: SEDModel,
        layer: int | None = None,
        *,
        window_hop_s: float | None = None,
        stitch: str = "centre",
        batch_size: int = 8,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        if layer is not None:
            n = model.backbone.num_layers
            if not -n <= int(layer) < n:
                raise ConfigError(f"layer {layer} is out of range for {model.name or 'the model'} ({n} layers)")
            layer = int(layer)
        if stitch not in STITCH_MODES:
            raise ConfigError(f"stitch must be one of {STITCH_MODES}, not {stitch!r}")
        self.layer = layer
        self.sample_rate = int(model.sample_rate)
        self.frame_hop_s = float(model.frame_hop_s)
        self.window_s = float(model.window_s)
        self.frame = round(self.frame_hop_s * self.sample_rate)
        self.window = round(self.window_s * self.sample_rate)
        hop_s = self.window_s / 2 if window_hop_s is None else float(window_hop_s)
        self.hop = max(1, round(hop_s / self.frame_hop_s)) * self.frame
        if self.window % self.frame or self.hop > self.window:
            raise ConfigError(f"window_hop_s must lie in (0, {self.window_s}] and the window be whole frames")
        self.window_hop_s = self.hop / self.sample_rate
        self.stitch = stitch
        self.batch_size = max(1, int(batch_size))
        self._dim: int | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def timestamp_embedding_size(self) -> int:
        if self._dim is None:
            with torch.no_grad():
                probe = torch.zeros(1, self.window, device=self.device)
                self._dim = int(self.model.embed(probe, layer=self.layer).shape[-1])
        return self._dim

    @property
    def scene_embedding_size(self) -> int:
        return self.timestamp_embedding_size

    def num_timestamps(self, num_samples: int) -> int:
        """Frames whose centre lies inside ``num_samples`` samples (at least one)."""
        return max(1, (2 * num_samples + self.frame) // (2 * self.frame))

    def timestamps_ms(self, num_samples: int) -> torch.Tensor:
        """(T,) float32 frame centres in milliseconds: 20, 60, 100, ... for 40 ms frames."""
        t = (np.arange(self.num_timestamps(num_samples)) + 0.5) * self.frame / self.sample_rate * 1000.0
        return torch.from_numpy(t.astype(np.float32))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (n_sounds, n_samples) -> frame embeddings (n_sounds, T, D) float32, T = :meth:`num_timestamps`."""
        audio = _as_audio(audio, self.device)
        n, num = audio.shape
        starts = window_starts(num, self.window, self.hop, self.frame)
        need = starts[-1] + self.window
        if need > num:
            audio = torch.nn.functional.pad(audio, (0, need - num))
        windows = torch.stack([audio[:, s : s + self.window] for s in starts], dim=1).reshape(-1, self.window)
        with torch.no_grad():
            out = torch.cat(
                [self.model.embed(windows[i : i + self.batch_size], layer=self.layer).float()
                 for i in range(0, windows.shape[0], self.batch_size)]
            )  # fmt: skip
        frames = out.shape[1]
        out = out.reshape(n, len(starts), frames, -1).cpu().numpy()
        total = self.num_timestamps(num)
        result = []
        for j in range(n):
            stitcher = Stitcher(frames, self.stitch)
            for w, s in enumerate(starts):
                stitcher.add(s // self.frame, out[j, w])
            result.append(stitcher.finish(total))
        return torch.from_numpy(np.stack(result)).to(self.device)


def _as_audio(audio: Any, device: torch.device) -> torch.Tensor:
    audio = torch.as_tensor(audio)
    if audio.dim() != 2:
        raise ValueError(f"HEAR audio must have shape (n_sounds, n_samples), got {tuple(audio.shape)}")
    if audio.shape[1] == 0:
        raise ValueError("HEAR audio has no samples")
    return audio.to(device=device, dtype=torch.float32)


def wrap_model(model: SEDModel, layer: int | None = None, **options: Any) -> HEARModel:
    """A built :class:`SEDModel` as a HEAR model (``options``: see :data:`HEAR_OPTIONS`)."""
    return HEARModel(model, layer, **options)


def load_model(
    model_file_path: str = "", model_name: str | None = None, layer: int | None = None, **kw: Any
) -> HEARModel:
    """Build a model for the HEAR API.

    Args:
        model_file_path: a ptsed checkpoint or an upstream released checkpoint under any file name (any stage,
            student or teacher form; the architecture is read from its keys, as hear-validator passes only
            the file); ``""`` loads the zoo's pretrained weights of ``model_name`` (downloaded into the cache
            on first use).
        model_name: zoo name (``"beats"`` = ``"beats.as_strong"``, ``"m2d.ssl"``, ``"demo"``, ...; default
            ``"beats"`` without a file). With a file it need not be given; one of another architecture
            than the file's gives a warning.
        layer: embedding layer (see :class:`HEARModel`).
        **kw: ``window_hop_s``, ``stitch``, ``batch_size`` for the wrapper; anything else goes to
            :func:`ptsed.create_model` (``device``, ``head``, builder overrides).

    Returns:
        A :class:`HEARModel` (a ``torch.nn.Module`` with ``sample_rate``, ``scene_embedding_size`` and
        ``timestamp_embedding_size``).
    """
    from ptsed.models.factory import create_model

    options = {k: kw.pop(k) for k in HEAR_OPTIONS if k in kw}
    if model_file_path:
        model = create_model(model_name, checkpoint_path=model_file_path, **kw)
    else:
        model = create_model(model_name or "beats", pretrained=True, **kw)
    return HEARModel(model, layer, **options)


def get_timestamp_embeddings(audio: torch.Tensor, model: HEARModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame embeddings and their times.

    Args:
        audio: (n_sounds, n_samples) at ``model.sample_rate``, values in [-1, 1].
        model: from :func:`load_model`.

    Returns:
        ``(embeddings (n_sounds, n_timestamps, D) float32, timestamps (n_sounds, n_timestamps) float32 in
        MILLISECONDS)``: one per 40 ms frame whose centre lies inside the audio, at the frame centre.
    """
    embeddings = model(audio)
    ts = model.timestamps_ms(audio.shape[1]).to(embeddings.device)
    return embeddings, ts.expand(embeddings.shape[0], -1).contiguous()


def get_scene_embeddings(audio: torch.Tensor, model: HEARModel) -> torch.Tensor:
    """Clip embeddings (n_sounds, D) float32: the mean of the timestamp embeddings over time."""
    return model(audio).mean(dim=1)
