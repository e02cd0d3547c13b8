"""Training losses: masked strong BCE, weak BCE and soft-target distillation.

``total = (1 - w) * (strong + weak_weight * weak) + w * distillation``, with ``w`` upstream's
``distillation_loss_weight`` (0 = labels only, 1 = teacher only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _bce(pred: torch.Tensor, target: torch.Tensor, from_logits: bool) -> torch.Tensor:
    """Element-wise binary cross-entropy in float32 (logits or probabilities)."""
    pred, target = pred.float(), target.float()
    if from_logits:
        return F.binary_cross_entropy_with_logits(pred, target, reduction="none")
    return F.binary_cross_entropy(pred.clamp(1e-7, 1 - 1e-7), target, reduction="none")


def masked_bce(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *, from_logits: bool = True
) -> torch.Tensor:
    """Mean binary cross-entropy over the clips where ``mask`` is true.

    Args:
        pred: (B, ...) logits (or probabilities with ``from_logits=False``).
        target: (B, ...) targets in [0, 1] (soft targets allowed).
        mask: (B,) bool; ``None`` means all clips. Clips without labels contribute nothing.
        from_logits: whether ``pred`` holds logits.

    Returns:
        Scalar: the mean over all elements of the valid clips (``BCEWithLogitsLoss()`` when all are valid);
        0 (still connected to the graph) when no clip is valid.
    """
    per_elem = _bce(pred, target, from_logits)
    per_clip = per_elem.reshape(per_elem.shape[0], -1).mean(dim=1)
    if mask is None:
        return per_clip.mean()
    w = mask.to(per_clip.dtype)
    return (per_clip * w).sum() / w.sum().clamp_min(1.0)


@dataclass
class LossConfig:
    """Weights of the loss terms.

    Attributes:
        distillation_loss_weight: ``w`` in ``(1 - w) * label_loss + w * kd_loss`` (upstream's name); needs
            teacher targets (``pseudo_strong`` in the batch, or a teacher model).
        weak_loss_weight: weight of the clip-level BCE on ``weak`` targets inside the label loss (0: off).
    """

    distillation_loss_weight: float = 0.0
    weak_loss_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.distillation_loss_weight <= 1.0:
            from ptsed.core.errors import ConfigError

            raise ConfigError(f"distillation_loss_weight must be in [0, 1], got {self.distillation_loss_weight}")
        if self.weak_loss_weight < 0:
            from ptsed.core.errors import ConfigError

            raise ConfigError(f"weak_loss_weight must be >= 0, got {self.weak_loss_weight}")


def sed_loss(
    strong_pred: torch.Tensor,
    strong_target: torch.Tensor,
    config: LossConfig,
    *,
    mask_strong: torch.Tensor | None = None,
    weak_pred: torch.Tensor | None = None,
    weak_target: torch.Tensor | None = None,
    mask_weak: torch.Tensor | None = None,
    teacher_strong: torch.Tensor | None = None,
    from_logits: bool = True,
) -> dict[str, torch.Tensor]:
    """The training loss and its parts.

    Args:
        strong_pred: (B, K, T) strong logits (probabilities for attention heads, ``from_logits=False``).
        strong_target: (B, K, T) frame targets.
        config: loss weights.
        mask_strong: (B,) clips that have strong labels.
        weak_pred, weak_target: (B, K) clip logits / targets, used when ``config.weak_loss_weight > 0``.
        mask_weak: (B,) clips that have weak labels (default: all).
        teacher_strong: (B, K, T) teacher probabilities for distillation.

    Returns:
        ``{"loss", "strong", "weak", "distillation"}`` scalars.
    """
    zero = strong_pred.sum() * 0.0
    strong = masked_bce(strong_pred, strong_target, mask_strong, from_logits=from_logits)
    weak = zero
    if config.weak_loss_weight > 0:
        if weak_pred is None or weak_target is None:
            raise ValueError("weak_loss_weight > 0 needs weak predictions and weak targets")
        weak = masked_bce(weak_pred, weak_target, mask_weak, from_logits=from_logits)
    label_loss = strong + config.weak_loss_weight * weak
    kd = zero
    w = config.distillation_loss_weight
    if w > 0:
        if teacher_strong is None:
            raise ValueError("distillation_loss_weight > 0 needs teacher targets (pseudo_strong or a teacher model)")
        kd = masked_bce(strong_pred, teacher_strong, None, from_logits=from_logits)
    loss = (1 - w) * label_loss + w * kd
    return {"loss": loss, "strong": strong.detach(), "weak": weak.detach(), "distillation": kd.detach()}
