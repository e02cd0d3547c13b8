"""What the zoo knows about one model family (:class:`ArchSpec`), without torch.

Each family states its pretrained knowledge (released key prefixes and markers, licence, reference) in its
own file next to its builder and converter (``ptsed/backbones/<family>_family.py`` beside
``ptsed/backbones/<family>.py``); :mod:`ptsed.models.zoo` collects them into its table. Importing this
module, or a family file, loads no torch: builders and converters are named as ``"module:function"`` and
imported only when a model is built.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class ArchSpec:
    """One model family.

    Attributes:
        name: ptsed arch name (``"beats"``).
        upstream_name: the name upstream uses in file names and ``inference.py`` (``"BEATs"``).
        title: human-readable name.
        builder: ``"module:function"``; the function takes ``**kwargs`` and returns (frontend, backbone).
        key_prefixes: (released prefix, ptsed prefix) pairs. On load the longest matching released
            prefix is replaced (so ``model.fpasst.`` wins over ``model.``); on export the first pair
            listed for a ptsed prefix gives the spelling of upstream's released files. Head keys
            (``strong_head``, ``weak_head``, ``seq_model``) map to ``head.*`` for every arch.
        ignore_released: released-key prefixes that are dropped on load (buffers ptsed computes
            itself, e.g. nnAudio STFT kernels); export writes them back from the model when it has them.
        convert_hook: optional ``"module:function"`` applied to the renamed state dict on load, for
            what a prefix cannot express (legacy spellings, shared tensors).
        markers: released-key prefixes that only files of this family hold (one present is enough):
            they tell which architecture a file given without a model name is. Families that share
            markers (the two MobileNet widths) are told apart by the shapes of their layouts.
        reference: paper of the backbone.
        backbone_license: licence of the external pre-trained weights (ssl/weak stages).
        tags: the checkpoint stages that exist upstream.
        builder_kwargs: default keyword arguments of the builder.
    """

    name: str
    upstream_name: str
    title: str
    builder: str
    key_prefixes: tuple[tuple[str, str], ...]
    reference: str
    backbone_license: str
    tags: tuple[str, ...] = ("ssl", "as_weak", "as_strong")
    builder_kwargs: dict[str, Any] = field(default_factory=dict)
    ignore_released: tuple[str, ...] = ()
    convert_hook: str | None = None
    markers: tuple[str, ...] = ()

    implemented: ClassVar[bool] = True
    """Every listed family is implemented (kept: the parity and conformance tests filter on it)."""

    @property
    def frontend(self) -> str:
        """The front-end, described by itself (its class and ``extra_repr``); builds it once per process."""
        return describe_frontend(self.builder, tuple(sorted(self.builder_kwargs.items())))

    def build_parts(self, **overrides: Any) -> tuple[Any, Any]:
        """Import the builder and return (frontend, backbone)."""
        module, func = self.builder.split(":")
        fn: Callable[..., tuple[Any, Any]] = getattr(importlib.import_module(module), func)
        return fn(**{**self.builder_kwargs, **overrides})


@functools.cache
def describe_frontend(builder: str, builder_kwargs: tuple[tuple[str, Any], ...] = ()) -> str:
    """``"ClassName(extra_repr)"`` of the front-end that ``builder`` makes (built on the ``meta`` device where
    the builder allows, else on CPU; once per builder and settings)."""
    import torch

    module, func = builder.split(":")
    fn: Callable[..., tuple[Any, Any]] = getattr(importlib.import_module(module), func)
    try:
        with torch.device("meta"):
            frontend, _ = fn(**dict(builder_kwargs))
    except Exception:  # a builder step that needs real data
        frontend, _ = fn(**dict(builder_kwargs))
    return f"{type(frontend).__name__}({frontend.extra_repr()})"
