"""The LightningModule learns, and a killed run resumed from its last checkpoint ends with the same weights as an
uninterrupted one (mid-epoch and end-of-epoch kills, with gradient accumulation)."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from ptsed.train.augment import AugmentConfig
from ptsed.train.data import EpochSampler, ResumableLoader
from ptsed.train.losses import LossConfig
from ptsed.train.module import SEDTrainModule
from ptsed.train.optim import OptimConfig
from ptsed.train.validation import reference_from_dataset
from train_fixtures import TinyDataset, single_thread, tiny_model

_one_thread = pytest.fixture(autouse=True)(single_thread)


class _Kill(Callback):
    """Simulates a crash after ``at`` optimiser steps."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.at:
            raise RuntimeError("killed")


def _trainer(**kw) -> L.Trainer:
    # no checkpoints but those a test asks for (Lightning's default one writes into the working directory)
    kw.setdefault("enable_checkpointing", any(isinstance(c, ModelCheckpoint) for c in kw.get("callbacks", [])))
    return L.Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        **kw,
    )


def _run(
    ckpt_dir: Path, max_steps: int, *, kill: int | None = None, resume: bool = False, acc: int = 1, every: int = 3
) -> dict:
    ds = TinyDataset(20, random_gain=True)  # random gain: items draw from torch's global generator
    module = SEDTrainModule(
        tiny_model(seed=1),  # dropout on: the global generator matters too
        OptimConfig(lr=3e-3, warmup_steps=3),
        augment=AugmentConfig(mixup_p=0.5, mixstyle_p=0.5, max_time_mask_size=0.2, wavmix_p=0.5),
        seed=5,
    )
    loader = ResumableLoader(ds, 4, seed=3)  # 5 batches per epoch
    callbacks: list = [ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=every, save_last=True, save_top_k=0)]
    if kill:
        callbacks.append(_Kill(kill))
    trainer = _trainer(max_steps=max_steps, callbacks=callbacks, limit_val_batches=0, accumulate_grad_batches=acc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            trainer.fit(module, loader, ckpt_path=str(ckpt_dir / "last.ckpt") if resume else None, weights_only=True)
        except RuntimeError as err:
            assert "killed" in str(err)
    return {k: v.clone() for k, v in module.model.state_dict().items()}


@pytest.mark.parametrize(
    ("acc", "kill"),
    [(1, 8), (2, 4)],  # step 6 / batch 12 (mid-epoch 2); step 3 / batch 6 (mid-epoch 1)
)
def test_resume_after_kill_gives_identical_weights(tmp_path: Path, acc: int, kill: int):
    straight = _run(tmp_path / "a", 11, acc=acc)
    _run(tmp_path / "b", 11, kill=kill, acc=acc)
    assert (tmp_path / "b" / "last.ckpt").is_file()
    resumed = _run(tmp_path / "b", 11, resume=True, acc=acc)
    fresh = tiny_model(seed=1).state_dict()
    assert any(not torch.equal(straight[k], fresh[k]) for k in straight)  # it trained
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k


def test_resume_from_an_end_of_epoch_checkpoint(tmp_path: Path):
    straight = _run(tmp_path / "a", 8, every=5)
    _run(tmp_path / "b", 8, kill=7, every=5)  # 5 batches per epoch: the last checkpoint ends epoch 0
    resumed = _run(tmp_path / "b", 8, resume=True, every=5)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_epoch_sampler_order_depends_only_on_seed_and_epoch():
    s = EpochSampler(10, seed=4)
    s.set_epoch(2)
    first = list(s)
    s2 = EpochSampler(10, seed=4)
    s2.set_epoch(2)
    s2.skip = 3
    assert list(s2) == first[3:]
    s2.set_epoch(3)
    assert sorted(i for _, i in s2) == list(range(10)) and list(s2) != first
    longer = EpochSampler(4, seed=0, num_samples=10)
    assert len(list(longer)) == 10


def test_training_learns_the_tiny_task():
    torch.manual_seed(0)
    train, valid = TinyDataset(48, seed=0), TinyDataset(12, seed=1)
    module = SEDTrainModule(
        tiny_model(seed=0),
        OptimConfig(lr=5e-3, warmup_steps=5),
        augment=AugmentConfig.none(),
        reference=reference_from_dataset(valid),
        val_median_filter_s=0.0,
    )
    vl = torch.utils.data.DataLoader(valid, batch_size=12)
    trainer = _trainer(max_steps=80, check_val_every_n_epoch=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = trainer.validate(module, vl, verbose=False)[0]
        trainer.fit(module, ResumableLoader(train, 8, seed=0), vl)
        after = trainer.validate(module, vl, verbose=False)[0]
    assert after["val/loss"] < 0.7 * before["val/loss"]
    assert after["val/event_f1"] > before["val/event_f1"] + 0.2


def test_models_from_create_model_train_in_train_mode():
    """create_model returns eval mode; the trainable parts must train in train mode (BatchNorm, dropout),
    the front-end, a frozen backbone and the teacher stay in eval mode."""
    seen = []

    class _Watch(Callback):
        def on_train_batch_start(self, trainer, module, *args) -> None:
            seen.append((module.model.backbone.training, module.model.head.training, module.model.frontend.training))

    for frozen in (False, True):
        seen.clear()
        model = tiny_model().eval()
        module = SEDTrainModule(model, OptimConfig(freeze_backbone=frozen), augment=AugmentConfig.none())
        vl = torch.utils.data.DataLoader(TinyDataset(4, seed=1), batch_size=4)
        trainer = _trainer(max_steps=4, callbacks=[_Watch()], check_val_every_n_epoch=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(module, ResumableLoader(TinyDataset(8), 4), vl)  # validation between epochs
        assert seen and all(s == (not frozen, True, False) for s in seen), seen


class _WithTeacher(torch.utils.data.Dataset):
    """TinyDataset items plus ``pseudo_strong`` teacher probabilities (here: blurred labels)."""

    def __init__(self, base: TinyDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.base[i])
        item["pseudo_strong"] = 0.2 + 0.6 * item["strong"]
        return item


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_distillation_and_mixed_precision_steps(precision: str):
    module = SEDTrainModule(
        tiny_model(),
        OptimConfig(lr=1e-2, warmup_steps=0),
        LossConfig(distillation_loss_weight=0.5, weak_loss_weight=0.5),
        AugmentConfig(mixup_p=1.0, wavmix_p=1.0),
    )
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = _trainer(max_steps=3, precision=precision, limit_val_batches=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, ResumableLoader(_WithTeacher(TinyDataset(8, no_strong_every=3)), 4))
    logged = trainer.callback_metrics
    assert torch.isfinite(logged["train/loss"]) and float(logged["train/distillation_loss"]) > 0
    assert any(not torch.equal(before[k], v) for k, v in module.model.state_dict().items())
