"""``ptsed train audioset-strong``: the paper's AudioSet-strong pre-training (teachers and students)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

DESCRIPTION = """\
Train a model on AudioSet strong labels, as step 3 of the paper (upstream's ex_audioset_strong.py):
teachers (AudioSet-weak checkpoint + BiGRU) on the labels, students (no BiGRU) distilled from the teachers'
ensemble frame logits. Evaluates on the eval split with upstream's protocol (407 classes, PSDS1) every
--val-every epochs, over the predictions of all GPUs. Scales to several GPUs / nodes with Lightning DDP.

Presets (--preset):
  teacher   as_weak checkpoint + BiGRU 2 x 2048, balanced sampler, wavmix p 1.0, 30 epochs, lr 7e-5
  student   as_weak checkpoint, distillation weight 0.9 on data.pseudo_labels, 120 epochs, lr 1e-4,
            wavmix p 0.5, no frequency warping / FilterAugment / MixStyle

Settings come from: defaults (upstream's) < --preset < --config YAML < --set KEY=VALUE / --KEY=VALUE
(dotted keys: --optim.lr=1e-4, --data.num_workers 16) < the flags below. The resolved settings are saved
as OUTPUT/config.yaml; `--print-config` shows them without training."""

EPILOG = """\
examples:
  ptsed train audioset-strong --preset teacher --model atst_frame \\
      --train-labels audioset_train_strong.tsv --train-audio hdf5/ \\
      --eval-labels audioset_eval_strong.tsv --eval-audio hdf5/eval_segments_mp3.hdf \\
      --eval-durations eval_durations.csv --devices 4 --output runs/teacher_atst_frame
  ptsed train audioset-strong --preset student --model beats --pseudo-labels ensemble_logits.h5 \\
      --config data.yaml --output runs/student_beats
  ptsed train audioset-strong --config run.yaml --output runs/x --resume
  ptsed train audioset-strong --model atst_frame.as_strong --config data.yaml --evaluate --output eval/atst

Outputs: OUTPUT/model.pt (ptsed), OUTPUT/model_released.pt (upstream's layout), OUTPUT/eval/ (final
evaluation), OUTPUT/checkpoints/ (resume), OUTPUT/logs/ (CSV and TensorBoard). See docs/pretraining.md."""


def _dotted_to_set(args: Sequence[str]) -> list[str]:
    """``--a.b=v`` / ``--a.b v`` -> ``--set a.b=v`` (options with a dot in their name are settings)."""
    out: list[str] = []
    i = 0
    args = list(args)
    while i < len(args):
        arg = args[i]
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") else ""
        if "." in name:
            if "=" in arg:
                out += ["--set", arg[2:]]
            elif i + 1 < len(args):
                out += ["--set", f"{name}={args[i + 1]}"]
                i += 1
            else:
                out.append(arg)  # argparse reports the missing value
        else:
            out.append(arg)
        i += 1
    return out


class _RecipeParser(argparse.ArgumentParser):
    """Accepts any setting as a dotted option (``--optim.lr=1e-4``)."""

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201
        import sys

        return super().parse_known_args(_dotted_to_set(sys.argv[1:] if args is None else args), namespace)


def register(subparsers: argparse._SubParsersAction) -> None:
    top = subparsers.add_parser(
        "train",
        help="pre-train on AudioSet strong (teachers, ensemble distillation); multi-GPU",
        description="Training recipes. `ptsed train audioset-strong --help` for the options.",
    )
    recipes = top.add_subparsers(dest="recipe", metavar="RECIPE", parser_class=_RecipeParser)
    p = recipes.add_parser(
        "audioset-strong",
        help="teachers and students on AudioSet strong (step 3 of the paper)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m = p.add_argument_group("model")
    m.add_argument("--preset", choices=["teacher", "student"], help="the paper's teacher or student recipe")
    m.add_argument("--model", help="architecture (atst_frame, beats, fpasst, asit, m2d, frame_mn06, frame_mn10)")
    m.add_argument("--start", help="starting weights: as_weak (default), ssl, as_strong or none")
    m.add_argument("--checkpoint", metavar="FILE", help="start from this checkpoint file instead")
    d = p.add_argument_group("data")
    d.add_argument("--train-labels", metavar="TSV", help="Google's audioset_train_strong.tsv")
    d.add_argument("--train-audio", metavar="PATH", action="append",
                   help="clip folder (Y<id>.<ext>), HDF5 file or folder of HDF5 files; repeatable")  # fmt: skip
    d.add_argument("--eval-labels", metavar="TSV", help="Google's audioset_eval_strong.tsv")
    d.add_argument("--eval-audio", metavar="PATH", action="append", help="eval clips (same forms)")
    d.add_argument("--eval-durations", metavar="FILE", help="clip durations (upstream's eval_durations.csv)")
    d.add_argument("--pseudo-labels", metavar="H5", help="ensemble logits (Zenodo file or ptsed ensemble-logits)")
    t = p.add_argument_group("run")
    t.add_argument("--epochs", type=int, help="epochs of data.epoch_len clips")
    t.add_argument("--batch-size", type=int, metavar="B", help="clips per optimiser step over all GPUs [256]")
    t.add_argument("--devices", help="GPUs (or CPU processes) per node: auto, N or a list 0,2")
    t.add_argument("--num-nodes", type=int, metavar="N", help="machines")
    t.add_argument("--precision", help="auto (16-mixed on GPU), 32-true, bf16-mixed, 16-mixed")
    t.add_argument("--num-workers", type=int, metavar="N", help="data loader processes per GPU")
    t.add_argument("--val-every", type=int, metavar="N", help="evaluate every N epochs [5]")
    t.add_argument("--seed", type=int)
    c = p.add_argument_group("config and output")
    c.add_argument("--config", metavar="YAML", help="settings file (keys as in OUTPUT/config.yaml)")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="any setting")
    c.add_argument("--output", "-o", metavar="DIR", help="run folder")
    c.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoints/last.ckpt")
    c.add_argument("--evaluate", action="store_true", help="only evaluate the starting model on the eval split")
    c.add_argument("--print-config", action="store_true", help="print the resolved settings and exit")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    top.set_defaults(func=lambda args: _no_recipe(top))


def _no_recipe(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ptsed.extras import require

    require("train", "hdf5", what="ptsed train")
    import yaml

    from ptsed.core.errors import ConfigError
    from ptsed.recipes.audioset_strong import CONFIG_NAME, load_config, train

    flags = {
        "model": args.model,
        "start": args.start,
        "checkpoint": args.checkpoint,
        "data.train_labels": args.train_labels,
        "data.train_audio": args.train_audio,
        "data.eval_labels": args.eval_labels,
        "data.eval_audio": args.eval_audio,
        "data.eval_durations": args.eval_durations,
        "data.pseudo_labels": args.pseudo_labels,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "trainer.devices": args.devices,
        "trainer.num_nodes": args.num_nodes,
        "trainer.precision": args.precision,
        "data.num_workers": args.num_workers,
        "val_every": args.val_every,
        "seed": args.seed,
        "trainer.progress": False if args.quiet else None,
    }
    base = None
    if args.resume:
        if not args.output:
            raise ConfigError("--resume needs --output (the run folder)")
        saved = Path(args.output) / CONFIG_NAME
        if not saved.is_file():
            raise ConfigError(f"cannot resume: {saved} does not exist")
        base = yaml.safe_load(saved.read_text(encoding="utf-8"))
    config = load_config(args.preset, args.config, args.overrides, flags, base=base)
    if args.print_config:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    if not args.output:
        raise ConfigError("--output is required (the run folder)")
    result = train(config, args.output, resume=args.resume, evaluate_only=args.evaluate)
    if not result.is_global_zero:
        return 0
    if result.checkpoint is not None:
        print(f"wrote {result.checkpoint} ({result.steps} steps, {result.train_seconds / 60:.1f} min)")
    if result.released is not None:
        print(f"wrote {result.released} (upstream's released layout)")
    for key, value in result.metrics.items():
        print(f"  {key}: {value:.4f}")
    return 0
