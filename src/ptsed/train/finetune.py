"""``finetune()``: train a ptsed model on a labelled dataset and export ONE self-describing checkpoint.

Output folder layout::

    OUTPUT/model.pt            the exported model (weights, config, labels, post-processing); load it with
                               ptsed.create_model("x", checkpoint_path=...) or `ptsed detect --checkpoint`
    OUTPUT/checkpoints/        Lightning checkpoints: last.ckpt (resume with --resume) and best.ckpt
    OUTPUT/logs/version_N/     CSV (metrics.csv) and TensorBoard logs (a resumed run writes the next N)
    OUTPUT/config.yaml         the settings of the run
    OUTPUT/summary.json        scores on the validation split and training time
    OUTPUT/postprocess.json    the post-processing profile chosen on the validation split (also stored in
                               model.pt), for `ptsed detect --postprocess FILE`
    OUTPUT/thresholds.json, OUTPUT/median_filter.json
                               the same values, for `ptsed detect --threshold/--median-filter FILE`
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ptsed.core.errors import CheckpointError, ConfigError
from ptsed.models.relabel import HeadChange
from ptsed.models.sed_model import SEDModel
from ptsed.train.config import FinetuneConfig
from ptsed.train.runfolder import (
    changed_settings,
    check_output,
    checkpoint_io,
    disk_full,
    is_disk_full,
    load_checkpoint,
    quiet_lightning,
    write_atomic,
)


def adapt_model(
    model: SEDModel,
    labels: Sequence[str],
    *,
    head_type: str = "linear",
    rnn_dim: int | None = None,
    drop_top_layers: int = 0,
) -> SEDModel:
    """``model`` with heads for ``labels``, the head form asked for and the top ``drop_top_layers`` blocks unused.

    The front-end and backbone modules (and their weights) are shared with ``model``. Heads follow class names,
    never list order (:func:`ptsed.models.relabel.reheaded`): a class the model knows keeps its trained rows
    while the head input stays the same (same block, same BiGRU), a new class gets fresh rows and a class not
    in ``labels`` is dropped. The BiGRU of a teacher-form head is kept while its size stays the same.
    """
    return adapt_heads(model, labels, head_type=head_type, rnn_dim=rnn_dim, drop_top_layers=drop_top_layers)[0]


def adapt_heads(
    model: SEDModel,
    labels: Sequence[str],
    *,
    head_type: str = "linear",
    rnn_dim: int | None = None,
    drop_top_layers: int = 0,
) -> tuple[SEDModel, HeadChange]:
    """:func:`adapt_model`, and what happened to the classes (a :class:`~ptsed.models.relabel.HeadChange`)."""
    from ptsed.models.relabel import reheaded

    old_cfg = model.head_config
    rnn = rnn_dim if rnn_dim is not None else old_cfg.rnn_dim
    new_cfg = replace(old_cfg, n_strong=len(labels), n_weak=None, head_type=head_type, rnn_dim=rnn)
    if drop_top_layers:
        if drop_top_layers >= model.backbone.num_layers:
            raise ConfigError(
                f"cannot drop {drop_top_layers} of the {model.backbone.num_layers} blocks of {model.arch or model.name}"
            )
        layer = -drop_top_layers - 1
    else:
        layer = model.backbone_layer
    return reheaded(model, labels, head_config=new_cfg, backbone_layer=layer)


def load_start_model(config: FinetuneConfig) -> SEDModel:
    """The starting model of a run as stored (zoo weights, a checkpoint file, or random init)."""
    from ptsed.models.factory import create_model

    if config.checkpoint:
        return create_model(config.model, checkpoint_path=config.checkpoint, **config.builder)
    return create_model(config.model, pretrained=config.pretrained, **config.builder)


def build_model(config: FinetuneConfig, labels: Sequence[str], start: SEDModel | None = None) -> SEDModel:
    """The starting model adapted to ``labels`` and the head settings of ``config``; says on stderr what happened
    to the classes (``heads: 10 classes kept, 0 new, 0 dropped``)."""
    model, change = adapt_heads(
        start if start is not None else load_start_model(config),
        labels,
        head_type=config.head_type,
        rnn_dim=config.rnn_dim,
        drop_top_layers=config.drop_top_layers,
    )
    say(change.line())
    model.name = config.name or f"{(model.name or config.model).split('.')[0]}-finetuned"
    return model


def load_teacher(config: FinetuneConfig, labels: Sequence[str]) -> SEDModel | None:
    """The frozen distillation teacher of ``config`` (``None`` without one).

    Its classes must be those of ``labels``; in another order, its heads are re-ordered by class name."""
    from ptsed.models.factory import create_model
    from ptsed.models.relabel import reheaded

    weight = config.loss.distillation_loss_weight
    if config.teacher is None:
        if weight > 0:
            raise ConfigError("loss.distillation_loss_weight > 0 needs a teacher (--teacher FILE)")
        return None
    if weight <= 0:
        raise ConfigError(f"teacher {config.teacher} is unused: set loss.distillation_loss_weight > 0")
    teacher = create_model(config.model, checkpoint_path=config.teacher)
    known = list(teacher.labels or [])
    if sorted(known) != sorted(labels):
        missing, extra = sorted(set(labels) - set(known)), sorted(set(known) - set(labels))
        raise ConfigError(
            f"teacher {config.teacher} has other classes than the run (missing: {missing or 'none'}; "
            f"not in the run: {extra or 'none'}); pass --labels with the teacher's classes"
        )
    if known != list(labels):
        teacher, _ = reheaded(teacher, labels)  # same classes, another order: rows follow the names
    return teacher


@dataclass
class FinetuneResult:
    """What :func:`finetune` produced."""

    checkpoint: Path
    metrics: dict[str, float]
    postprocess: dict[str, Any]
    train_seconds: float
    steps: int


def _loggers(output: Path, config: FinetuneConfig) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    logs = output / "logs"
    version = f"version_{len(list(logs.glob('version_*'))) if logs.is_dir() else 0}"  # a resumed run adds one
    loggers: list[Any] = [CSVLogger(output, name="logs", version=version)]
    loggers.append(TensorBoardLogger(output, name="logs", version=version, default_hp_metric=False))
    if config.wandb:
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(project=config.wandb, save_dir=str(output)))
    return loggers


def start_run(output: Path, *, resume: bool, threads: int, seed: int) -> Path:
    """Common start of a training run: check the resume checkpoint, set torch's threads, seed everything.

    Returns the path of the run's ``checkpoints/last.ckpt``; when ``resume`` is true, the checkpoint to resume
    from (``last.ckpt``, or ``best.ckpt`` when ``last.ckpt`` is damaged).
    """
    import lightning as L

    last = output / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise ConfigError(f"cannot resume: {last} does not exist")
    if resume:
        from ptsed.train.runfolder import resume_checkpoint

        last = resume_checkpoint(last, say)  # a damaged last.ckpt: best.ckpt, or one clear error
    if threads > 0:
        torch.set_num_threads(threads)
    L.seed_everything(seed, workers=True, verbose=False)
    return last


def finetune(
    config: FinetuneConfig,
    output: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    overwrite: bool = False,
    force_settings: bool = False,
) -> FinetuneResult:
    """Fine-tune (or train from scratch) a model and export ``output/model.pt``.

    Args:
        config: the settings (see :class:`~ptsed.train.config.FinetuneConfig`).
        output: output folder (created).
        resume: continue from ``output/checkpoints/last.ckpt`` (exactly where it stopped), with the settings
            stored in ``output/config.yaml`` (others are refused, naming the differing keys).
        progress: show progress bars (on stderr).
        callbacks: extra Lightning callbacks.
        overwrite: remove the files of an earlier run in ``output`` first (without it, and without ``resume``,
            a folder that holds a run is refused).
        force_settings: resume even with settings other than the stored ones (``config.yaml`` is rewritten).

    Raises:
        ConfigError: bad settings, a folder holding another run, a resume with other settings.
        CheckpointError: a damaged checkpoint (``last.ckpt`` without a readable ``best.ckpt``, or the
            ``best.ckpt`` to export).
        DiskFullError: the disk filled up (the message names the file and the free space).

    Returns:
        A :class:`FinetuneResult` (the exported file, validation scores, chosen post-processing, time).
    """
    from ptsed.extras import require

    require("train", what="ptsed.train.finetune")
    if config.train is None:
        raise ConfigError("no training data: give --train (a DCASE folder, a HEAR task folder or a DESED root)")
    output = Path(output)
    if force_settings and not resume:
        raise ConfigError("--force-settings applies to --resume only")
    check_output(output, resume=resume, overwrite=overwrite)
    if resume:
        _check_resume_settings(output, config, force=force_settings)
    try:
        with quiet_lightning():
            return _finetune(config, output, resume=resume, progress=progress, callbacks=callbacks)
    except PermissionError as err:
        raise ConfigError(f"cannot write {err.filename or output}: permission denied") from None
    except (OSError, RuntimeError) as err:
        if is_disk_full(err):
            raise disk_full(getattr(err, "filename", None) or output) from err
        raise


def _check_resume_settings(output: Path, config: FinetuneConfig, *, force: bool) -> None:
    """Refuse a resume whose settings differ from the stored ``config.yaml`` (unless ``force``)."""
    from ptsed.train.config import apply, read_yaml

    stored_file = output / "config.yaml"
    if not stored_file.is_file():
        return
    stored = apply(FinetuneConfig(), read_yaml(stored_file), str(stored_file))
    changed = changed_settings(_plain(stored.to_dict()), _plain(config.to_dict()))
    if not changed:
        return
    if not force:
        raise ConfigError(
            f"cannot resume {output}: {len(changed)} settings differ from {stored_file} ({'; '.join(changed)}); "
            "resume with the stored settings (--resume alone reuses them), or pass --force-settings"
        )
    say(f"resuming {output} with changed settings ({'; '.join(changed)})")


def _finetune(
    config: FinetuneConfig, output: Path, *, resume: bool, progress: bool, callbacks: Sequence[Any]
) -> FinetuneResult:
    """:func:`finetune` after the checks of the output folder."""
    import lightning as L
    import yaml
    from lightning.pytorch.callbacks import ModelCheckpoint

    from ptsed.models.factory import save_checkpoint
    from ptsed.postprocess.profile import save_profile
    from ptsed.train.data import ResumableLoader
    from ptsed.train.module import SEDTrainModule, recalibrate_batchnorm
    from ptsed.train.sources import open_source
    from ptsed.train.validation import evaluate, reference_from_dataset, select_postprocess, validation_windows

    last = start_run(output, resume=resume, threads=config.threads, seed=config.seed)

    start_model = load_start_model(config)
    sample_rate = start_model.sample_rate
    train_ds = open_source(
        config.train, role="train", labels=config.labels, sample_rate=sample_rate, window_s=config.window_s, train=True
    )
    labels = list(config.labels or train_ds.labels)
    valid_ds = None
    val_windows = validation_windows(start_model, config.val_hop_s, config.val_stitch)  # detect's defaults
    if config.valid:
        valid_ds = open_source(
            config.valid,
            role="valid",
            labels=labels,
            sample_rate=sample_rate,
            window_s=val_windows["window_s"],
            window_hop_s=val_windows["hop_s"],
            train=False,
        )
    model = build_model(config, labels, start_model)
    teacher = load_teacher(config, labels)

    reference = reference_from_dataset(valid_ds) if valid_ds is not None else None
    module = SEDTrainModule(
        model,
        config.optim,
        config.loss,
        config.augment,
        seed=config.seed,
        teacher=teacher,
        reference=reference,
        val_median_filter_s=config.median_filter_s,
        val_stitch=val_windows["stitch"],
    )
    train_loader = ResumableLoader(
        train_ds,
        config.batch_size,
        seed=config.seed,
        epoch_len=config.epoch_len,
        num_workers=config.num_workers,
        drop_last=len(train_ds) > config.batch_size,
    )
    total_steps = config.max_steps or max(1, -(-len(train_loader) // config.accumulate)) * config.epochs
    module.total_steps = total_steps
    val_loader = None
    if valid_ds is not None:
        val_loader = torch.utils.data.DataLoader(
            valid_ds,
            batch_size=config.batch_size,
            shuffle=False,
            num_workers=config.num_workers,
            generator=torch.Generator().manual_seed(config.seed),
        )
    ckpt_dir = output / "checkpoints"
    monitor = "val/selection" if reference is not None and len(reference) else None
    ckpt_cbs = [ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0, every_n_train_steps=config.ckpt_every)]
    if monitor:
        ckpt_cbs.append(
            ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="best",
                monitor=monitor,
                mode="max",
                save_top_k=1,
                auto_insert_metric_name=False,
            )
        )
    output.mkdir(parents=True, exist_ok=True)
    write_atomic(output / "config.yaml", yaml.safe_dump(_plain(config.to_dict()), sort_keys=False))
    trainer = L.Trainer(
        accelerator="auto",
        devices=1,
        max_epochs=-1 if config.max_steps else config.epochs,
        max_steps=total_steps,
        precision=config.precision,
        accumulate_grad_batches=config.accumulate,
        check_val_every_n_epoch=config.val_every,
        limit_val_batches=None if val_loader is not None else 0,
        num_sanity_val_steps=0,
        callbacks=[*ckpt_cbs, *callbacks],
        logger=_loggers(output, config),
        log_every_n_steps=min(10, max(1, len(train_loader) // max(1, config.accumulate))),
        enable_progress_bar=progress,
        enable_model_summary=False,
        plugins=[checkpoint_io()],
        use_distributed_sampler=False,
        default_root_dir=str(output),
    )
    start = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume else None, weights_only=True)
    train_seconds = time.perf_counter() - start
    if trainer.global_step >= total_steps:
        trainer.save_checkpoint(ckpt_dir / "last.ckpt")  # a finished run: --resume then only re-exports

    best = ckpt_cbs[-1].best_model_path if monitor else ""
    if config.select == "best" and best and Path(best).is_file():
        try:
            state = load_checkpoint(Path(best))["state_dict"]
        except CheckpointError as err:
            raise CheckpointError(f"{err}; not exported: export the last weights with --resume --select last") from None
        module.load_state_dict(state)
    if config.bn_recalibrate > 0:
        clean = torch.utils.data.DataLoader(
            train_ds, batch_size=config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(config.seed)
        )
        recalibrate_batchnorm(module.model, clean, config.bn_recalibrate)
    metrics: dict[str, float] = {}
    postprocess: dict[str, Any] = {}
    if val_loader is not None and reference is not None and len(reference):
        trainer.validate(module, val_loader, verbose=False, weights_only=True)
        scores = module.last_val_scores
        postprocess = select_postprocess(
            scores, reference, labels, fitted_on={"valid": str(config.valid), "windows": val_windows}
        )
        metrics = {
            f"default_{k}": v for k, v in evaluate(scores, reference, median_filter_s=config.median_filter_s).items()
        }
        tuned = evaluate(
            scores, reference, median_filter_s=postprocess["median_filter_s"], threshold=postprocess["thresholds"]
        )
        metrics.update({f"tuned_{k}": v for k, v in tuned.items()})
    model = module.model.cpu().eval()
    path = save_checkpoint(
        model,
        output / "model.pt",
        postprocess=postprocess or _default_postprocess(labels, config.median_filter_s),  # type: ignore[arg-type]
        training={
            "train": str(config.train),
            "valid": str(config.valid) if config.valid else None,
            "steps": int(trainer.global_step),
            "seconds": round(train_seconds, 1),
            "metrics": metrics,
            "start": config.checkpoint or f"{config.model} ({'pretrained' if config.pretrained else 'random init'})",
            "validation_windows": val_windows if config.valid else None,
        },
    )
    pp = postprocess or _default_postprocess(labels, config.median_filter_s)
    for key, name in (("thresholds", "thresholds.json"), ("median_filter_s", "median_filter.json")):
        write_atomic(output / name, json.dumps(pp[key], indent=1))  # for --threshold FILE etc.
    if postprocess:
        save_profile(postprocess, output / "postprocess.json")  # for `ptsed detect --postprocess FILE`
    summary = {"checkpoint": str(path), "steps": int(trainer.global_step), "train_seconds": train_seconds, **metrics}
    write_atomic(output / "summary.json", json.dumps(summary, indent=2))
    return FinetuneResult(path, metrics, postprocess, train_seconds, int(trainer.global_step))


def say(line: str) -> None:
    """One line for the user on stderr (stdout is kept for results)."""
    print(line, file=sys.stderr, flush=True)


def _default_postprocess(labels: Sequence[str], median_filter_s: float) -> dict[str, Any]:
    return {
        "thresholds": {c: 0.5 for c in labels},
        "median_filter_s": {c: float(median_filter_s) for c in labels},
        "selected_on": "default",
    }


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


__all__ = ["FinetuneResult", "adapt_model", "build_model", "finetune", "load_start_model", "load_teacher"]
