"""Reading checkpoint files and mapping upstream's released layout to ptsed's and back.

Upstream's released files (``<Model>_strong_1.pt`` ...) are plain state dicts in the key layout of
upstream's ``PredictionsWrapper``. ptsed's own files are self-describing dicts
``{"format_version", "model", "config", "labels", "state_dict", ...}``.
Only ``torch.load(..., weights_only=True)`` is ever used.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ptsed.core.errors import CheckpointError
from ptsed.heads.sed_head import HeadConfig

PTSED_FORMAT_VERSION = 1
_HEAD_PREFIXES = ("strong_head.", "weak_head.", "seq_model.")


def load_file(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file safely (``weights_only=True``, memory-mapped where possible)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {str(path)!r} does not exist")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r}: {err.__class__.__name__}: {err}. The file may be "
            "truncated or corrupted; delete it and download it again"
        ) from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a state dict")
    return dict(obj)


def is_ptsed_checkpoint(obj: Mapping[str, Any]) -> bool:
    """True for ptsed's self-describing format, False for a plain (upstream) state dict."""
    return "format_version" in obj and "state_dict" in obj


def released_to_ptsed(arch: Any, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of an upstream released state dict to ptsed's module names.

    Args:
        arch: the :class:`ptsed.models.zoo.ArchSpec` of the file.
        state_dict: released keys (``model.model.encoder...`` for BEATs, ``strong_head.weight``...).

    Raises:
        CheckpointError: for keys that belong to no known prefix (a file of another architecture).
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        if key.startswith(_HEAD_PREFIXES):
            out["head." + key] = value
            continue
        if any(key.startswith(p) for p in arch.ignore_released):
            continue
        matches = [(old, new) for old, new in arch.key_prefixes if key.startswith(old)]
        if not matches:
            unknown.append(key)
            continue
        old, new = max(matches, key=lambda pair: len(pair[0]))
        out[new + key[len(old) :]] = value
    if unknown:
        raise CheckpointError(
            f"the checkpoint does not look like a {arch.title} file: {len(unknown)} keys of no known layout "
            f"(first: {unknown[0]!r})"
        )
    if arch.convert_hook:
        module, func = arch.convert_hook.split(":")
        out = getattr(importlib.import_module(module), func)(out)
    return out


def ptsed_to_released(arch: Any, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`released_to_ptsed`: ptsed keys -> upstream's released keys.

    The first released prefix listed for a ptsed prefix is the one written, which is the spelling of
    upstream's released files. Buffers listed in ``ignore_released`` are written back only if the
    state dict holds them.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("head."):
            out[key[len("head.") :]] = value
            continue
        for old, new in arch.key_prefixes:
            if key.startswith(new):
                out[old + key[len(new) :]] = value
                break
    return out


def detect_head_config(state_dict: Mapping[str, torch.Tensor], base: HeadConfig) -> HeadConfig:
    """The head form stored in a ptsed-keyed state dict: student or BiGRU teacher, and class counts.

    Heads absent from the file give ``n_strong=0`` (ssl stage); a file with a BiGRU gives the
    teacher form with its hidden size and number of layers read from the weights.
    """
    cfg = base
    if "head.strong_head.bias" in state_dict:
        n_strong = int(state_dict["head.strong_head.bias"].shape[0])
        n_weak = int(state_dict["head.weak_head.bias"].shape[0]) if "head.weak_head.bias" in state_dict else None
        cfg = replace(cfg, n_strong=n_strong, n_weak=None if n_weak == n_strong else n_weak)
    else:
        cfg = replace(cfg, n_strong=0, n_weak=None)
    if "head.seq_model.rnn.weight_hh_l0" in state_dict:
        rnn_dim = int(state_dict["head.seq_model.rnn.weight_hh_l0"].shape[1])
        layers = 0
        while f"head.seq_model.rnn.weight_hh_l{layers}" in state_dict:
            layers += 1
        cfg = replace(cfg, rnn_dim=rnn_dim, rnn_layers=layers)
    else:
        cfg = replace(cfg, rnn_dim=None)
    return cfg


def drop_heads(state_dict: Mapping[str, torch.Tensor], *, keep_rnn: bool = True) -> dict[str, torch.Tensor]:
    """Remove the linear heads (and, unless ``keep_rnn``, the BiGRU) from a ptsed-keyed state dict."""
    prefixes = ("head.strong_head.", "head.weak_head.") + (() if keep_rnn else ("head.seq_model.",))
    return {k: v for k, v in state_dict.items() if not k.startswith(prefixes)}
