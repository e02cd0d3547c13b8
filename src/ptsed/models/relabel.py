"""Re-heading a model for another class list: heads follow class names, never list order.

:func:`reheaded` gives a model whose heads answer ``labels``. Every class the model already knows by name keeps
its trained rows of the strong and weak heads (and a teacher-form model keeps its BiGRU); a new class gets a
fresh (randomly initialised) row, and a class that is not in ``labels`` is removed. ``ptsed finetune`` and
``create_model(..., labels=...)`` both use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from ptsed.core.errors import ConfigError, PtsedError
from ptsed.heads.sed_head import HeadConfig
from ptsed.models.sed_model import SEDModel

_KEEP = object()


@dataclass(frozen=True)
class HeadChange:
    """What :func:`reheaded` did to the classes of the heads.

    Attributes:
        kept: classes whose trained rows were kept (matched by name).
        new: classes with fresh rows.
        dropped: classes of the old heads that are not in the new list.
        note: why no trained row could be kept although names match (e.g. the head reads another block),
            or ``""``.
    """

    kept: int
    new: int
    dropped: int
    note: str = ""

    def line(self) -> str:
        """One line for the user: ``heads: 10 classes kept, 0 new, 0 dropped``."""
        text = f"heads: {self.kept} classes kept, {self.new} new, {self.dropped} dropped"
        return f"{text} ({self.note})" if self.note else text


def known_labels(model: SEDModel) -> list[str] | None:
    """The class names of ``model``'s heads, or ``None`` when the heads are unnamed or their vocabulary file
    cannot be found (then no row can be matched by name)."""
    if model.num_classes == 0 or (model._labels is None and model.vocabulary is None):
        return None
    try:
        return model.labels
    except (PtsedError, RuntimeError, KeyError, OSError):
        return None


def reheaded(
    model: SEDModel,
    labels: Sequence[str],
    *,
    head_config: HeadConfig | None = None,
    backbone_layer: int | None | object = _KEEP,
) -> tuple[SEDModel, HeadChange]:
    """``model`` with heads for ``labels`` (output order), matched to the old heads by class name.

    Args:
        model: the model (unchanged; its front-end and backbone modules are shared with the result).
        labels: the new class names, in output order.
        head_config: the new head settings (default: the old ones with ``len(labels)`` classes); its
            ``n_strong`` must be ``len(labels)``.
        backbone_layer: the block that feeds the new head (default: the model's).

    Returns:
        The new model (``model`` itself when nothing changes) and a :class:`HeadChange`. Trained rows are kept
        only when the head input is unchanged: the same backbone block and width, and the same BiGRU (which is
        kept too); the weak rows also need the same ``head_type`` and a weak head over the strong classes.
        ``vocabulary`` survives only an unchanged class list; ``checkpoint_extra`` is carried over, without
        its post-processing when a class is new.
    """
    labels = [str(x) for x in labels]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise ConfigError(f"the class list names {', '.join(map(repr, duplicates))} more than once")
    old_cfg = model.head_config
    new_cfg = head_config or replace(old_cfg, n_strong=len(labels), n_weak=None)
    if new_cfg.n_strong != len(labels):
        raise ConfigError(f"{len(labels)} labels given for a head of {new_cfg.n_strong} classes")
    layer = model.backbone_layer if backbone_layer is _KEEP else backbone_layer
    old_labels = known_labels(model) or []
    old_index = {name: i for i, name in enumerate(old_labels)}
    common = [name for name in labels if name in old_index]
    dropped = sum(1 for name in old_labels if name not in set(labels)) if old_labels else model.num_classes
    if old_labels == labels and new_cfg == old_cfg and layer == model.backbone_layer:
        return model, HeadChange(len(labels), 0, 0)
    new = SEDModel(
        model.frontend,
        model.backbone,
        new_cfg,
        name=model.name,
        labels=labels,
        vocabulary=model.vocabulary if old_labels == labels else None,
        window_s=model.window_s,
        arch=model.arch,
        builder_kwargs=model.builder_kwargs,
        backbone_layer=layer,  # type: ignore[arg-type]
    )
    new.checkpoint_extra = dict(model.checkpoint_extra)
    if "labels" in new.checkpoint_extra:
        new.checkpoint_extra["labels"] = labels
    if len(common) < len(labels):
        new.checkpoint_extra.pop("postprocess", None)  # chosen for other classes
    same_input = new.head.embed_dim == model.head.embed_dim and layer == model.backbone_layer
    same_rnn = (new_cfg.rnn_dim, new_cfg.rnn_layers) == (old_cfg.rnn_dim, old_cfg.rnn_layers)
    if same_input and same_rnn and new_cfg.rnn_dim is not None:
        new.head.seq_model.load_state_dict(model.head.seq_model.state_dict())
    note = "the old heads' classes have no names" if model.num_classes and not old_labels else ""
    if common and not (same_input and same_rnn):
        note = "fresh heads: " + ("the head reads another block" if not same_input else "the BiGRU is new")
        return new, HeadChange(0, len(labels), dropped, note)
    if common and model.head.has_heads:
        rows_new = torch.tensor([labels.index(name) for name in common])
        rows_old = torch.tensor([old_index[name] for name in common])
        pairs = [("strong_head", True)]
        old_weak = old_cfg.n_weak if old_cfg.n_weak is not None else old_cfg.n_strong
        pairs.append(("weak_head", old_weak == old_cfg.n_strong and old_cfg.head_type == new_cfg.head_type))
        with torch.no_grad():
            for attr, ok in pairs:
                if not ok:
                    continue
                src, dst = getattr(model.head, attr), getattr(new.head, attr)
                dst.weight[rows_new] = src.weight[rows_old].to(dst.weight.dtype)
                dst.bias[rows_new] = src.bias[rows_old].to(dst.bias.dtype)
    return new, HeadChange(len(common), len(labels) - len(common), dropped, note)


__all__ = ["HeadChange", "known_labels", "reheaded"]
