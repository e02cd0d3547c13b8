"""``create_model``: the one way to build a ptsed model."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ptsed.core.errors import CheckpointError, ConfigError
from ptsed.heads.sed_head import HeadConfig
from ptsed.hub import checkpoint as ckpt
from ptsed.io.results import atomic_write
from ptsed.models.meta import reset_missing, skip_init
from ptsed.models.sed_model import SEDModel
from ptsed.models.zoo import STRONG_VOCAB, WEAK_VOCAB, find_arch, get_pretrained_spec


def create_model(
    name: str | None = None,
    pretrained: bool = True,
    checkpoint_path: str | Path | None = None,
    *,
    head: str | None = None,
    num_classes: int | None = None,
    labels: Sequence[str] | None = None,
    rnn_dim: int = 2048,
    device: str | torch.device | None = None,
    progress: bool = True,
    **overrides: Any,
) -> SEDModel:
    """Build a model of the zoo, in eval mode.

    Args:
        name: ``arch`` or ``arch.tag`` (``"beats"`` = ``"beats.as_strong"``, ``"m2d.ssl"``), or ``"demo"``.
            May be left out with ``checkpoint_path``: the file's keys say which model it is. A name of
            another architecture than the file's gives a warning, and the file's is used.
        pretrained: load the released checkpoint of ``name`` (downloaded into the cache on first use).
            With ``False`` the weights are random.
        checkpoint_path: load this file instead: an upstream released file under any name (its
            architecture, stage and student or teacher form are detected from its keys) or a ptsed
            checkpoint (self-describing).
        head: ``None`` (the form the file holds), ``"student"`` (no BiGRU) or ``"teacher"``
            (BiGRU, ``rnn_dim`` hidden units per direction, fresh if the file has none).
        num_classes: number of output classes; when it differs from the file's heads, fresh heads are
            made (e.g. 447 on a weak or ssl checkpoint).
        labels: class names in output order (defaults to the vocabulary of the checkpoint). Heads follow
            class names, never list order: a class the checkpoint knows keeps its trained rows (strong and
            weak heads), a new class gets fresh rows and a class left out is dropped. Heads without class
            names are only named (as many labels as outputs).
        rnn_dim: BiGRU size for ``head="teacher"`` when the file has no BiGRU.
        device: move the model there.
        progress: show a progress bar when downloading.
        **overrides: keyword arguments of the architecture's builder (e.g. reduced depth for tests).

    Returns:
        An :class:`SEDModel` in eval mode; ``model.labels`` lists its classes.
    """
    if name == "demo" and checkpoint_path is None:
        from ptsed.models.demo import demo_checkpoint_path

        checkpoint_path = demo_checkpoint_path()
    state: dict[str, torch.Tensor] | None = None
    meta: dict[str, Any] = {}
    if checkpoint_path is not None:
        obj = ckpt.load_file(checkpoint_path)
        found, warning = resolve_checkpoint(obj, str(checkpoint_path), name)
        if warning:
            warnings.warn(warning, stacklevel=2)
        if ckpt.is_ptsed_checkpoint(obj):
            return _from_ptsed_checkpoint(obj, str(checkpoint_path), device=device, labels=labels, **overrides)
        spec = get_pretrained_spec(found)
        try:
            state = ckpt.released_to_ptsed(spec.arch, obj)
        except CheckpointError as err:
            raise CheckpointError(f"checkpoint {str(checkpoint_path)!r}: {err}") from err
        meta["source"] = str(checkpoint_path)
    else:
        if not name:
            raise ConfigError("give a model name (see ptsed.list_pretrained()) or a checkpoint_path")
        spec = get_pretrained_spec(name)
        if pretrained:
            from ptsed.models.layout import fetch_checkpoint

            path = fetch_checkpoint(spec, progress=progress)
            state = ckpt.released_to_ptsed(spec.arch, ckpt.load_file(path))

    head_cfg = ckpt.detect_head_config(state, spec.head) if state is not None else spec.head
    vocabulary = spec.vocabulary if head_cfg.n_strong == spec.head.n_strong else None
    if vocabulary is None and head_cfg.n_strong in (447, 527):
        vocabulary = STRONG_VOCAB if head_cfg.n_strong == 447 else WEAK_VOCAB
    fresh_heads = False
    if head == "teacher" and head_cfg.rnn_dim is None:
        head_cfg = replace(head_cfg, rnn_dim=rnn_dim)
        fresh_heads = True
    elif head == "student" and head_cfg.rnn_dim is not None:
        head_cfg = replace(head_cfg, rnn_dim=None)
        fresh_heads = True
    elif head not in (None, "teacher", "student"):
        raise ConfigError(f"head must be None, 'student' or 'teacher', not {head!r}")
    if num_classes is not None and num_classes != head_cfg.n_strong:
        head_cfg = replace(head_cfg, n_strong=num_classes, n_weak=None)
        fresh_heads = True
        vocabulary = {447: STRONG_VOCAB, 527: WEAK_VOCAB}.get(num_classes)
    relabel = None
    if labels is not None and vocabulary is not None and not fresh_heads:
        relabel, labels = list(labels), None  # named heads: re-head by class name after loading
    if labels is not None:
        vocabulary = None
        if head_cfg.n_strong == 0:
            head_cfg = replace(head_cfg, n_strong=len(labels), n_weak=None)
            fresh_heads = True
        if len(labels) != head_cfg.n_strong:
            raise ConfigError(f"{len(labels)} labels given for a head of {head_cfg.n_strong} classes")

    def build() -> SEDModel:
        frontend, backbone = spec.arch.build_parts(**overrides)
        return SEDModel(
            frontend,
            backbone,
            head_cfg,
            name=spec.name,
            labels=labels,
            vocabulary=vocabulary,
            arch=spec.arch.name,
            builder_kwargs=overrides,
        )

    if state is not None and fresh_heads:
        state = ckpt.drop_heads(state, keep_rnn=head_cfg.rnn_dim is not None and head != "student")
    model = build_and_load(build, state, allow_missing_heads=fresh_heads, source=meta.get("source", spec.name))
    if relabel is not None:
        model = _relabelled(model, relabel)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def resolve_checkpoint(obj: Mapping[str, Any], source: str, name: str | None = None) -> tuple[str, str | None]:
    """The model a loaded checkpoint holds, and a warning when ``name`` names another architecture.

    Args:
        obj: what :func:`ptsed.hub.checkpoint.load_file` returned.
        source: the file's name, for messages.
        name: the model name the caller gave (``None``: none). Names of no architecture (``"demo"``, a
            placeholder) are not compared.

    Returns:
        ``(zoo name, warning or None)``: the architecture a ptsed checkpoint names in its config, or the
        ``arch.tag`` the keys of a released file say (:func:`ptsed.models.layout.identify`).

    Raises:
        CheckpointError: a released file whose keys are of no known family.
    """
    from ptsed.models.layout import identify

    if ckpt.is_ptsed_checkpoint(obj):
        found = str((obj.get("config") or {}).get("arch") or name or "")
    else:
        found = identify(obj, source, name).name
    wanted, actual = find_arch(name), find_arch(found)
    if wanted is None or actual is None or wanted is actual:
        return found, None
    return found, (
        f"model {name!r} does not match checkpoint {source!r}, which holds {actual.title} weights: "
        f"using {found!r}, as the file says"
    )


def checkpoint_model_name(checkpoint_path: str | Path, name: str | None = None) -> tuple[str, str | None]:
    """Read a checkpoint file and return :func:`resolve_checkpoint`'s ``(zoo name, warning or None)``."""
    return resolve_checkpoint(ckpt.load_file(checkpoint_path), str(checkpoint_path), name)


