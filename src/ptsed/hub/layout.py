"""Checking that a released checkpoint file has the key/shape layout of its model.

Upstream publishes no hashes, so what arrives is checked against the layout the code expects: the
model of the checkpoint's architecture is built on the ``meta`` device (no memory, no time), its state
dict gives the expected keys and shapes, and the file must hold every one of them with the same shape.

- Keys are compared after the file's keys are renamed to ptsed's (:func:`released_to_ptsed`, which
  also applies legacy spellings), and reported in the file's own spelling.
- Front-end buffers that ptsed computes itself (``frontend.*``) may be absent.
- The heads must be those of the checkpoint (447 classes for ``as_strong``, 527 for ``as_weak``, none
  for ``ssl``). The teacher form (a ``seq_model.rnn`` BiGRU, heads on ``2 * rnn_dim`` features) is
  accepted; its size is read from the file.
- Keys the model does not have make the file fail, as they would make loading fail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ptsed.core.errors import CheckpointError
from ptsed.heads.sed_head import HeadConfig
from ptsed.hub import checkpoint as ckpt

OPTIONAL_PREFIXES = ("frontend.",)
"""ptsed keys that a released file may lack (buffers ptsed computes itself)."""


_BODY_CACHE: dict[tuple[str, str, str], tuple[dict[str, tuple[int, ...]], int]] = {}


def _body_layout(arch: Any) -> tuple[dict[str, tuple[int, ...]], int]:
    """(ptsed keys -> shapes of front-end and backbone, backbone embed_dim) of ``arch``; cached per process."""
    import json

    key = (arch.name, arch.builder, json.dumps(arch.builder_kwargs, sort_keys=True, default=str))
    if key not in _BODY_CACHE:
        from ptsed.models.profile import build_parts_skeleton

        frontend, backbone = build_parts_skeleton(arch)
        layout = {f"frontend.{k}": tuple(v.shape) for k, v in frontend.state_dict().items()}
        layout.update({f"backbone.{k}": tuple(v.shape) for k, v in backbone.state_dict().items()})
        _BODY_CACHE[key] = (layout, int(backbone.embed_dim))
    return _BODY_CACHE[key]


def expected_layout(arch: Any, head: HeadConfig) -> dict[str, tuple[int, ...]]:
    """ptsed state-dict keys -> shapes of ``arch`` (an ``ArchSpec``) with ``head``.

    Front-end and backbone come from a model built on the ``meta`` device (once per architecture and
    process), the head from :class:`SEDHead` on ``meta``.
    """
    import torch

    from ptsed.heads.sed_head import SEDHead

    body, embed_dim = _body_layout(arch)
    with torch.device("meta"):
        head_module = SEDHead(embed_dim, head)
    return {**body, **{f"head.{k}": tuple(v.shape) for k, v in head_module.state_dict().items()}}


def _spelling(arch: Any, state: Mapping[str, Any]) -> Callable[[str], str]:
    """A function giving the spelling of a ptsed key in the file ``state``.

    Prefixes are taken from the file itself where it has keys under the same ptsed prefix (some
    architectures have several released spellings), else from :func:`ptsed_to_released`.
    """
    used: dict[str, str] = {}
    for key in state:
        matches = [(old, new) for old, new in arch.key_prefixes if key.startswith(old)]
        if matches:
            old, new = max(matches, key=lambda pair: len(pair[0]))
            used.setdefault(new, old)

    def name(key: str) -> str:
        if key.startswith("head."):
            return key[len("head.") :]
        for new, old in used.items():
            if key.startswith(new):
                return old + key[len(new) :]
        names = list(ckpt.ptsed_to_released(arch, {key: None}))
        return names[0] if names else key

    return name


def _head_name(head: HeadConfig) -> str:
    if head.n_strong == 0:
        return "no heads"
    weak = head.n_weak if head.n_weak is not None else head.n_strong
    return f"heads of {head.n_strong} strong / {weak} weak classes"


def check_layout(spec: Any, state: Mapping[str, Any], source: str) -> HeadConfig:
    """Check a released state dict against the layout of ``spec`` (a ``PretrainedSpec``).

    Args:
        spec: the checkpoint's zoo entry (architecture and head).
        state: the file's state dict (released keys -> tensors; only shapes are read).
        source: name of the file or URL for messages.

    Returns:
        The head configuration found in the file (student or teacher form).

    Raises:
        CheckpointError: one sentence naming ``source``, the model, and the first missing, misshaped or
            unexpected keys.
    """
    what = f"checkpoint {source!r} does not have the layout of {spec.name}"
    name = _spelling(spec.arch, state)
    try:
        state = ckpt.released_to_ptsed(spec.arch, state)
    except CheckpointError as err:
        raise CheckpointError(f"{what}: {err}") from err
    found = ckpt.detect_head_config(state, spec.head)
    expected_weak = spec.head.n_weak if spec.head.n_weak is not None else spec.head.n_strong
    found_weak = found.n_weak if found.n_weak is not None else found.n_strong
    if (found.n_strong, found_weak) != (spec.head.n_strong, expected_weak):
        raise CheckpointError(f"{what}: it has {_head_name(found)}, expected {_head_name(spec.head)}")
    head = replace(spec.head, rnn_dim=found.rnn_dim, rnn_layers=found.rnn_layers)
    expected = expected_layout(spec.arch, head)
    missing = [k for k in expected if k not in state and not k.startswith(OPTIONAL_PREFIXES)]
    misshaped = [
        f"{name(k)!r}: file {tuple(v.shape)} vs expected {expected[k]}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != expected[k]
    ]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"{len(missing)} keys missing (first: {name(missing[0])!r})")
    if misshaped:
        problems.append(f"{len(misshaped)} tensors of another shape (first: {misshaped[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {name(unexpected[0])!r})")
    if problems:
        raise CheckpointError(f"{what}: " + ", ".join(problems))
    return head


def verify_file(spec: Any, path: str | Path, source: str | None = None) -> HeadConfig:
    """Read ``path`` (memory-mapped, ``weights_only=True``) and check it with :func:`check_layout`.

    ``source`` names the file in messages (defaults to ``path``).
    """
    name = source or str(path)
    try:
        state = ckpt.load_file(path)
    except CheckpointError as err:
        cause = err.__cause__
        detail = str(cause if cause is not None else err).strip()
        detail = detail.splitlines()[0].split(". ")[0].rstrip(".")[:200] if detail else ""
        reason = f"{cause.__class__.__name__}: {detail}" if cause is not None else detail
        raise CheckpointError(
            f"checkpoint {name!r} cannot be read as a state dict with torch.load(weights_only=True) ({reason})"
        ) from err
    if ckpt.is_ptsed_checkpoint(state):
        raise CheckpointError(
            f"checkpoint {name!r} is a ptsed checkpoint, not an upstream released file of {spec.name}"
        )
    return check_layout(spec, state, name)
