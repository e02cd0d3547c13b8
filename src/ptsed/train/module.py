"""The LightningModule that trains any ptsed :class:`~ptsed.models.sed_model.SEDModel`.

One training step (as upstream's ``ex_audioset_strong.py``): waveform augmentation (wavmix) -> front-end ->
feature augmentations (frame shift, mixup, MixStyle, time mask, FilterAugment, frequency warp) -> backbone +
head -> loss (masked strong BCE, optional weak BCE, optional soft-target distillation).

Validation (every ``check_val_every_n_epoch`` epochs): window predictions are stitched per file and scored
with PSDS1 and the macro event-F1 (logged as ``val/psds1``, ``val/psds1_macro``, ``val/event_f1``, ``val/loss``;
``val/selection``, the criterion of the best checkpoint, is the mean single-class PSDS1 with ties broken by the
loss).

Exact resumption: the augmentation generator and the global RNG states (torch, CUDA, numpy, ``random``) are
saved in every checkpoint and restored at the first training batch after a resume; with
:class:`~ptsed.train.data.ResumableLoader` the data order resumes too.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Any

import lightning as L
import numpy as np
import torch

from ptsed.models.sed_model import SEDModel
from ptsed.train.augment import AugmentConfig, Augmenter
from ptsed.train.losses import LossConfig, masked_bce, sed_loss
from ptsed.train.optim import OptimConfig, build_optimizer, build_scheduler
from ptsed.train.validation import Reference, WindowStitcher, evaluate


def _rng_state() -> dict[str, Any]:
    """Global random states as checkpoint-safe objects (tensors, ints, tuples)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "random": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    rs = state["random"]
    random.setstate((rs[0], tuple(rs[1]), rs[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class SEDTrainModule(L.LightningModule):
    """Trains ``model`` with the PretrainedSED recipe.

    Args:
        model: the SEDModel to train (its heads decide the classes; ``model.labels`` name them).
        optim: optimiser and schedule settings.
        loss: loss weights.
        augment: augmentation settings (``AugmentConfig.none()`` to switch all off).
        seed: seed of the augmentation generator.
        teacher: optional frozen SEDModel whose strong probabilities serve as distillation targets (used
            when the batch has no ``pseudo_strong``).
        reference: ground truth of the validation set (for PSDS1 / event-F1); without it only the
            validation loss is logged.
        val_median_filter_s: median filter (seconds) applied before the validation metrics.
        val_stitch: how overlapping validation windows are stitched (``"centre"``, detect's default, or
            ``"mean"``); the hop comes from the validation dataset's windows.
        total_steps: optimiser steps of the schedule (default: Lightning's estimate).
    """

    def __init__(
        self,
        model: SEDModel,
        optim: OptimConfig | None = None,
        loss: LossConfig | None = None,
        augment: AugmentConfig | None = None,
        *,
        seed: int = 0,
        teacher: SEDModel | None = None,
        reference: Reference | None = None,
        val_median_filter_s: float = 0.28,
        total_steps: int | None = None,
        val_stitch: str = "centre",
    ) -> None:
        super().__init__()
        self.model = model
        self.optim_config = optim or OptimConfig()
        self.loss_config = loss or LossConfig()
        self.augmenter = Augmenter(augment or AugmentConfig(), seed=seed)
        self.teacher = teacher
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)
        self.reference = reference
        self.val_median_filter_s = val_median_filter_s
        self.total_steps = total_steps
        self.from_logits = model.head_config.head_type != "attention"
        self._pending_rng: dict[str, Any] | None = None
        self._stitcher = WindowStitcher(model.labels, model.frame_hop_s, val_stitch)
        self._val_losses: list[float] = []
        self.last_val_scores: dict[str, Any] = {}
        # front-ends are fixed transforms; a frozen backbone is a linear probe
        model.frontend.requires_grad_(False)
        if self.optim_config.freeze_backbone:
            model.backbone.requires_grad_(False)
        self.train()  # create_model returns eval mode; Lightning keeps the modes it finds

    def on_train_epoch_start(self) -> None:
        self.train()

    def train(self, mode: bool = True) -> SEDTrainModule:
        """Train mode, except for the front-end, a frozen backbone and the teacher (always eval)."""
        super().train(mode)
        self.model.frontend.eval()
        if self.optim_config.freeze_backbone:
            self.model.backbone.eval()
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def config_dict(self) -> dict[str, Any]:
        """The training settings as plain data (logged as hyper-parameters)."""
        return {
            "optim": asdict(self.optim_config),
            "loss": asdict(self.loss_config),
            "augment": self.augmenter.config.to_dict(),
        }

    # -- training -------------------------------------------------------------------------------------------
    def _probs(self, strong: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(strong.float()) if self.from_logits else strong.float()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        wave = batch["waveform"]
        strong = batch["strong"].float()
        weak = batch["weak"].float() if "weak" in batch else strong.amax(dim=-1)
        mask_strong = torch.as_tensor(batch.get("mask_strong", torch.ones(len(wave), dtype=torch.bool)))
        mask_weak = torch.as_tensor(batch.get("mask_weak", torch.ones(len(wave), dtype=torch.bool)))
        mask_strong, mask_weak = mask_strong.to(wave.device).bool(), mask_weak.to(wave.device).bool()
        pseudo = batch.get("pseudo_strong")
        pseudo = pseudo.float() if pseudo is not None else None

        aug = self.augmenter
        wave, (strong, weak, pseudo), (mask_strong, mask_weak) = aug.waveform(
            wave, [strong, weak, pseudo], [mask_strong, mask_weak]
        )
        num_frames = strong.shape[-1]
        if pseudo is None and self.teacher is not None and self.loss_config.distillation_loss_weight > 0:
            with torch.no_grad():
                pseudo = self._probs(self.teacher(wave).strong_logits)
        with torch.no_grad():
            feats = self.model.features(wave)
        feats, (strong, weak, pseudo), (mask_strong, mask_weak) = aug.features(
            feats, [strong, weak, pseudo], [mask_strong, mask_weak]
        )
        out = self.model.forward_features(feats, num_frames)
        parts = sed_loss(
            out.strong_logits,
            strong,
            self.loss_config,
            mask_strong=mask_strong,
            weak_pred=out.weak_logits,
            weak_target=weak,
            mask_weak=mask_weak,
            teacher_strong=pseudo,
            from_logits=self.from_logits,
        )
        bs = len(wave)
        self.log("train/loss", parts["loss"].detach(), prog_bar=True, batch_size=bs)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=bs)  # the head's rate
        self.log("train/strong_loss", parts["strong"], batch_size=bs)
        if self.loss_config.weak_loss_weight > 0:
            self.log("train/weak_loss", parts["weak"], batch_size=bs)
        if self.loss_config.distillation_loss_weight > 0:
            self.log("train/distillation_loss", parts["distillation"], batch_size=bs)
        return parts["loss"]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._pending_rng is not None:
            _set_rng_state(self._pending_rng)
            self._pending_rng = None

    # -- validation -------------------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.model(batch["waveform"])
        strong = batch["strong"].float()
        mask = torch.as_tensor(batch.get("mask_strong", torch.ones(len(strong), dtype=torch.bool))).bool()
        loss = masked_bce(out.strong_logits, strong, mask.to(strong.device), from_logits=self.from_logits)
        self._val_losses.append(float(loss))
        self._stitcher.add(
            self._probs(out.strong_logits).cpu().numpy(),
            batch["filename"],
            [float(x) for x in batch["offset_s"]],
            [float(x) for x in batch["duration_s"]],
        )

    def on_validation_epoch_start(self) -> None:
        self._stitcher.clear()
        self._val_losses = []

    def on_validation_epoch_end(self) -> None:
        if not self._val_losses:
            return
        logs = {"val/loss": float(np.mean(self._val_losses))}
        if self.reference is not None and len(self._stitcher) and not self.trainer.sanity_checking:
            scores = self._stitcher.result(self.reference.durations)
            self.last_val_scores = scores
            metrics = evaluate(scores, self.reference, median_filter_s=self.val_median_filter_s)
            logs.update({f"val/{k}": v for k, v in metrics.items()})
            # model selection: mean single-class PSDS1 (PSDS1 itself stays 0 while any class is poor), ties
            # broken by the lower validation loss
            logs["val/selection"] = metrics["psds1_macro"] - 1e-6 * logs["val/loss"]
        self.log_dict(logs, prog_bar=True)
        self._stitcher.clear()

    # -- optimiser ------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.model, self.optim_config)
        total = self.total_steps or int(self.trainer.estimated_stepping_batches)
        scheduler = build_scheduler(optimizer, self.optim_config, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # -- checkpoints --------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ptsed"] = {
            "rng": _rng_state(),
            "augment": self.augmenter.state_dict(),
            "config": self.config_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("ptsed")
        if state:
            self.augmenter.load_state_dict(state["augment"])
            self._pending_rng = state["rng"]


def recalibrate_batchnorm(model: SEDModel, batches: Any, num_batches: int = 32) -> int:
    """Re-estimate the running statistics of every BatchNorm layer from ``num_batches`` batches of clean data.

    BatchNorm running averages lag behind the weights during a short training run (frame_mn's momentum is
    0.01: a memory of about 100 steps), which hurts the eval-mode model; this replaces them by the exact
    average over the given batches (forward passes in train mode, no gradients, no augmentation).

    Args:
        model: the model (left in eval mode).
        batches: an iterable of batches with a ``"waveform"`` (B, N) entry.
        num_batches: how many batches to use.

    Returns:
        The number of BatchNorm layers updated (0: nothing to do, e.g. a transformer).
    """
    norms = [
        m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not norms or num_batches <= 0:
        return 0
    momenta = [m.momentum for m in norms]
    device = next(model.parameters()).device
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    model.train()
    model.frontend.eval()
    with torch.no_grad():
        for i, batch in enumerate(batches):
            if i >= num_batches:
                break
            model(batch["waveform"].to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()
    return len(norms)
