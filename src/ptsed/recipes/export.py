"""Loading what a training recipe wrote: a ptsed checkpoint, a run folder, or a Lightning checkpoint of
``ptsed train`` (rebuilt from the run's ``config.yaml``). Writing it out is :mod:`ptsed.release.export`."""

from __future__ import annotations

from pathlib import Path

import torch

from ptsed.core.errors import CheckpointError
from ptsed.models.sed_model import SEDModel


def load_trained(source: str | Path, *, which: str = "final") -> SEDModel:
    """A trained model from a ptsed checkpoint file, a ``ptsed train`` / ``ptsed finetune`` output folder, or a
    Lightning checkpoint of a ``ptsed train`` run.

    Args:
        source: the file or folder.
        which: for a run folder: ``"final"`` (``model.pt``), ``"last"`` or ``"best"`` (``checkpoints/*.ckpt``).
    """
    from ptsed.hub.checkpoint import is_ptsed_checkpoint, load_file

    src = Path(source)
    if src.is_dir():
        if which == "final" and (src / "model.pt").is_file():
            src = src / "model.pt"
        else:
            name = "last" if which == "final" else which
            ckpt = src / "checkpoints" / f"{name}.ckpt"
            if not ckpt.is_file():
                raise CheckpointError(f"{str(source)!r} holds neither model.pt nor checkpoints/{name}.ckpt")
            return _from_lightning(ckpt, src)
    if src.suffix == ".ckpt":
        return _from_lightning(src, src.parent.parent)
    obj = load_file(src)
    if not is_ptsed_checkpoint(obj):
        raise CheckpointError(
            f"{str(source)!r} is not a ptsed checkpoint; a released file needs no export (load it with "
            "ptsed.create_model(name, checkpoint_path=...))"
        )
    from ptsed.models.factory import create_model

    return create_model("x", checkpoint_path=src)


def _from_lightning(ckpt: Path, run_dir: Path) -> SEDModel:
    """The model of a Lightning checkpoint of ``ptsed train``, rebuilt from the run's ``config.yaml``."""
    from ptsed.recipes.audioset_strong import build_model, read_run_config

    config = read_run_config(run_dir)
    model = build_model(config, pretrained=False)
    obj = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = {k[len("model.") :]: v for k, v in obj.get("state_dict", {}).items() if k.startswith("model.")}
    if not state:
        raise CheckpointError(f"{str(ckpt)!r} holds no model weights")
    from ptsed.models.factory import load_state_dict

    load_state_dict(model, state, source=str(ckpt))
    return model.eval()


__all__ = ["load_trained"]