def build_and_load(
    build: Callable[[], SEDModel],
    state: dict[str, torch.Tensor] | None,
    *,
    allow_missing_heads: bool = False,
    source: str = "",
) -> SEDModel:
    """Build a model with ``build`` and load ``state`` into it, without paying for random initialisation.

    The model is built with its initialisers switched off and the checkpoint tensors (memory-mapped by
    :func:`ptsed.hub.checkpoint.load_file`) are assigned in place; parameters the file lacks (fresh heads)
    are initialised afterwards. Without ``state`` the model is simply built (random weights).
    """
    if state is None:
        return build()
    with skip_init():
        model = build()
    missing = load_state_dict(model, state, allow_missing_heads=allow_missing_heads, source=source, assign=True)
    if not reset_missing(model, [k for k in missing if not k.startswith("frontend.")]):
        model = build()  # a parameter without an initialiser of its own: build the plain way
        load_state_dict(model, state, allow_missing_heads=allow_missing_heads, source=source)
    return model


def load_state_dict(
    model: SEDModel,
    state: dict[str, torch.Tensor],
    *,
    allow_missing_heads: bool = False,
    source: str = "",
    assign: bool = False,
) -> list[str]:
    """Load a ptsed-keyed state dict, failing with a clear message on any layout mismatch.

    Front-end buffers that ptsed computes itself may be absent; head keys may be absent only when fresh
    heads were asked for. With ``assign`` the file's tensors become the model's (cast to the model's
    dtype where they differ). Returns the keys of the model that the file did not hold.
    """
    own = model.state_dict()
    if assign:
        state = {k: v.to(own[k].dtype) if k in own and v.dtype != own[k].dtype else v for k, v in state.items()}
    bad_shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if bad_shapes:
        raise CheckpointError(
            f"checkpoint {source!r} does not fit model {model.name!r}: {len(bad_shapes)} tensors have other "
            f"shapes (first: {bad_shapes[0]})"
        )
    all_missing, unexpected = model.load_state_dict(state, strict=False, assign=assign)
    missing = [
        k for k in all_missing if not k.startswith("frontend.") and not (allow_missing_heads and k.startswith("head."))
    ]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]!r})")
        raise CheckpointError(f"checkpoint {source!r} does not fit model {model.name!r}: " + ", ".join(parts))
    return list(all_missing)


