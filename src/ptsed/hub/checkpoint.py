"""Reading checkpoint files and mapping upstream's released layout to ptsed's and back.

Upstream's released files (``<Model>_strong_1.pt`` ...) are plain state dicts in the key layout of
upstream's ``PredictionsWrapper``. ptsed's own files are self-describing dicts
``{"format_version", "model", "config", "labels", "state_dict", ...}``.
Only ``torch.load(..., weights_only=True)`` is ever used.
"""

from __future__ import annotations

import importlib
import pickle
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ptsed.core.errors import CheckpointError
from ptsed.heads.config import HeadConfig

PTSED_FORMAT_VERSION = 1
HEAD_PREFIXES = ("strong_head.", "weak_head.", "seq_model.")


def _not_a_file(path: Path, name: str) -> str:
    """Why ``path`` cannot be read as a checkpoint file (it is not a regular file)."""
    if path.is_dir():
        inside = path / "model.pt"
        hint = f" (a fine-tuning run keeps its model in {str(inside)!r})" if inside.is_file() else ""
        return f"checkpoint {name!r} is a directory, not a checkpoint file{hint}"
    if path.exists():
        return f"checkpoint {name!r} is not a regular file"
    return f"checkpoint file {name!r} does not exist"


_UNSAFE_GLOBAL = re.compile(r"unsupported global:?\s+(?:GLOBAL\s+)?([\w.]+)", re.IGNORECASE)
"""torch's ways of saying that a pickle refers to a class or function (``weights_only`` refuses those)."""


class UnsafePickleError(CheckpointError):
    """A checkpoint holds pickled Python objects (classes, functions) that ``weights_only`` refuses."""


def load_file(path: str | Path, source: str | None = None) -> dict[str, Any]:
    """Load a checkpoint file safely (``weights_only=True``, memory-mapped where possible).

    Raises:
        CheckpointError: one line naming the file: it is missing or a directory, unreadable, truncated,
            not a state dict, or it holds pickled Python objects (classes, functions) whose loading could
            run code, which ptsed never loads (:class:`UnsafePickleError`). ``source`` names the file in
            messages (default: ``path``).
    """
    path = Path(path)
    name = source or str(path)
    if not path.is_file():
        raise CheckpointError(_not_a_file(path, name))
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as err:
        unsafe = _UNSAFE_GLOBAL.search(str(err))
        if unsafe:
            raise UnsafePickleError(
                f"checkpoint {name!r} holds pickled Python objects that can carry code (the first is "
                f"{unsafe.group(1)}); ptsed loads only tensors and plain containers (torch.load with "
                "weights_only=True), so it does not load this file"
            ) from err
        raise CheckpointError(_unreadable(name, f"UnpicklingError: {_pickle_problem(err)}")) from err
    except Exception as err:
        raise CheckpointError(_unreadable(name, f"{err.__class__.__name__}: {err}")) from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {name!r} holds a {type(obj).__name__}, not a state dict")
    return dict(obj)


def _pickle_problem(err: BaseException) -> str:
    """The line of torch's message that names the problem, without its advice to load the file unsafely."""
    lines = [line.split("WeightsUnpickler error:")[-1].strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line and "weights_only" not in line and "documentation" not in line]
    return lines[0].rstrip(".") if lines else "not a plain pickle of tensors"


def _unreadable(name: str, reason: str) -> str:
    return (
        f"cannot read checkpoint {name!r}: {reason}. The file may be truncated or corrupted; delete it and "
        "download it again"
    )


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
        if key.startswith(HEAD_PREFIXES):
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
