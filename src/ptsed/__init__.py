"""ptsed: pre-trained sound event detection.

The public surface is small and imported lazily, so ``import ptsed`` and ``ptsed --help`` stay fast:

- :func:`create_model` builds any model of the zoo (``"beats"``, ``"atst_frame.as_weak"``, ``"demo"``, ...).
- :func:`list_models` / :func:`list_pretrained` list architectures and pretrained names.
- :class:`Predictor` runs a model over audio of any length (frame scores, events, embeddings).
- :func:`detect` runs the whole detection loop: score source -> post-processing -> writers.
- :class:`StreamDetector` detects on a live stream, block by block, with the offline results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ptsed._version import __version__

_LAZY = {
    "create_model": "ptsed.models.factory",
    "list_models": "ptsed.models.zoo",
    "list_pretrained": "ptsed.models.zoo",
    "get_pretrained_spec": "ptsed.models.zoo",
    "SEDModel": "ptsed.models.sed_model",
    "SEDOutput": "ptsed.models.sed_model",
    "Predictor": "ptsed.inference.predictor",
    "detect": "ptsed.inference.detect",
    "StreamDetector": "ptsed.inference.stream",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from ptsed.inference.detect import detect
    from ptsed.inference.predictor import Predictor
    from ptsed.inference.stream import StreamDetector
    from ptsed.models.factory import create_model
    from ptsed.models.sed_model import SEDModel, SEDOutput
    from ptsed.models.zoo import get_pretrained_spec, list_models, list_pretrained


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ptsed' has no attribute {name!r}")
