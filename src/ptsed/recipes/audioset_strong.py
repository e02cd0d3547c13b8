"""Step 3 of the paper: training on AudioSet strong (teachers with a BiGRU, students by distillation).

One function, :func:`train`, runs upstream's ``ex_audioset_strong.py`` recipe on ptsed's parts:

- data: Google's strong-label TSVs (:func:`ptsed.data.audioset.read_strong_labels`) and the audio as a
  folder of ``Y<id>.<ext>`` clips or PaSST-style HDF5 files; 10 s clips, (447, 250) frame targets;
- sampling: upstream's temporal-count balanced sampler (or uniform), a fixed number of clips per epoch
  (:mod:`ptsed.train.sampler`), split over the data-parallel ranks;
- model: ``create_model(<arch>.as_weak, head="teacher", num_classes=447)`` (BiGRU 2 x 2048) or the
  student form (no BiGRU);
- training: :class:`ptsed.train.module.SEDTrainModule` (upstream's augmentations, strong BCE, distillation
  on the sigmoid of ensemble logits with weight ``loss.distillation_loss_weight``), upstream's optimiser
  (Adam, lr 7e-5, no weight decay) and schedule (20,000 warmup steps, then cosine);
- evaluation every ``val_every`` epochs on the eval split with upstream's protocol
  (:mod:`ptsed.evaluation.protocol`, ``audioset-strong``: 407 classes, 0.36 s median filter, PSDS1), on the
  predictions of ALL ranks gathered on rank 0 (upstream logs a per-rank value);
- outputs: ``config.yaml`` (the resolved settings), Lightning checkpoints (resume with ``resume=True``), logs,
  ``model.pt`` (ptsed format), ``model_released.pt`` (upstream's layout), ``eval/`` (the final evaluation).

Settings: :class:`AudioSetStrongConfig`; presets ``teacher`` and ``student`` are YAML files in
``ptsed/recipes/configs``; any setting can be overridden with dotted keys (``optim.lr=1e-4``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from ptsed.core.errors import ConfigError
from ptsed.train.augment import AugmentConfig
from ptsed.train.losses import LossConfig, masked_bce
from ptsed.train.module import SEDTrainModule
from ptsed.train.optim import OptimConfig, build_optimizer, lr_factor

PRESETS = ("teacher", "student")
CONFIG_NAME = "config.yaml"


# ----------------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------------
@dataclass
class DataConfig:
    """Where the data is and how it is sampled.

    Attributes:
        train_labels: Google's ``audioset_train_strong.tsv`` (``segment_id, start_time_seconds,
            end_time_seconds, label``).
        train_audio: the training clips: a folder of ``Y<id>.<ext>`` files, an HDF5 file, a folder of HDF5
            files, or a list of HDF5 files (PaSST's ``balanced_train_segments_mp3.hdf`` and
            ``unbalanced_train_segments_mp3.hdf``).
        eval_labels: ``audioset_eval_strong.tsv`` (empty: no evaluation).
        eval_audio: the eval clips (same forms as ``train_audio``).
        eval_durations: clip durations (upstream's ``eval_durations.csv`` or a DCASE TSV); clips without one
            count as 10 s.
        pseudo_labels: HDF5 file of ensemble frame logits (the Zenodo file or ``ptsed ensemble-logits``
            output); needed when ``loss.distillation_loss_weight > 0``.
        sampler: ``"balanced"`` (upstream's temporal-count balanced sampler) or ``"uniform"``.
        sample_weight_offset: upstream's ``sample_weight_offset`` (30).
        epoch_len: clips per epoch over all ranks (upstream: 100,000).
        replacement: draw the epoch with replacement (upstream: without).
        num_workers: DataLoader processes per rank.
    """

    train_labels: str | None = None
    train_audio: list[str] = field(default_factory=list)
    eval_labels: str | None = None
    eval_audio: list[str] = field(default_factory=list)
    eval_durations: str | None = None
    pseudo_labels: str | None = None
    sampler: str = "uniform"
    sample_weight_offset: float = 30.0
    epoch_len: int = 100_000
    replacement: bool = False
    num_workers: int = 8


@dataclass
class TrainerConfig:
    """Devices and Lightning settings.

    Attributes:
        accelerator: ``"auto"``, ``"gpu"``, ``"cpu"``.
        devices: ``"auto"`` (all visible GPUs, or 1 CPU process), a count (``"4"``) or a list (``"0,2"``).
        num_nodes: machines (multi-node DDP, e.g. under SLURM).
        strategy: ``"auto"`` (DDP when there is more than one process) or any Lightning strategy name.
        precision: ``"auto"`` (``16-mixed`` on GPUs as upstream, ``32-true`` on CPU), or a Lightning value.
        find_unused_parameters: DDP option (the weak head is frozen when unused, so ``false`` works).
        sync_check_every: check every N optimiser steps that all ranks hold bit-identical weights (0: off).
        log_every: log training scalars every N steps.
        ckpt_every: write ``checkpoints/last.ckpt`` every N optimiser steps (and at every epoch end).
        progress: progress bars.
    """

    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"
    find_unused_parameters: bool = False
    sync_check_every: int = 0
    log_every: int = 50
    ckpt_every: int = 1000
    progress: bool = True


def _upstream_optim() -> OptimConfig:
    """``ex_audioset_strong.py``: Adam (``--adamw`` off), lr 7e-5, no weight decay, cosine schedule after
    20,000 warmup steps (the default of its ``get_lr_scheduler``; the ``--warmup_steps`` flag is never used)."""
    return OptimConfig(optimizer="adam", lr=7e-5, weight_decay=0.0, warmup_steps=20_000, schedule="cos")


@dataclass
class AudioSetStrongConfig:
    """Everything an AudioSet-strong run needs (defaults: upstream's ``ex_audioset_strong.py`` defaults).

    Attributes:
        model: architecture (``atst_frame``, ``beats``, ``fpasst``, ``asit``, ``m2d``, ``frame_mn06``,
            ``frame_mn10``; upstream names such as ``ATST-F`` work too). ``arch.tag`` sets ``start`` too.
        start: zoo weights to start from: ``as_weak`` (the paper), ``ssl``, ``as_strong``, or ``none``
            (random initialisation).
        checkpoint: start from this file instead (released layout or ptsed checkpoint).
        form: ``"teacher"`` (BiGRU of ``rnn_dim`` units per direction, 2 layers) or ``"student"``.
        rnn_dim: BiGRU size of the teacher form (upstream 2048).
        builder: architecture builder overrides (reduced sizes for tests, e.g. ``{depth: 1}``).
        name: model name stored in the exported checkpoint (default ``<arch>.<form>``).
        batch_size: clips per optimiser step over all ranks (upstream 256 on one GPU); each rank takes
            ``batch_size / (world * accumulate)`` per forward pass.
        accumulate: forward passes per optimiser step.
        eval_batch_size: clips per forward pass in evaluation (default: the training one per rank).
        epochs, max_steps: run length (``max_steps`` wins when set).
        val_every: evaluate every N epochs (upstream 5; 0: only at the end).
        seed: seed of sampling, augmentation and initialisation.
        select: export the ``"last"`` weights or the ``"best"`` (eval PSDS1 macro; needs a shared filesystem
            in multi-node runs).
        threads: torch CPU threads (0: leave as is).
        wandb: Weights & Biases project (None: CSV + TensorBoard only).
        data, trainer, optim, loss, augment: see their classes.
    """

    model: str = "atst_frame"
    start: str = "as_weak"
    checkpoint: str | None = None
    form: str = "student"
    rnn_dim: int = 2048
    builder: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    batch_size: int = 256
    accumulate: int = 1
    eval_batch_size: int | None = None
    epochs: int = 30
    max_steps: int | None = None
    val_every: int = 5
    seed: int = 0
    select: str = "last"
    threads: int = 0
    wandb: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=_upstream_optim)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict[str, Any]:
        from ptsed.train.finetune import _plain

        return _plain(dataclasses.asdict(self))


def preset_path(name: str) -> Path:
    """The YAML file of a preset (package data in ``ptsed/recipes/configs``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return Path(__file__).resolve().parent / "configs" / f"{name}.yaml"


def _apply_file(config: AudioSetStrongConfig, data: dict[str, Any], source: str) -> None:
    from ptsed.train.config import apply, read_yaml

    data = dict(data)
    preset = data.pop("preset", None)
    if preset is not None:
        apply(config, read_yaml(preset_path(preset)), f"preset {preset}")
    apply(config, data, source)


def load_config(
    preset: str | None = None,
    yaml_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
    *,
    base: Mapping[str, Any] | None = None,
) -> AudioSetStrongConfig:
    """Defaults (or ``base``, e.g. a run's saved config), then the preset, the YAML file, ``key=value``
    overrides and explicit flags (``None`` values skipped), in that order; validated."""
    from ptsed.train.config import apply, read_yaml

    config = AudioSetStrongConfig()
    if base is not None:
        apply(config, dict(base), "saved config")
    if preset is not None:
        apply(config, read_yaml(preset_path(preset)), f"preset {preset}")
    if yaml_file is not None:
        _apply_file(config, read_yaml(yaml_file), str(yaml_file))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        apply(config, {key.strip(): value.strip()}, f"--set {item}")
    for key, value in (flags or {}).items():
        if value is not None:
            apply(config, {key: value}, f"--{key.replace('_', '-').replace('.', '-')}")
    validate(config)
    return config


def validate(config: AudioSetStrongConfig) -> None:
    """Check the settings; raises :class:`ConfigError` naming the setting."""
    from ptsed.inference.predictor import resolve_model_name
    from ptsed.models.zoo import get_arch, split_name

    config.optim.__post_init__()
    config.loss.__post_init__()
    arch_name, tag = split_name(resolve_model_name(config.model))
    if "." in resolve_model_name(config.model):
        config.start = tag
    config.model = get_arch(arch_name).name
    if config.start not in ("ssl", "as_weak", "as_strong", "none"):
        raise ConfigError(f"start must be ssl, as_weak, as_strong or none, not {config.start!r}")
    if config.form not in ("teacher", "student"):
        raise ConfigError(f"form must be 'teacher' or 'student', not {config.form!r}")
    if config.select not in ("last", "best"):
        raise ConfigError(f"select must be 'last' or 'best', not {config.select!r}")
    if config.data.sampler not in ("balanced", "uniform"):
        raise ConfigError(f"data.sampler must be 'balanced' or 'uniform', not {config.data.sampler!r}")
    for key in ("batch_size", "accumulate", "epochs", "rnn_dim"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{key} must be >= 1, got {getattr(config, key)}")
    if config.val_every < 0:
        raise ConfigError(f"val_every must be >= 0, got {config.val_every}")
    if config.data.epoch_len < 1:
        raise ConfigError(f"data.epoch_len must be >= 1, got {config.data.epoch_len}")
    if isinstance(config.data.train_audio, str):
        config.data.train_audio = [config.data.train_audio]
    if isinstance(config.data.eval_audio, str):
        config.data.eval_audio = [config.data.eval_audio]


def read_run_config(run_dir: str | Path) -> AudioSetStrongConfig:
    """The resolved settings saved in a run folder."""
    from ptsed.train.config import read_yaml

    return load_config(base=read_yaml(Path(run_dir) / CONFIG_NAME))


def save_config(config: AudioSetStrongConfig, path: str | Path) -> Path:
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------------
def build_model(config: AudioSetStrongConfig, *, pretrained: bool = True) -> Any:
    """The starting model: ``create_model(<arch>.<start>, head=<form>, num_classes=447)``.

    With ``pretrained=False`` the weights are random (used to rebuild a run's model from its checkpoint).
    """
    from ptsed.heads.sed_head import HeadConfig
    from ptsed.models.factory import create_model
    from ptsed.models.zoo import STRONG_VOCAB, get_arch

    arch = get_arch(config.model)
    tag = config.start if config.start in arch.tags else arch.tags[-1]
    if config.start not in ("none", *arch.tags):
        raise ConfigError(
            f"model {arch.name!r} has no {config.start!r} checkpoint; its tags are: {', '.join(arch.tags)}"
        )
    kwargs = {"head": config.form, "num_classes": 447, "rnn_dim": config.rnn_dim, **config.builder}
    name = f"{arch.name}.{tag}"
    if config.checkpoint and pretrained:
        model = create_model(name, checkpoint_path=config.checkpoint, **kwargs)
    else:
        model = create_model(name, pretrained=pretrained and config.start != "none", **kwargs)
    cfg: HeadConfig = model.head_config
    want_rnn = config.rnn_dim if config.form == "teacher" else None
    if cfg.rnn_dim != want_rnn or cfg.n_strong != 447:
        raise ConfigError(
            f"{config.checkpoint or name} gives a model with {cfg.n_strong} classes and "
            f"{'a BiGRU of ' + str(cfg.rnn_dim) if cfg.rnn_dim else 'no BiGRU'}; the {config.form} form needs 447 "
            f"classes and {'a BiGRU of ' + str(want_rnn) if want_rnn else 'no BiGRU'}"
        )
    if model.vocabulary is None:
        model.vocabulary = STRONG_VOCAB
    model.name = config.name or f"{arch.name}.{config.form}"
    return model


# ----------------------------------------------------------------------------------------------------
# evaluation on the gathered predictions
# ----------------------------------------------------------------------------------------------------
class _Collected:
    """Frame logits (K, T) and validation losses of evaluation clips, deduplicated by clip id (the distributed
    sampler pads the last ranks with repeated clips)."""

    def __init__(self) -> None:
        self.logits: dict[str, np.ndarray] = {}
        self.losses: dict[str, float] = {}

    def add(self, item: tuple[str, np.ndarray, float]) -> None:
        name, logits, loss = item
        if name not in self.logits:
            self.logits[name] = logits
            self.losses[name] = float(loss)


class _ScoreSource:
    """The collected logits as an evaluation source (:mod:`ptsed.evaluation.sources` interface): per clip,
    sigmoid scores (T, K) on 250 frames over [0, 10] s, as upstream scores its eval clips."""

    kind = "model"
    dtype = np.float32
    filterable = True

    def __init__(self, collected: _Collected, labels: Sequence[str], hop_s: float, clip_s: float) -> None:
        self.collected, self.labels, self.hop_s, self.clip_s = collected, list(labels), hop_s, clip_s
        self.description = "ptsed train (gathered over all ranks)"

    def names(self) -> list[str]:
        return list(self.collected.logits)

    def read(self, name: str, duration_s: float | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        from ptsed.core.frames import frame_times

        x = self.collected.logits[name].astype(np.float32)
        scores = (1.0 / (1.0 + np.exp(-x))).T
        return (
            np.ascontiguousarray(scores, dtype=np.float32),
            frame_times(x.shape[1] + 1, self.hop_s, self.clip_s),
            self.labels,
        )


def freeze_unused_parameters(model: Any, clip_s: float = 10.0, *, weak: bool = False) -> list[str]:
    """Freeze the trainable parameters that take no part in the training loss (e.g. ATST-Frame's
    ``mask_embed``, used only in its self-supervised pre-training), found with one forward/backward pass on
    a silent clip. DDP then needs no per-step search for unused parameters; their values stay as loaded,
    as upstream's never change (no gradient ever reaches them). Returns their names."""
    was_training = model.training
    model.eval()
    wave = torch.zeros(1, int(round(clip_s * model.sample_rate)))
    try:
        out = model(wave)
        loss = out.strong_logits.float().sum() + (out.weak_logits.float().sum() if weak else 0.0)
        loss.backward()
        unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    for name, p in model.named_parameters():
        if name in unused:
            p.requires_grad_(False)
    return unused


class AudioSetStrongModule(SEDTrainModule):
    """:class:`~ptsed.train.module.SEDTrainModule` with upstream's AudioSet-strong evaluation.

    Validation stores each clip's frame logits; at the end of the epoch the logits of all ranks are gathered
    on rank 0, scored with the ``audioset-strong`` protocol, and the numbers are broadcast so that every rank
    logs the same values: ``val/psds1`` (sed_scores_eval's PSDS1), ``val/psds1_macro`` (mean per-class PSDS1,
    upstream's ``psds1_macro_averaged``, the paper's number), ``val/pauroc``, ``val/loss``, ``val/n_clips``.

    Args:
        model, optim, loss, augment, seed, total_steps: as :class:`SEDTrainModule`.
        ground_truth: eval clip id -> events; durations: clip id -> seconds (default ``clip_s``).
        clip_s: clip length of the eval items in seconds.
    """

    def __init__(
        self,
        model: Any,
        optim: OptimConfig,
        loss: LossConfig,
        augment: AugmentConfig,
        *,
        seed: int = 0,
        ground_truth: Mapping[str, Any] | None = None,
        durations: Mapping[str, float] | None = None,
        clip_s: float = 10.0,
        total_steps: int | None = None,
    ) -> None:
        super().__init__(model, optim, loss, augment, seed=seed, total_steps=total_steps)
        self.seed = seed
        self.ground_truth = dict(ground_truth or {})
        self.durations = dict(durations or {})
        self.clip_s = clip_s
        if loss.weak_loss_weight == 0 and model.head.has_heads:
            # no gradient reaches the weak head on AudioSet strong; frozen, DDP needs no unused-parameter search
            model.head.weak_head.requires_grad_(False)
        self._items: list[tuple[str, np.ndarray, float]] = []
        self.frozen_unused: list[str] = []
        self.last_result: Any = None
        self.last_metrics: dict[str, float] = {}

    def _reseed_augmenter(self, step: int) -> None:
        rank = self.trainer.global_rank
        if rank:  # each rank draws its own augmentations
            self.augmenter.rng = np.random.default_rng([self.seed, rank, step])

    def setup(self, stage: str) -> None:
        self._reseed_augmenter(0)
        if stage == "fit" and self.trainer.world_size > 1:
            self.frozen_unused = freeze_unused_parameters(
                self.model, self.clip_s, weak=self.loss_config.weak_loss_weight > 0
            )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # the checkpoint holds rank 0's generator
        self._reseed_augmenter(int(checkpoint.get("global_step", 0)) + 1)

    # -- evaluation ----------------------------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self.model(batch["waveform"]).strong_logits.float()
        strong = batch["strong"].float()
        for i, name in enumerate(batch["filename"]):
            loss = masked_bce(logits[i : i + 1], strong[i : i + 1])
            self._items.append((str(name), logits[i].cpu().numpy(), float(loss)))

    def on_validation_epoch_start(self) -> None:
        self._items = []

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._items = []
            return
        metrics = self.gathered_metrics()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*sync_dist.*")
            self.log_dict(metrics, sync_dist=False)  # the same numbers on every rank, by construction
        self.last_metrics = metrics

    def gathered_metrics(self) -> dict[str, float]:
        """Gather the stored logits on rank 0, evaluate there, broadcast the numbers (collective)."""
        from ptsed.train.ddp import broadcast_object, gather_to_rank0, rank_and_world

        collected = _Collected()
        gather_to_rank0(self._items, collected.add)
        self._items = []
        metrics: dict[str, float] | None = None
        if rank_and_world()[0] == 0:
            self.last_result = self._evaluate(collected)
            s = self.last_result.summary if self.last_result is not None else {}
            metrics = {
                "val/loss": float(np.mean(list(collected.losses.values()))) if collected.losses else math.nan,
                "val/psds1": float(s.get("psds1", math.nan)),
                "val/psds1_macro": float(s.get("psds1_macro", math.nan)),
                "val/pauroc": float(s.get("pauroc", math.nan)),
                "val/n_clips": float(s.get("n_clips", 0)),
            }
        return broadcast_object(metrics)

    def _evaluate(self, collected: _Collected) -> Any:
        from ptsed.evaluation.protocol import evaluate

        gt = {c: self.ground_truth[c] for c in collected.logits if c in self.ground_truth}
        if not gt:
            return None
        source = _ScoreSource(collected, self.model.labels, self.model.frame_hop_s, self.clip_s)
        durations = {c: self.durations.get(c, self.clip_s) for c in gt}
        return evaluate(source, gt, durations, protocol="audioset-strong", metrics=("psds1", "pauroc"), warn=None)

    # -- optimiser ----------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        # upstream's schedule: the warmup is not shortened to the run (a run shorter than its warmup ends below
        # the peak learning rate, as ex_audioset_strong.py does with its fixed 20,000 warmup steps)
        optimizer = build_optimizer(self.model, self.optim_config)
        total = self.total_steps or int(self.trainer.estimated_stepping_batches)
        c = self.optim_config

        def factor(step: int) -> float:
            return lr_factor(step, total, c.warmup_steps, c.schedule, c.min_lr_ratio)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}


# ----------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------
def _read_labels(path: str, what: str) -> dict[str, Any]:
    from ptsed.data.audioset import read_strong_labels

    events, info = read_strong_labels(path)
    if not events:
        raise ConfigError(f"{what} labels {path!r} hold no clips")
    return events


class AudioSetStrongData(L.LightningDataModule):
    """Train and eval loaders of a run; samplers are made per rank once the trainer knows the world."""

    def __init__(self, config: AudioSetStrongConfig, model: Any, output: Path) -> None:
        super().__init__()
        from ptsed.recipes.audioset_data import ForkSafeAudio, StrongClips
        from ptsed.recipes.ensemble import LogitsFile

        self.config = config
        d = config.data
        classes, sr = model.labels, model.sample_rate
        self.train_set = self.eval_set = None
        self.weights: np.ndarray | None = None
        self.notes: list[str] = []
        if d.train_labels:
            if not d.train_audio:
                raise ConfigError("data.train_audio is not set (a clip folder or PaSST-style HDF5 files)")
            pseudo = LogitsFile(d.pseudo_labels) if d.pseudo_labels else None
            self.train_set = StrongClips(
                _read_labels(d.train_labels, "training"), ForkSafeAudio(d.train_audio), classes, sr, pseudo=pseudo
            )
            if self.train_set.missing_audio:
                self.notes.append(f"{len(self.train_set.missing_audio)} training clips have labels but no audio")
            if self.train_set.missing_pseudo:
                self.notes.append(
                    f"{len(self.train_set.missing_pseudo)} training clips have no teacher logits in "
                    f"{d.pseudo_labels} and are left out"
                )
            if len(self.train_set) == 0:
                raise ConfigError(
                    f"no training clip has audio{' and teacher logits' if pseudo else ''}: check "
                    f"{d.train_audio} against {d.train_labels}"
                )
            if d.sampler == "balanced":
                self.weights = self._weights(output)
        if d.eval_labels:
            if not d.eval_audio:
                raise ConfigError("data.eval_audio is not set")
            self.eval_set = StrongClips(_read_labels(d.eval_labels, "eval"), ForkSafeAudio(d.eval_audio), classes, sr)
            if self.eval_set.missing_audio:
                self.notes.append(f"{len(self.eval_set.missing_audio)} eval clips have labels but no audio")
            if len(self.eval_set) == 0:
                raise ConfigError(f"no eval clip has audio: check {d.eval_audio} against {d.eval_labels}")

    def _weights(self, output: Path) -> np.ndarray:
        from ptsed.recipes.audioset_data import balanced_sample_weights

        return balanced_sample_weights(
            self.train_set, self.config.data.sample_weight_offset, output / "sample_weights.npz"
        )

    def _world(self) -> tuple[int, int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def per_device_batch(self) -> int:
        _, world = self._world()
        c = self.config
        parts = world * c.accumulate
        if c.batch_size % parts:
            raise ConfigError(
                f"batch_size {c.batch_size} is not divisible by {world} processes x accumulate {c.accumulate}"
            )
        return c.batch_size // parts

    def train_dataloader(self) -> Any:
        from ptsed.train.sampler import BalancedEpochSampler, SampledLoader

        if self.train_set is None:
            raise ConfigError("no training data: set data.train_labels and data.train_audio")
        rank, world = self._world()
        c = self.config
        sampler = BalancedEpochSampler(
            self.weights,
            c.data.epoch_len,
            size=len(self.train_set),
            seed=c.seed,
            replacement=c.data.replacement,
            num_replicas=world,
            rank=rank,
        )
        return SampledLoader(
            self.train_set, sampler, self.per_device_batch(), seed=c.seed, num_workers=c.data.num_workers
        )

    def val_dataloader(self) -> Any:
        if self.eval_set is None:
            return []
        rank, world = self._world()
        sampler = None
        if world > 1:
            sampler = torch.utils.data.DistributedSampler(
                self.eval_set, num_replicas=world, rank=rank, shuffle=False, drop_last=False
            )
        batch = self.config.eval_batch_size or max(1, self.per_device_batch())
        return torch.utils.data.DataLoader(
            self.eval_set, batch_size=batch, sampler=sampler, shuffle=False, num_workers=self.config.data.num_workers
        )


# ----------------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What :func:`train` produced (on rank 0; other ranks get the metrics only)."""

    output: Path
    checkpoint: Path | None
    released: Path | None
    metrics: dict[str, float]
    steps: int
    train_seconds: float
    is_global_zero: bool = True


def _devices(value: str) -> Any:
    v = str(value).strip()
    if v == "auto":
        return "auto"
    if v.isdigit():
        return int(v)
    if v.lstrip("-").isdigit():
        return int(v)
    return [int(x) for x in v.strip("[]").split(",") if x.strip()]


def _precision(config: AudioSetStrongConfig) -> str:
    p = config.trainer.precision
    if p != "auto":
        return p
    gpu = config.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "16-mixed" if gpu else "32-true"


def _strategy(config: AudioSetStrongConfig) -> Any:
    t = config.trainer
    if t.strategy in ("ddp", "auto") and t.find_unused_parameters:
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=True)
    return t.strategy


NEVER = 10**9
"""``check_val_every_n_epoch`` of runs evaluated only at the end (``val_every: 0``)."""


def _launching_rank_zero() -> bool:
    """True in the process that becomes global rank 0 (before the process group exists): no launcher
    variable (Lightning, torchrun, SLURM) names another rank."""
    return all(os.environ.get(v, "0") == "0" for v in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def train(
    config: AudioSetStrongConfig,
    output: str | Path,
    *,
    resume: bool = False,
    evaluate_only: bool = False,
    callbacks: Sequence[Any] = (),
) -> RunResult:
    """Train (or, with ``evaluate_only``, only evaluate) a model on AudioSet strong; see the module docstring.

    Works unchanged on one process and under DDP (Lightning launches the ranks for ``trainer.devices > 1``;
    ``torchrun``/SLURM launches are picked up from the environment).
    """
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from ptsed.data.audioset import read_durations
    from ptsed.train.ddp import WeightSyncCheck
    from ptsed.train.finetune import _loggers, start_run

    validate(config)
    output = Path(output)
    if config.loss.distillation_loss_weight > 0 and not config.data.pseudo_labels and not evaluate_only:
        raise ConfigError("loss.distillation_loss_weight > 0 needs teacher logits: set data.pseudo_labels")
    last = start_run(output, resume=resume, threads=config.threads, seed=config.seed)

    model = build_model(config)
    data = AudioSetStrongData(config, model, output)
    if evaluate_only and data.eval_set is None:
        raise ConfigError("nothing to evaluate: set data.eval_labels and data.eval_audio")
    for note in data.notes:
        warnings.warn(note, stacklevel=2)
    durations = read_durations(config.data.eval_durations) if config.data.eval_durations else {}
    module = AudioSetStrongModule(
        model,
        config.optim,
        config.loss,
        config.augment,
        seed=config.seed,
        ground_truth=data.eval_set.events if data.eval_set is not None else None,
        durations=durations,
        total_steps=config.max_steps,
    )
    cbs: list[Any] = [ModelCheckpoint(dirpath=output / "checkpoints", save_last=True, save_top_k=0,
                                      every_n_train_steps=config.trainer.ckpt_every)]  # fmt: skip
    has_eval = data.eval_set is not None
    if has_eval and config.select == "best":
        cbs.append(ModelCheckpoint(dirpath=output / "checkpoints", filename="best", monitor="val/psds1_macro",
                                   mode="max", save_top_k=1, auto_insert_metric_name=False))  # fmt: skip
    if config.trainer.sync_check_every > 0:
        cbs.append(WeightSyncCheck(config.trainer.sync_check_every, output / "logs" / "weight_sync.jsonl"))
    if not evaluate_only:
        cbs.append(LearningRateMonitor(logging_interval="step"))
    cbs.extend(callbacks)
    output.mkdir(parents=True, exist_ok=True)
    if _launching_rank_zero():
        save_config(config, output / CONFIG_NAME)
    trainer = L.Trainer(
        accelerator=config.trainer.accelerator,
        devices=_devices(config.trainer.devices),
        num_nodes=config.trainer.num_nodes,
        strategy=_strategy(config),
        precision=_precision(config),
        max_epochs=-1 if config.max_steps else config.epochs,
        max_steps=config.max_steps or -1,
        accumulate_grad_batches=config.accumulate,
        check_val_every_n_epoch=config.val_every or NEVER,
        limit_val_batches=1.0 if has_eval else 0,
        num_sanity_val_steps=0,
        callbacks=cbs,
        logger=_loggers(output, config),
        log_every_n_steps=config.trainer.log_every,
        enable_progress_bar=config.trainer.progress,
        enable_model_summary=config.trainer.progress,
        use_distributed_sampler=False,
        default_root_dir=str(output),
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        if not evaluate_only:
            trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None, weights_only=True)
            if config.select == "best" and has_eval:
                best = cbs[1].best_model_path
                if best and Path(best).is_file():
                    module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
        train_seconds = time.perf_counter() - start
        metrics: dict[str, float] = {}
        if has_eval:
            trainer.validate(module, datamodule=data, verbose=False)
            metrics = dict(module.last_metrics)
    result = RunResult(output, None, None, metrics, int(trainer.global_step), train_seconds, trainer.is_global_zero)
    if not trainer.is_global_zero:
        return result
    if module.last_result is not None:
        module.last_result.save(output / "eval", plot=False)
    if not evaluate_only:
        from ptsed.release.export import export_model

        trained = module.model.cpu().eval()
        info = {
            "recipe": "audioset-strong",
            "form": config.form,
            "start": config.checkpoint or f"{config.model}.{config.start}",
            "steps": int(trainer.global_step),
            "seconds": round(train_seconds, 1),
            "metrics": metrics,
            "config": config.to_dict(),
        }
        result.checkpoint = export_model(trained, output / "model.pt", "ptsed", training=info)
        if trained.backbone_layer is None:
            result.released = export_model(trained, output / "model_released.pt", "released")
    summary = {
        "model": str(result.checkpoint) if result.checkpoint else None,
        "released": str(result.released) if result.released else None,
        "steps": result.steps,
        "train_seconds": round(train_seconds, 1),
        **metrics,
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return result


__all__ = [
    "PRESETS",
    "AudioSetStrongConfig",
    "AudioSetStrongData",
    "AudioSetStrongModule",
    "DataConfig",
    "RunResult",
    "TrainerConfig",
    "build_model",
    "load_config",
    "read_run_config",
    "train",
]
