"""``ptsed export``: write a trained model in ptsed's format or in upstream's released layout."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Export a trained model. SOURCE is a ptsed checkpoint (model.pt), a `ptsed train` / `ptsed finetune` output
folder, or a Lightning checkpoint of a `ptsed train` run (checkpoints/last.ckpt).

  --format released   a plain state dict with exactly the keys and shapes of upstream's released files
                      (<Model>_strong_1.pt; the teacher layout for models with a BiGRU), which upstream's
                      PredictionsWrapper.load_checkpoint loads
  --format ptsed      ptsed's self-describing checkpoint (create_model(..., checkpoint_path=FILE))"""

EPILOG = """\
examples:
  ptsed export runs/student_atst_frame --format released --output ATST-F_strong_1.pt
  ptsed export runs/teacher_beats --which last --format ptsed --output teacher_beats.pt"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained model (ptsed format or upstream's released layout)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE", help="model.pt, a run folder, or a Lightning .ckpt of ptsed train")
    p.add_argument("--format", choices=["released", "ptsed"], default="released", help="output layout [released]")
    p.add_argument("--which", choices=["final", "last", "best"], default="final",
                   help="for a run folder: model.pt (final) or checkpoints/last.ckpt / best.ckpt [final]")  # fmt: skip
    p.add_argument("--output", "-o", required=True, metavar="FILE", help="the file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptsed.recipes.export import load_trained
    from ptsed.release.export import export_model

    model = load_trained(args.source, which=args.which)
    path = export_model(model, args.output, args.format)
    form = "teacher (BiGRU)" if model.head_config.rnn_dim else "student"
    print(f"wrote {path}: {model.arch} {form}, {model.num_classes} classes, {args.format} layout")
    return 0
