"""``ptsed export``: write a trained model in ptsed's format, in upstream's released layout, or as ONNX."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DESCRIPTION = """\
Export a trained model. SOURCE is a ptsed checkpoint (model.pt), a `ptsed train` / `ptsed finetune` output
folder, or a Lightning checkpoint of a `ptsed train` run (checkpoints/last.ckpt); for --format onnx also a zoo
name (beats, atst_frame.as_strong, demo) or an upstream released checkpoint (its architecture is read from its
keys; --model ARCH names it, in zoo or upstream spelling).

  --format released   a plain state dict with exactly the keys and shapes of upstream's released files
                      (<Model>_strong_1.pt; the teacher layout for models with a BiGRU), which upstream's
                      PredictionsWrapper.load_checkpoint loads
  --format ptsed      ptsed's self-describing checkpoint (create_model(..., checkpoint_path=FILE))
  --format onnx       the whole detector as an ONNX graph (opset 17+, front-end inside): input `waveform`
                      (batch, samples) float32 mono, one window (10 s) at the model's sample rate; outputs
                      `strong_logits` (batch, classes, 250) and `weak_logits` (batch, classes), and
                      `embeddings` (batch, frames, dim) with --embeddings; class names, sample rate, window,
                      frame hop and stored post-processing are in the file's metadata (needs the "onnx"
                      extra; see docs/onnx.md)"""

EPILOG = """\
examples:
  ptsed export runs/student_atst_frame --format released --output ATST-F_strong_1.pt
  ptsed export runs/teacher_beats --which last --format ptsed --output teacher_beats.pt
  ptsed export beats --format onnx --output beats.onnx
  ptsed export BEATs_strong_1.pt --format onnx --output beats.onnx --embeddings -3
  ptsed export runs/finetune_dogs --format onnx --output dogs.onnx"""

FORMATS = ("released", "ptsed", "onnx")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained model (ptsed format, upstream's released layout, or ONNX)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source", metavar="SOURCE", help="model.pt, a run folder, a Lightning .ckpt; for onnx also a zoo name or a "
        "released checkpoint"
    )  # fmt: skip
    p.add_argument("--format", choices=FORMATS, default="released", help="output layout [released]")
    p.add_argument("--which", choices=["final", "last", "best"], default="final",
                   help="for a run folder: model.pt (final) or checkpoints/last.ckpt / best.ckpt [final]")  # fmt: skip
    p.add_argument("--output", "-o", required=True, metavar="FILE", help="the file to write")
    p.add_argument("--model", metavar="ARCH", help="onnx: the architecture of a released checkpoint (default: "
                   "read from its keys)")  # fmt: skip
    p.add_argument("--embeddings", metavar="LAYER", help="onnx: add an `embeddings` output: 'head' (the head "
                   "input) or a backbone block (0-based, negative counts from the top)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptsed.core.errors import ConfigError

    if args.format != "onnx":
        if args.model or args.embeddings is not None:
            raise ConfigError("--model and --embeddings apply to --format onnx only")
        from ptsed.recipes.export import load_trained
        from ptsed.release.export import export_model

        model = load_trained(args.source, which=args.which)
        path = export_model(model, args.output, args.format)
        form = "teacher (BiGRU)" if model.head_config.rnn_dim else "student"
        print(f"wrote {path}: {model.arch} {form}, {model.num_classes} classes, {args.format} layout")
        return 0
    return run_onnx(args)


def run_onnx(args: argparse.Namespace) -> int:
    from ptsed.extras import require
    from ptsed.models.onnx_export import EMBEDDINGS, export_onnx, parse_layer

    require("onnx", what="ptsed export --format onnx")
    layer = parse_layer(args.embeddings)
    output = Path(args.output)
    check_writable(output)
    model, source = load_source(args.source, model=args.model, which=args.which)
    path = export_onnx(model, output, source=source, layer=layer, embeddings=args.embeddings is not None)
    form = "teacher (BiGRU)" if model.head_config.is_teacher else "student"
    extra = f", {EMBEDDINGS} of layer {args.embeddings}" if args.embeddings is not None else ""
    print(f"wrote {path}: {model.arch} {form}, {model.num_classes} classes, ONNX{extra}")
    return 0


def check_writable(path: Path) -> None:
    """Fail early (before a long export) when ``path`` cannot be written."""
    from ptsed.core.errors import ConfigError

    if path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a folder (give a file name such as model.onnx)")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: {parent} is not a writable folder")


def load_source(source: str, *, model: str | None = None, which: str = "final") -> tuple:
    """The model of an export SOURCE: a run folder, a Lightning checkpoint, a ptsed or released checkpoint,
    or a zoo name. Returns ``(model, description of the source)``."""
    from ptsed.core.errors import ConfigError
    from ptsed.inference.predictor import load_model, resolve_model_name
    from ptsed.models.zoo import find_arch

    src = Path(source)
    if src.is_dir() or (src.is_file() and src.suffix == ".ckpt"):
        from ptsed.recipes.export import load_trained

        return load_trained(src, which=which), str(source)
    if src.is_file():
        from ptsed.cli.detect import model_for_checkpoint

        if model and find_arch(resolve_model_name(model)) is None:
            raise ConfigError(f"unknown model {model!r} (see `ptsed models`)")
        name = model_for_checkpoint(resolve_model_name(model) if model else None, str(src))
        return load_model((name, str(src))), str(source)
    if model:
        raise ConfigError(f"{source}: no such file (--model names the architecture of a checkpoint file)")
    name = resolve_model_name(source)
    if name != "demo" and find_arch(name) is None:
        raise ConfigError(f"{source}: no such file, and no model of that name (see `ptsed models`)")
    return load_model(name), name
