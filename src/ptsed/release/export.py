"""Exporting a trained model: ptsed's checkpoint format, and upstream's released layout.

- ``ptsed`` format (:func:`ptsed.models.factory.save_checkpoint`): one self-describing file (architecture,
  builder settings, head form, labels, weights); ``ptsed.create_model("x", checkpoint_path=...)`` and
  ``ptsed detect --checkpoint`` load it.
- ``released`` layout: a plain state dict with exactly the keys and shapes of upstream's released files
  (``<Model>_strong_1.pt``; with a BiGRU, the teacher layout upstream's ``PredictionsWrapper(seq_model_type=
  "rnn")`` loads), so upstream's code loads what ptsed trains. Keys are written in the released spelling
  (``model.X`` for fPaSST, ASiT and M2D, ``model.model.X`` for BEATs, as the zoo's first-listed key prefixes
  say; not upstream's in-memory wrapper spelling ``model.fpasst.X``, which its loader would rename twice).
  Front-end tensors that upstream keeps in its state dict are written from ptsed's front-end, which computes
  them itself: M2D's ``model.to_spec.*`` (nnAudio mel filterbank and STFT kernels, computed as nnAudio
  does); ATST-Frame's ``mel_transform`` buffers are left out, as upstream's loader requires. The released
  layout has no room for builder settings: a model built with non-default sizes loads only with the same
  sizes given again (``create_model(name, checkpoint_path=..., depth=...)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ptsed.core.errors import CheckpointError, ConfigError
from ptsed.core.files import atomic_write
from ptsed.models.sed_model import SEDModel

FORMATS = ("ptsed", "released")


def released_state_dict(model: SEDModel, *, copy: bool = True) -> dict[str, torch.Tensor]:
    """The model's weights under upstream's released keys (CPU copies, dtypes as trained; with
    ``copy=False`` the model's own tensors, e.g. to inspect the layout of a model on the ``meta`` device).

    Raises:
        ConfigError: the model cannot be expressed in upstream's layout (a head fed from a lower block).
    """
    from ptsed.hub.checkpoint import ptsed_to_released, released_to_ptsed
    from ptsed.models.zoo import get_arch

    if model.backbone_layer is not None:
        raise ConfigError(
            f"model {model.name!r} reads backbone block {model.backbone_layer}; upstream's layout has no such "
            "setting (export it in ptsed's format)"
        )
    arch = get_arch(model.arch)
    own = model.state_dict()
    out = {k: v.detach().cpu().clone() if copy else v for k, v in ptsed_to_released(arch, own).items()}
    back = released_to_ptsed(arch, out)
    lost = sorted(k for k in own if k not in back and not k.startswith("frontend."))
    if lost:
        raise CheckpointError(f"{len(lost)} weights of {model.name!r} have no released key (first: {lost[0]!r})")
    return out


def export_model(model: SEDModel, path: str | Path, fmt: str = "ptsed", **extra: Any) -> Path:
    """Write ``model`` to ``path`` in ``fmt`` (``"ptsed"`` or ``"released"``); ``extra`` fields go into a ptsed
    checkpoint (e.g. ``training={...}``). The file is written atomically."""
    from ptsed.models.factory import save_checkpoint

    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    path = Path(path)
    if fmt == "ptsed":
        return save_checkpoint(model, path, **extra)
    state = released_state_dict(model)
    with atomic_write(path) as tmp:
        torch.save(state, tmp)
    return path


__all__ = ["FORMATS", "export_model", "released_state_dict"]