def _from_ptsed_checkpoint(
    obj: dict[str, Any], source: str, *, device: Any, labels: Sequence[str] | None, **overrides: Any
) -> SEDModel:
    """Build a model from ptsed's self-describing checkpoint format."""
    version = obj.get("format_version")
    if version != ckpt.PTSED_FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {source!r} has format_version {version!r}; this ptsed reads 1")
    config = obj.get("config", {})
    arch = config.get("arch")
    if arch is None:
        raise CheckpointError(f"checkpoint {source!r} names no architecture in its config")
    spec = get_pretrained_spec(arch)
    head_cfg = HeadConfig(**config.get("head", {}))
    builder_kwargs = {**config.get("builder_kwargs", {}), **overrides}

    def build() -> SEDModel:
        frontend, backbone = spec.arch.build_parts(**builder_kwargs)
        return SEDModel(
            frontend,
            backbone,
            head_cfg,
            name=obj.get("model", Path(source).stem),
            labels=obj.get("labels"),
            vocabulary=config.get("vocabulary"),
            window_s=float(config.get("window_s", 10.0)),
            arch=spec.arch.name,
            builder_kwargs=builder_kwargs,
            backbone_layer=config.get("backbone_layer"),
        )

    model = build_and_load(build, obj["state_dict"], source=source)
    model.checkpoint_extra = {k: v for k, v in obj.items() if k != "state_dict"}
    if labels is not None:
        model = _relabelled(model, labels)
    model.eval()
    if device is not None:
        model.to(device)
    return model


def _relabelled(model: SEDModel, labels: Sequence[str]) -> SEDModel:
    """``model`` re-headed for ``labels`` by class name (:func:`ptsed.models.relabel.reheaded`); heads without
    names (no vocabulary) are only named, which needs as many labels as outputs."""
    from ptsed.models.relabel import known_labels, reheaded

    if model.num_classes and known_labels(model) is None:
        if len(labels) != model.num_classes:
            raise ConfigError(f"{len(labels)} labels given for a head of {model.num_classes} classes")
        model.labels = labels
        return model
    return reheaded(model, labels)[0]


def save_checkpoint(
    model: SEDModel, path: str | Path, *, builder_kwargs: dict[str, Any] | None = None, **extra: Any
) -> Path:
    """Write ``model`` in ptsed's self-describing format (weights, config, labels, ``extra`` fields).

    ``extra`` may carry e.g. ``postprocess={"thresholds": {...}, "median_filter_s": {...}}``.
    """
    obj = {
        "format_version": ckpt.PTSED_FORMAT_VERSION,
        "model": model.name,
        "config": {
            "arch": model.arch,
            "head": model.head_config.to_dict(),
            "builder_kwargs": builder_kwargs if builder_kwargs is not None else model.builder_kwargs,
            "vocabulary": model.vocabulary,
            "window_s": model.window_s,
            "backbone_layer": model.backbone_layer,
        },
        "labels": model.labels,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    path = Path(path)
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)
    return path
