"""``ptsed finetune``: fine-tune a model on your labelled data and export one self-describing checkpoint."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Fine-tune a ptsed model (or train one from scratch) on strongly or weakly labelled audio, choose the
post-processing (per-class thresholds and median filters) on the validation split, and write ONE file,
OUTPUT/model.pt, that `ptsed detect --checkpoint OUTPUT/model.pt` and
ptsed.create_model("x", checkpoint_path="OUTPUT/model.pt") use directly.

Data (--train / --valid) is one of:
  a DCASE folder    audio files (or an audio/ sub-folder) and TSVs recognised by their header:
                    strong labels 'filename onset offset event_label', weak labels 'filename event_labels',
                    durations 'filename duration'
  a HEAR task       a folder with task_metadata.json; add #split to pick one (task#fold01); default
                    splits: train / valid
  a DESED root      a folder with audio/ and metadata/; default splits: train / validation

Presets (--preset; every setting can be changed afterwards):
  linear-probe  frozen backbone, train the heads only (lr 1e-3)
  full          fine-tune everything with layer-wise learning-rate decay 0.9 (lr 1e-4)
  drop-top      like full, but the head reads block -3 (the top 2 blocks are dropped; see --drop-top-layers)
  desed         like full, with a strong + weak head (attention pooling) and a weak-label loss
  scratch       random initialisation (no pretrained weights), lr 1e-3, AudioSet-strong style augmentation
"""

