"""Checking that a released checkpoint file has the key/shape layout of its model, and fetching verified files.

The download code (:mod:`ptsed.hub.fetch`) knows nothing about the zoo; :func:`fetch_checkpoint`,
:func:`check_cached` and :func:`fetch_many` here pass it :func:`verify_file` as its layout check.

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
from ptsed.hub import fetch as hub_fetch

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
        state = ckpt.load_file(path, source=name)
    except ckpt.UnsafePickleError:
        raise
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


def _body_fits(arch: Any, state: Mapping[str, Any]) -> bool:
    """True when the front-end and backbone tensors of the released ``state`` have exactly the keys and
    shapes of ``arch`` at its default size (heads are not compared)."""
    try:
        mapped = ckpt.released_to_ptsed(arch, state)
    except CheckpointError:
        return False
    body, _ = _body_layout(arch)
    mine = {k: tuple(v.shape) for k, v in mapped.items() if not k.startswith("head.")}
    return all(body.get(k) == shape for k, shape in mine.items()) and all(
        k in mine for k in body if not k.startswith(OPTIONAL_PREFIXES)
    )


def identify(state: Mapping[str, Any], source: str, name: str | None = None) -> Any:
    """The zoo entry (``PretrainedSpec``) of the upstream released state dict ``state``, from its keys.

    Each family's ``ArchSpec.markers`` say which files are its own; families that share markers are told
    apart by their layouts. The stage follows the heads in the file (none: ``ssl``, 527 classes:
    ``as_weak``, else ``as_strong``); the student or teacher form is read on loading
    (:func:`ptsed.hub.checkpoint.detect_head_config`).

    Args:
        state: the file's state dict (released keys; only key names and shapes are read).
        source: the file's name, for messages.
        name: the model name the caller gave, if any. When the file is of that family, that entry is
            returned as given (its builder overrides are then the caller's business); a family without
            markers is taken on trust.

    Raises:
        CheckpointError: one line naming ``source`` when its keys are of no known family (the families
            are listed), or fit several.
    """
    from ptsed.models.zoo import ARCHS, find_arch, get_pretrained_spec, split_name, tag_for_heads

    keys = list(state)
    families = [a for a in ARCHS.values() if a.markers and any(k.startswith(a.markers) for k in keys)]
    if len(families) > 1:
        families = [a for a in families if _body_fits(a, state)] or families
    wanted = find_arch(name)
    if wanted is not None and (wanted in families or not wanted.markers):
        return get_pretrained_spec(f"{wanted.name}.{split_name(name or '')[1]}")
    if len(families) == 1:
        arch = families[0]
        heads = {"head." + k: v for k, v in state.items() if k.startswith(ckpt.HEAD_PREFIXES)}
        head = ckpt.detect_head_config(heads, HeadConfig())
        return get_pretrained_spec(f"{arch.name}.{tag_for_heads(arch, head.n_strong)}")
    known = ", ".join(
        a.name if a.upstream_name == a.name else f"{a.name} ({a.upstream_name})" for a in ARCHS.values() if a.markers
    )
    if families:
        raise CheckpointError(
            f"checkpoint {source!r} could be {' or '.join(a.name for a in families)} (its keys are theirs, its "
            "shapes fit no single one at the released size); name the model with --model NAME (create_model(NAME, ...))"
        )
    first = f" (first key: {keys[0]!r})" if keys else " (it is empty)"
    raise CheckpointError(
        f"checkpoint {source!r} is neither a ptsed checkpoint nor a released file of a known model "
        f"family{first}; the families are: {known}"
    )


def fetch_checkpoint(spec: Any, progress: bool = True, *, verify: bool = False) -> Path:
    """:func:`ptsed.hub.fetch.fetch_checkpoint` with the layout check of the zoo (:func:`verify_file`)."""
    return hub_fetch.fetch_checkpoint(spec, progress, check_layout=verify_file, verify=verify)


def check_cached(spec: Any, *, full: bool = False) -> str | None:
    """:func:`ptsed.hub.fetch.check_cached` with the layout check of the zoo (:func:`verify_file`)."""
    return hub_fetch.check_cached(spec, check_layout=verify_file, full=full)


def fetch_many(specs: Any, *, verify: bool = False, progress: bool = True) -> list[hub_fetch.FetchResult]:
    """:func:`ptsed.hub.fetch.fetch_many` with the layout check of the zoo (:func:`verify_file`)."""
    return hub_fetch.fetch_many(specs, check_layout=verify_file, verify=verify, progress=progress)
