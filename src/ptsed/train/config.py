"""Settings of a fine-tuning run: one dataclass tree, presets, YAML files and ``key=value`` overrides.

Precedence: defaults < preset < YAML file < ``--set key=value`` overrides < explicit CLI flags.
Nested keys use dots: ``optim.lr=3e-4``, ``augment.mixup_p=0.5``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptsed.core.errors import ConfigError
from ptsed.train.augment import AugmentConfig
from ptsed.train.losses import LossConfig
from ptsed.train.optim import OptimConfig


@dataclass
class FinetuneConfig:
    """Everything a ``ptsed finetune`` run needs.

    Attributes:
        model: zoo name (``"beats"``, ``"atst_frame.as_weak"``, ``"frame_mn06"``), or ``"demo"``.
        checkpoint: start from this file instead (released or ptsed checkpoint).
        pretrained: load the zoo weights of ``model`` (False: random init, "from scratch").
        builder: keyword overrides of the architecture builder (e.g. ``{"depth": 4}``).
        name: name stored in the exported checkpoint (default ``<model>-finetuned``).
        head_type: ``"linear"`` or ``"attention"`` (weak = attention pooling, DESED-style weak labels).
        rnn_dim: BiGRU size of a teacher-form head (``None``: the form of the starting model, or none).
        drop_top_layers: feed the head from block ``-N - 1`` (N top blocks unused).
        train, valid: data sources (a DCASE folder, a HEAR task folder or a DESED root; see ``open_source``).
        labels: class names (default: the labels of the training data).
        window_s: training window length in seconds (the model's inference window stays 10 s).
        batch_size, accumulate: clips per batch and batches per optimiser step.
        epochs, max_steps, epoch_len: run length (``max_steps`` wins when set; ``epoch_len`` items per
            epoch, default the training set size).
        precision: Lightning precision (``"32-true"``, ``"bf16-mixed"``, ``"16-mixed"``).
        val_every: validate every N epochs; ckpt_every: write ``last.ckpt`` every N optimiser steps.
        num_workers, threads: DataLoader workers; torch CPU threads (0: leave as is).
        seed: seed of data order, augmentation and initialisation.
        select: export the ``"best"`` (validation PSDS1) or the ``"last"`` weights.
        median_filter_s: median filter used for the validation metrics during training.
        val_hop_s, val_stitch: hop (seconds; ``None``: half the model's window) and stitching (``"centre"`` or
            ``"mean"``) of the validation windows; the defaults are ``ptsed detect``'s, so the post-processing
            chosen on validation fits the scores detect produces.
        bn_recalibrate: batches of training data used to re-estimate BatchNorm statistics of the exported
            weights (0: keep the running averages; only models with BatchNorm, e.g. frame_mn, are affected).
        wandb: Weights & Biases project name (None: no wandb).
        teacher: checkpoint file of a frozen teacher model with the run's classes (in the same order) whose
            frame probabilities are distillation targets, weighted by ``loss.distillation_loss_weight``.
        optim, loss, augment: see :class:`OptimConfig`, :class:`LossConfig`, :class:`AugmentConfig`.
    """

    model: str = "frame_mn06"
    checkpoint: str | None = None
    pretrained: bool = True
    builder: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    head_type: str = "linear"
    rnn_dim: int | None = None
    drop_top_layers: int = 0
    train: str | None = None
    valid: str | None = None
    labels: list[str] | None = None
    window_s: float = 10.0
    batch_size: int = 16
    accumulate: int = 1
    epochs: int = 10
    max_steps: int | None = None
    epoch_len: int | None = None
    precision: str = "32-true"
    val_every: int = 1
    ckpt_every: int = 200
    num_workers: int = 0
    threads: int = 0
    seed: int = 0
    select: str = "best"
    median_filter_s: float = 0.28
    val_hop_s: float | None = None
    val_stitch: str = "centre"
    bn_recalibrate: int = 0
    wandb: str | None = None
    teacher: str | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FINETUNE_AUG = {
    "wavmix_p": 0.5,
    "wavmix_beta": 0.2,
    "mixup_p": 0.5,
    "frame_shift_p": 0.0,
    "mixstyle_p": 0.0,
    "filter_augment_p": 0.0,
    "freq_warp_p": 0.0,
}
"""Upstream's DCASE 2016 fine-tuning augmentation (``ex_dcase2016task2.py`` defaults)."""

PRESETS: dict[str, dict[str, Any]] = {
    "linear-probe": {
        "optim": {"freeze_backbone": True, "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 50},
        "augment": _FINETUNE_AUG,
    },
    "full": {
        "optim": {"lr": 1e-4, "lr_decay": 0.9, "weight_decay": 1e-3, "warmup_steps": 100},
        "augment": _FINETUNE_AUG,
    },
    "drop-top": {
        "drop_top_layers": 2,
        "optim": {"lr": 1e-4, "lr_decay": 0.9, "weight_decay": 1e-3, "warmup_steps": 100},
        "augment": _FINETUNE_AUG,
    },
    "desed": {
        "head_type": "attention",
        "loss": {"weak_loss_weight": 0.5},
        "optim": {"lr": 1e-4, "lr_decay": 0.9, "weight_decay": 1e-3, "warmup_steps": 100},
        "augment": _FINETUNE_AUG,
    },
    "scratch": {
        "pretrained": False,
        "bn_recalibrate": 40,
        "optim": {"lr": 1e-3, "weight_decay": 1e-2, "warmup_steps": 100},
        "augment": {"wavmix_p": 0.5, "mixup_p": 0.3, "mixstyle_p": 0.3, "filter_augment_p": 0.5, "freq_warp_p": 0.5},
    },
}
"""Named starting points (applied on top of the defaults):

- ``linear-probe``: frozen backbone, train the heads only.
- ``full``: fine-tune everything, layer-wise learning-rate decay 0.9.
- ``drop-top``: ``full`` with the top 2 backbone blocks unused (change with ``--drop-top-layers``).
- ``desed``: ``full`` with a strong + weak head (attention pooling) and the weak loss (weight 0.5).
- ``scratch``: random initialisation, higher learning rate, AudioSet-strong style augmentation at lower
  probabilities, BatchNorm statistics re-estimated on 40 batches of training data before export.
"""


def _set(obj: Any, key: str, value: Any, source: str) -> None:
    """Set ``key`` (dotted) on a dataclass tree, converting ``value`` to the field's type."""
    head, _, rest = key.partition(".")
    names = {f.name for f in dataclasses.fields(obj)}
    if head not in names:
        raise ConfigError(f"{source}: unknown setting {key!r} (known: {', '.join(sorted(names))})")
    current = getattr(obj, head)
    if dataclasses.is_dataclass(current):
        if rest:
            _set(current, rest, value, source)
            return
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key!r} expects a mapping")
        for k, v in value.items():
            _set(current, k, v, source)
        return
    if rest:
        raise ConfigError(f"{source}: {head!r} has no sub-settings")
    hint = typing.get_type_hints(type(obj))[head]
    setattr(obj, head, _coerce(value, hint, key, source))


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """``value`` (from YAML, a flag or a ``key=value`` string) as type ``hint``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    base = args[0] if optional and len(args) == 1 else hint
    if isinstance(value, str) and optional and value.strip().lower() in ("none", "null", "~", ""):
        return None
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: {key!r} cannot be empty")
    origin = typing.get_origin(base) or base
    try:
        if origin is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("true", "false", "yes", "no", "1", "0"):
                    raise ValueError(value)
                return low in ("true", "yes", "1")
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if origin in (int, float):
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if origin is int:
                if number != int(number):
                    raise ValueError(value)
                return int(number)
            return number
        if origin is str:
            return str(value)
        if origin in (list, tuple, dict):
            if isinstance(value, str):
                import yaml

                parsed = yaml.safe_load(value)
                value = (
                    parsed if not isinstance(parsed, str) or origin is dict else [x.strip() for x in value.split(",")]
                )
            if origin is dict and not isinstance(value, dict):
                raise ValueError(value)
            if origin in (list, tuple):
                if not isinstance(value, (list, tuple)):
                    raise ValueError(value)
                item = (typing.get_args(base) or (Any,))[0]
                value = [float(v) if item is float else v for v in value]
                return tuple(value) if origin is tuple else list(value)
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: {key!r} expects {_type_name(base)}, got {value!r}") from None
    return value


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint) or hint
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        origin, f"a {getattr(origin, '__name__', str(origin))}"
    )


def apply(config: FinetuneConfig, values: dict[str, Any], source: str) -> FinetuneConfig:
    """Apply a (nested or dotted) mapping of settings to ``config`` in place and return it."""
    for key, value in values.items():
        _set(config, key, value, source)
    return config


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML settings file (a clear :class:`ConfigError` otherwise)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def build_config(
    preset: str | None = None,
    yaml_file: str | Path | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    base: str | Path | None = None,
) -> FinetuneConfig:
    """Defaults, then the preset, the YAML file, ``key=value`` overrides and explicit flags, in that order.

    ``base``: a run's stored ``config.yaml``, applied right after the defaults (a resumed run starts from its
    own settings, so that only what is given again can differ).
    """
    config = FinetuneConfig()
    if base is not None:
        apply(config, read_yaml(base), str(base))
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        apply(config, PRESETS[preset], f"preset {preset}")
    if yaml_file is not None:
        path = Path(yaml_file)
        data = read_yaml(path)
        if "preset" in data:
            name = data.pop("preset")
            if name not in PRESETS:
                raise ConfigError(f"{path}: unknown preset {name!r}; presets: {', '.join(PRESETS)}")
            apply(config, PRESETS[name], f"preset {name}")
        apply(config, data, str(path))
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        _set(config, key.strip(), value.strip(), f"--set {item}")
    for key, value in (flags or {}).items():
        if value is not None:
            _set(config, key, value, f"--{key.replace('_', '-')}")
    return validate(config)


PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "64", "16", "bf16")
"""Lightning precision settings a run accepts."""


def validate(config: FinetuneConfig) -> FinetuneConfig:
    """Check the ranges of every setting; a :class:`ConfigError` names the first bad one (as its ``--set`` key).

    A learning rate of 0 is valid (the heads and backbone then stay as they are, e.g. to check a re-heading).
    """
    config.optim.__post_init__()
    config.loss.__post_init__()
    if config.head_type not in ("linear", "attention"):
        raise ConfigError(f"head_type must be 'linear' or 'attention', not {config.head_type!r}")
    if config.select not in ("best", "last"):
        raise ConfigError(f"select must be 'best' or 'last', not {config.select!r}")
    if config.precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {config.precision!r}")
    at_least = {
        "batch_size": (config.batch_size, 1),
        "accumulate": (config.accumulate, 1),
        "epochs": (config.epochs, 1),
        "max_steps": (config.max_steps, 1),
        "epoch_len": (config.epoch_len, 1),
        "val_every": (config.val_every, 1),
        "ckpt_every": (config.ckpt_every, 1),
        "rnn_dim": (config.rnn_dim, 1),
        "drop_top_layers": (config.drop_top_layers, 0),
        "num_workers": (config.num_workers, 0),
        "threads": (config.threads, 0),
        "bn_recalibrate": (config.bn_recalibrate, 0),
        "optim.warmup_steps": (config.optim.warmup_steps, 0),
    }
    for key, (value, low) in at_least.items():
        if value is not None and value < low:
            raise ConfigError(f"{key} must be >= {low}, got {value}")
    non_negative = {
        "optim.lr": config.optim.lr,
        "optim.backbone_lr": config.optim.backbone_lr,
        "optim.weight_decay": config.optim.weight_decay,
        "median_filter_s": config.median_filter_s,
    }
    for key, value in non_negative.items():
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{key} must be a finite number >= 0, got {value}")
    if not (math.isfinite(config.window_s) and config.window_s > 0):
        raise ConfigError(f"window_s must be a finite number > 0, got {config.window_s}")
    if not 0 <= config.optim.min_lr_ratio <= 1:
        raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {config.optim.min_lr_ratio}")
    if not all(0 <= b < 1 for b in config.optim.betas) or len(config.optim.betas) != 2:
        raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {list(config.optim.betas)}")
    return config