EPILOG = """\
examples:
  ptsed finetune --model beats --preset full --train data/train --valid data/valid --output runs/beats
  ptsed finetune --model atst_frame --preset linear-probe --train hear/dcase2016_task2 \\
      --valid hear/dcase2016_task2 --output runs/probe
  ptsed finetune --model fpasst --preset desed --train DESED --valid DESED --output runs/desed --epochs 20
  ptsed finetune --model frame_mn06 --preset scratch --train data/train --valid data/valid \\
      --output runs/scratch --set augment.mixup_p=0.5 --set optim.lr=2e-3
  ptsed finetune --config run.yaml --output runs/x --resume      continue a killed run exactly
  ptsed finetune --output runs/x --resume                         the same, with the stored settings

An OUTPUT folder that already holds a run is refused unless --resume (continue or re-export it) or
--overwrite (remove its files and start again). Results go to stdout, progress and messages to stderr.

A YAML config (--config) holds the same settings as keys (nested: optim.*, loss.*, augment.*; see
docs/training.md); --set KEY=VALUE overrides it and explicit flags override both.
Logs: OUTPUT/logs/metrics.csv and TensorBoard (tensorboard --logdir OUTPUT/logs)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a model on labelled audio and export one checkpoint",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("model")
    g.add_argument("--model", help="zoo name (beats, atst_frame.as_weak, frame_mn06, ...) or demo [frame_mn06]")
    g.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="start from this checkpoint file instead of the zoo weights (its keys say which model: --model may "
        "be left out)",
    )
    g.add_argument(
        "--no-pretrained", dest="pretrained", action="store_const", const=False, help="random initialisation"
    )
    g.add_argument("--preset", help="linear-probe, full, drop-top, desed or scratch (see above)")
    g.add_argument("--drop-top-layers", type=int, metavar="N", help="feed the head from block -N-1")
    g.add_argument("--head", dest="head_type", choices=["linear", "attention"], help="head type [linear]")
    g.add_argument("--rnn-dim", type=int, metavar="D", help="add a BiGRU of D units per direction before the heads")
    g.add_argument("--name", help="model name stored in the checkpoint [<model>-finetuned]")
    d = p.add_argument_group("data")
    d.add_argument("--train", metavar="PATH", help="training data (DCASE folder, HEAR task or DESED root)")
    d.add_argument("--valid", metavar="PATH", help="validation data (scores and post-processing are chosen on it)")
    d.add_argument("--labels", metavar="FILE", help="class list: one name per line, or a TSV with a 'label' column")
    d.add_argument("--window", dest="window_s", type=float, metavar="S", help="training window in seconds [10]")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, help="epochs [10]")
    t.add_argument("--max-steps", type=int, metavar="N", help="optimiser steps (overrides --epochs)")
    t.add_argument("--epoch-len", type=int, metavar="N", help="clips per epoch [size of the training set]")
    t.add_argument("--batch-size", type=int, metavar="B", help="clips per batch [16]")
    t.add_argument("--accumulate", type=int, metavar="N", help="batches per optimiser step [1]")
    t.add_argument("--lr", type=float, help="peak learning rate of the heads (and backbone)")
    t.add_argument("--lr-decay", type=float, help="layer-wise learning-rate decay per backbone block (1: none)")
    t.add_argument("--weight-decay", type=float, help="weight decay on weights of dimension >= 2")
    t.add_argument("--warmup-steps", type=int, metavar="N", help="linear warmup steps before the cosine decay")
    t.add_argument("--precision", help="32-true, bf16-mixed or 16-mixed (GPU) [32-true]")
    t.add_argument("--val-every", type=int, metavar="N", help="validate every N epochs [1]")
    t.add_argument("--ckpt-every", type=int, metavar="N", help="write checkpoints/last.ckpt every N steps [200]")
    t.add_argument("--num-workers", type=int, metavar="N", help="data loader processes [0]")
    t.add_argument("--threads", type=int, metavar="N", help="torch CPU threads [torch's default]")
    t.add_argument("--seed", type=int, help="random seed [0]")
    t.add_argument("--select", choices=["best", "last"], help="export the best (val PSDS1) or last weights [best]")
    t.add_argument("--wandb", metavar="PROJECT", help="also log to Weights & Biases")
    t.add_argument("--teacher", metavar="FILE", help="distil from this frozen model (checkpoint, same classes)")
    t.add_argument("--distill-weight", type=float, metavar="W",
                   help="weight of the distillation loss against the label loss [0.9 with --teacher]")  # fmt: skip
    c = p.add_argument_group("config and output")
    c.add_argument("--config", metavar="YAML", help="settings file (same keys as the flags, see docs/training.md)")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="any setting")
    c.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder (model.pt, checkpoints, logs)")
    c.add_argument(
        "--resume",
        action="store_true",
        help="continue exactly from OUTPUT/checkpoints/last.ckpt with the settings of OUTPUT/config.yaml "
        "(settings given again must match them)",
    )
    c.add_argument(
        "--overwrite", action="store_true", help="replace the run already in OUTPUT (its files are removed first)"
    )
    c.add_argument(
        "--force-settings", action="store_true", help="with --resume: accept settings other than the stored ones"
    )
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _read_labels(path: str) -> list[str]:
    from pathlib import Path

    from ptsed.io.tables import read_text

    lines = [x for x in read_text(Path(path), "labels file").splitlines() if x.strip()]
    header = lines[0].split("\t") if lines else []
    if "label" in header:
        col = header.index("label")
        return [row.split("\t")[col].strip() for row in lines[1:]]
    return [x.strip() for x in lines]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ptsed.extras import require

    require("train", what="ptsed finetune")
    from ptsed.train.config import build_config
    from ptsed.train.finetune import finetune

    flags = {
        k: getattr(args, k)
        for k in (
            "model",
            "checkpoint",
            "pretrained",
            "drop_top_layers",
            "head_type",
            "rnn_dim",
            "name",
            "train",
            "valid",
            "window_s",
            "epochs",
            "max_steps",
            "epoch_len",
            "batch_size",
            "accumulate",
            "precision",
            "val_every",
            "ckpt_every",
            "num_workers",
            "threads",
            "seed",
            "select",
            "wandb",
            "teacher",
        )
    }
    if args.checkpoint:  # the file says which model it holds, whatever --model says
        from ptsed.cli.detect import model_for_checkpoint

        flags["model"] = model_for_checkpoint(args.model, args.checkpoint)
    flags["labels"] = _read_labels(args.labels) if args.labels else None
    optim = {"lr": args.lr, "lr_decay": args.lr_decay, "weight_decay": args.weight_decay}
    optim["warmup_steps"] = args.warmup_steps
    flags.update({f"optim.{k}": v for k, v in optim.items()})
    if args.teacher or args.distill_weight is not None:
        flags["loss.distillation_loss_weight"] = 0.9 if args.distill_weight is None else args.distill_weight
    stored = Path(args.output) / "config.yaml"
    base = stored if args.resume and stored.is_file() else None  # a resumed run starts from its own settings
    config = build_config(args.preset, args.config, args.overrides, flags, base=base)
    result = finetune(
        config,
        args.output,
        resume=args.resume,
        progress=not args.quiet,
        overwrite=args.overwrite,
        force_settings=args.force_settings,
    )
    print(f"wrote {result.checkpoint} ({result.steps} steps, {result.train_seconds / 60:.1f} min)")
    for key, value in result.metrics.items():
        print(f"  {key}: {value:.4f}")
    return 0
