"""``ptsed ensemble-logits``: average the frame logits of several models over AudioSet clips (HDF5)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Run N models (zoo names, or checkpoint files) over every clip of a dataset and write the MEAN of their frame
logits (not probabilities) to an HDF5 file in upstream's layout (the Zenodo 14626113 file): 'filenames'
(UTF-8 clip ids Y<youtube id>) and 'strong_logits' (N, 447, 250) float16. Every clip is cut or zero-padded to
10 s and scored in one window. The file grows clip batch by clip batch; running the command again continues
it (clips already in it are skipped). `ptsed train audioset-strong --pseudo-labels FILE` reads it."""

EPILOG = """\
examples:
  ptsed ensemble-logits --model atst_frame --checkpoint runs/teacher_atst_frame/model.pt \\
      --model beats --checkpoint runs/teacher_beats/model.pt --hdf5 balanced_train_segments_mp3.hdf \\
      --hdf5 unbalanced_train_segments_mp3.hdf --output ensemble_logits.h5 --device cuda --precision fp16
  ptsed ensemble-logits --model beats --model atst_frame --audio clips/ --output logits.h5"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ensemble-logits",
        help="average several models' frame logits over AudioSet clips into an HDF5 file (distillation targets)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", action="append", required=True, metavar="NAME",
                   help="zoo name of a member (repeat for each model)")  # fmt: skip
    p.add_argument("--checkpoint", action="append", metavar="FILE",
                   help="its checkpoint (ptsed or released layout): none, or one per --model, in order")  # fmt: skip
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", metavar="DIR", help="folder of clips named Y<youtube id>.<ext>")
    src.add_argument("--hdf5", metavar="FILE", action="append",
                     help="PaSST-style HDF5 file (audio_name, mp3); repeat for several files")  # fmt: skip
    p.add_argument("--output", "-o", required=True, metavar="FILE.h5", help="the HDF5 file to write or continue")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="clips per forward pass [8]")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps [auto]")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"], help="autocast [fp32]")
    p.add_argument("--num-workers", type=int, default=2, metavar="N", help="audio decoding processes [2]")
    p.add_argument("--overwrite", action="store_true", help="start the output anew instead of continuing it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ptsed.extras import require

    require("hdf5", what="ptsed ensemble-logits")
    from ptsed.core.errors import ConfigError
    from ptsed.inference.predictor import resolve_model_name
    from ptsed.recipes.audioset_data import ForkSafeAudio
    from ptsed.recipes.ensemble import ensemble_logits

    checkpoints = args.checkpoint or []
    if checkpoints and len(checkpoints) != len(args.model):
        raise ConfigError(
            f"{len(args.model)} --model but {len(checkpoints)} --checkpoint: give one checkpoint per model, or none"
        )
    names = [resolve_model_name(m) for m in args.model]
    models = list(zip(names, checkpoints, strict=True)) if checkpoints else names
    audio = ForkSafeAudio(args.audio, "folder") if args.audio else ForkSafeAudio(args.hdf5, "hdf5")
    summary = ensemble_logits(
        models,
        audio,
        args.output,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        num_workers=args.num_workers,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(
        f"wrote {summary.written} clips to {summary.output} ({summary.skipped} already there, "
        f"{len(summary.failed)} failed, {summary.seconds:.0f} s)"
    )
    for clip, err in list(summary.failed.items())[:20]:
        print(f"  failed: {clip}: {err}", file=sys.stderr)
    if len(summary.failed) > 20:
        print(f"  ... and {len(summary.failed) - 20} more", file=sys.stderr)
    return 1 if summary.failed else 0
