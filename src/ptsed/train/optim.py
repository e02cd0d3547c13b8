"""Optimiser and learning-rate schedule for fine-tuning a :class:`~ptsed.models.sed_model.SEDModel`.

- Parameter groups: the head (BiGRU, strong and weak heads) at ``lr``; the backbone in the depth groups of
  ``model.backbone.param_groups()`` with layer-wise decay: with G groups, group g (0 = input side) gets
  ``backbone_lr * lr_decay ** (G - g)``, so the top block gets one factor ``lr_decay`` and the input side the
  most. Front-end parameters (fixed transforms) are not trained.
- No weight decay on parameters of dimension <= 1 (biases, norms, scalars); ``weight_decay`` on the rest.
- Schedule: linear warmup from 0 over ``warmup_steps`` optimiser steps, then cosine decay to
  ``min_lr_ratio * lr`` at ``total_steps`` (``min_lr_ratio=0`` is upstream's
  ``get_cosine_schedule_with_warmup``); ``"linear"`` decays linearly, ``"constant"`` keeps the peak.

Upstream's DCASE recipe builds exponents 1..G input-first (the input group gets the largest rate); ptsed
follows the usual convention (BEiT, the paper's fine-tuning description) of decaying from the top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ptsed.core.errors import ConfigError


@dataclass
class OptimConfig:
    """Optimiser and schedule settings.

    Attributes:
        optimizer: ``"adamw"`` or ``"adam"``.
        lr: peak learning rate of the head (and of the backbone when ``backbone_lr`` is ``None``).
        backbone_lr: peak learning rate of the top backbone group before decay (default ``lr``).
        lr_decay: layer-wise decay factor per backbone group from the top (1 = no decay).
        weight_decay: decoupled weight decay (AdamW) or L2 (Adam) on parameters of dimension >= 2.
        betas: Adam betas.
        warmup_steps: optimiser steps of linear warmup.
        schedule: ``"cos"``, ``"linear"`` or ``"constant"``.
        min_lr_ratio: final learning rate as a fraction of the peak.
        freeze_backbone: train the head only (linear probe); the backbone stays in eval mode.
    """

    optimizer: str = "adamw"
    lr: float = 1e-4
    backbone_lr: float | None = None
    lr_decay: float = 1.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    schedule: str = "cos"
    min_lr_ratio: float = 0.0
    freeze_backbone: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"optimizer must be 'adam' or 'adamw', not {self.optimizer!r}")
        if self.schedule not in ("cos", "linear", "constant"):
            raise ConfigError(f"schedule must be 'cos', 'linear' or 'constant', not {self.schedule!r}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        self.betas = tuple(self.betas)  # type: ignore[assignment]


def _split_by_dim(params: list[tuple[str, nn.Parameter]], lr: float, weight_decay: float, tag: str) -> list[dict]:
    """One group for >= 2-D parameters (with weight decay) and one for <= 1-D parameters (without)."""
    multi = [p for _, p in params if p.ndim >= 2]
    flat = [p for _, p in params if p.ndim <= 1]
    groups = []
    if multi:
        groups.append({"params": multi, "lr": lr, "weight_decay": weight_decay, "name": f"{tag}/decay"})
    if flat:
        groups.append({"params": flat, "lr": lr, "weight_decay": 0.0, "name": f"{tag}/no_decay"})
    return groups


def param_groups(model: nn.Module, config: OptimConfig) -> list[dict]:
    """Optimiser parameter groups of a SEDModel (head, then backbone depth groups from the top).

    Each group carries ``lr`` (its peak rate, also stored as ``initial_lr`` by the scheduler) and a ``name``
    (``"head/decay"``, ``"backbone.11/no_decay"``, ...). Raises :class:`ConfigError` if the backbone's
    ``param_groups()`` misses a trainable parameter or lists one twice.
    """
    named = dict(model.named_parameters())
    head = [(n, p) for n, p in named.items() if n.startswith("head.") and p.requires_grad]
    groups = _split_by_dim(head, config.lr, config.weight_decay, "head")
    if config.freeze_backbone:
        return groups
    depth = [list(g) for g in model.backbone.param_groups()]
    seen: dict[str, int] = {}
    for gi, names in enumerate(depth):
        for n in names:
            if n in seen:
                raise ConfigError(f"backbone parameter {n!r} is in depth groups {seen[n]} and {gi}")
            seen[n] = gi
    trainable = {n[len("backbone.") :] for n, p in named.items() if n.startswith("backbone.") and p.requires_grad}
    missing = sorted(trainable - set(seen))
    if missing:
        raise ConfigError(f"backbone.param_groups() misses {len(missing)} parameters (first: {missing[0]!r})")
    base = config.backbone_lr if config.backbone_lr is not None else config.lr
    n_groups = len(depth)
    for gi in reversed(range(n_groups)):
        params = [(n, named["backbone." + n]) for n in depth[gi] if n in trainable]
        lr = base * config.lr_decay ** (n_groups - gi) if config.lr_decay != 1 else base
        groups += _split_by_dim(params, lr, config.weight_decay, f"backbone.{gi}")
    return groups


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over :func:`param_groups`."""
    groups = param_groups(model, config)
    if not groups:
        raise ConfigError("nothing to train: the model has no trainable parameters")
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def lr_factor(
    step: int, total_steps: int, warmup_steps: int, schedule: str = "cos", min_lr_ratio: float = 0.0
) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cos" else 1.0 - progress
    return min_lr_ratio + (1.0 - min_lr_ratio) * shape


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step warmup + cosine (or linear / constant) schedule over ``total_steps`` optimiser steps."""
    warmup = min(config.warmup_steps, max(0, total_steps - 1))

    def factor(step: int) -> float:
        return lr_factor(step, total_steps, warmup, config.schedule, config.min_lr_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
